//! `json-encode` / `json-decode`. Decoding uses serde_json (its recursion limit guards the
//! stack); encoding is written here so floats print as in `repr` and keys keep dict order.

use super::{as_str, pure, Entry};
use crate::error::{type_error, ErrorValue};
use crate::value::{Dict, Key, Value};

pub(super) fn table() -> Vec<Entry> {
    vec![
        pure("json-encode", 1, Some(1), |a| {
            let mut out = String::new();
            encode(&mut out, &a[0])?;
            Ok(Value::str(&out))
        }),
        pure("json-decode", 1, Some(1), |a| {
            let text = as_str(&a[0], "json-decode")?;
            let parsed: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                ErrorValue::value("read-error", format!("invalid JSON: {e}"), vec![])
            })?;
            Ok(decode(parsed))
        }),
    ]
}

fn encode_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn encode(out: &mut String, v: &Value) -> Result<(), Value> {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::Float(f) if !f.is_finite() => {
            return Err(type_error("JSON has no infinities or NaN", vec![v.clone()]))
        }
        Value::Float(f) => out.push_str(&crate::printer::float_repr(*f)),
        Value::Str(s) => encode_string(out, s),
        Value::Keyword(s) | Value::Symbol(s) => encode_string(out, s.name()),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode(out, item)?;
            }
            out.push(']');
        }
        Value::Dict(d) => {
            out.push('{');
            for (i, (k, val)) in d.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match &k.0 {
                    Value::Str(s) => encode_string(out, s),
                    Value::Keyword(s) | Value::Symbol(s) => encode_string(out, s.name()),
                    n @ (Value::Int(_) | Value::Float(_) | Value::Bool(_)) => {
                        encode_string(out, &crate::printer::repr(n))
                    }
                    other => {
                        return Err(type_error(
                            format!("a {} cannot be a JSON object key", other.type_name()),
                            vec![other.clone()],
                        ))
                    }
                }
                out.push(':');
                encode(out, val)?;
            }
            out.push('}');
        }
        other => {
            return Err(type_error(
                format!("a {} has no JSON form", other.type_name()),
                vec![other.clone()],
            ))
        }
    }
    Ok(())
}

fn decode(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::str(&s),
        serde_json::Value::Array(items) => Value::list(items.into_iter().map(decode).collect()),
        serde_json::Value::Object(map) => {
            let mut d = Dict::new();
            for (k, v) in map {
                d.insert(Key(Value::str(&k)), decode(v));
            }
            Value::Dict(d)
        }
    }
}
