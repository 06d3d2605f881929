//! `now` (milliseconds since the Unix epoch) and `sleep` (`:ms`, at most 30 s).

use sx_kernel::error::type_error;
use sx_kernel::value::{kw_get, Dict};
use sx_kernel::Value;

use super::Context;

/// The longest a handler may sleep.
const MAX_SLEEP_MS: i64 = 30_000;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub async fn now(_: &Dict, _: &Context<'_>) -> Result<Value, Value> {
    Ok(Value::Int(now_ms()))
}

pub async fn sleep(d: &Dict, _: &Context<'_>) -> Result<Value, Value> {
    match kw_get(d, "ms") {
        Some(&Value::Int(ms)) if (0..=MAX_SLEEP_MS).contains(&ms) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms as u64)).await;
            Ok(Value::Nil)
        }
        _ => Err(type_error(
            "sleep needs :ms, an integer from 0 to 30000",
            vec![Value::Dict(d.clone())],
        )),
    }
}
