//! The effects the command line serves synchronously (SX.md §5): `now` (milliseconds since
//! the Unix epoch) and `sleep` (`:ms`). Any other op raises `unknown-effect` at the
//! `perform` site. Also the buffered standard output `print` writes to.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sx_kernel::engine::unknown_effect;
use sx_kernel::error::type_error;
use sx_kernel::value::Key;
use sx_kernel::Value;

pub fn serve(request: &Value) -> Result<Value, Value> {
    let Value::Dict(d) = request else {
        return Err(unknown_effect(request));
    };
    let field = |name: &str| d.get(&Key(Value::kw(name))).cloned();
    match field("op") {
        Some(Value::Str(op)) if &*op == "now" => {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            Ok(Value::Int(ms))
        }
        Some(Value::Str(op)) if &*op == "sleep" => match field("ms") {
            Some(Value::Int(ms)) if (0..=3_600_000).contains(&ms) => {
                std::thread::sleep(Duration::from_millis(ms as u64));
                Ok(Value::Nil)
            }
            _ => Err(type_error(
                "sleep needs :ms between 0 and 3600000",
                vec![request.clone()],
            )),
        },
        _ => Err(unknown_effect(request)),
    }
}

thread_local! {
    static STDOUT: std::cell::RefCell<std::io::BufWriter<std::io::Stdout>> =
        std::cell::RefCell::new(std::io::BufWriter::new(std::io::stdout()));
}

/// `print`'s sink. A closed pipe is not an error worth a panic: output is dropped.
pub fn write_stdout(text: &str) {
    STDOUT.with(|out| {
        let _ = out.borrow_mut().write_all(text.as_bytes());
    });
}

pub fn flush_stdout() {
    STDOUT.with(|out| {
        let _ = out.borrow_mut().flush();
    });
}
