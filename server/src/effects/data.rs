//! Apps' own data (`store/data.rs`): SX values under string keys.
//!
//! - `{:op "data/get" :key k}` → the value, or nil.
//! - `{:op "data/put" :key k :value v}` → nil.
//! - `{:op "data/push" :key k :value v}` → the list under `k` with `v` added once (atomic).

use sx_kernel::value::{kw_get, Dict};
use sx_kernel::Value;

use super::{blocking, read, store_error, text, Context};

pub async fn get(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let key = text(d, "data/get", "key")?;
    let stored = read(&cx.services.store, move |store| store.data_text(&key)).await?;
    match stored {
        // Read back in data mode, never evaluated.
        Some(text) => sx_kernel::reader::read_one(&text)
            .map_err(|e| store_error(crate::store::StoreError::Corrupt(format!("app data: {e}")))),
        None => Ok(Value::Nil),
    }
}

fn value_text(d: &Dict) -> String {
    sx_kernel::printer::repr(kw_get(d, "value").unwrap_or(&Value::Nil))
}

pub async fn put(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let key = text(d, "data/put", "key")?;
    let value = value_text(d);
    blocking(&cx.services.store, move |store| {
        let value = sx_kernel::reader::read_one(&value).unwrap_or(Value::Nil);
        store.data_put(&key, &value)
    })
    .await?;
    Ok(Value::Nil)
}

pub async fn push(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let key = text(d, "data/push", "key")?;
    let value = value_text(d);
    let list = blocking(&cx.services.store, move |store| {
        let value = sx_kernel::reader::read_one(&value).unwrap_or(Value::Nil);
        store
            .data_push(&key, &value)
            .map(|l| sx_kernel::printer::repr(&l))
    })
    .await?;
    sx_kernel::reader::read_one(&list)
        .map_err(|e| sx_kernel::error::ErrorValue::value("store-error", e.to_string(), vec![]))
}
