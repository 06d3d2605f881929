//! `json-encode` / `json-decode`. Decoding uses serde_json (its recursion limit guards the
//! stack) with a visitor that builds SX values directly; encoding is written here so floats
//! print as in `repr` and keys keep dict order.

#[cfg(feature = "json")]
use super::{as_str, pure, Entry};
use crate::error::type_error;
#[cfg(feature = "json")]
use crate::error::ErrorValue;
use crate::value::{Dict, Key, Value};

#[cfg(feature = "json")]
pub(super) fn table() -> Vec<Entry> {
    vec![
        pure("json-encode", 1, Some(1), |a| {
            let mut out = String::new();
            encode(&mut out, &a[0])?;
            Ok(Value::str(&out))
        }),
        pure("json-decode", 1, Some(1), |a| {
            let text = as_str(&a[0], "json-decode")?;
            decode(text)
                .map_err(|e| ErrorValue::value("read-error", format!("invalid JSON: {e}"), vec![]))
        }),
    ]
}

/// `json-encode` for hosts: SX data → JSON text.
pub fn to_json(v: &Value) -> Result<String, Value> {
    let mut out = String::new();
    encode(&mut out, v)?;
    Ok(out)
}

/// `json-decode` for hosts: JSON text → SX data (objects become string-keyed dicts).
pub fn from_json(text: &str) -> Result<Value, String> {
    decode(text).map_err(|e| format!("invalid JSON: {e}"))
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

/// Decodes JSON text. A number written without a fraction or exponent is an integer when
/// it fits in an i64 (`-0` too: serde_json hands that one over as the float `-0.0`, so the
/// text decides), else a float.
fn decode(text: &str) -> Result<Value, serde_json::Error> {
    let integers = integer_tokens(text);
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde::de::DeserializeSeed::deserialize(
        Decoder {
            integers: &integers,
            next: &std::cell::Cell::new(0),
        },
        &mut de,
    )?;
    de.end()?;
    Ok(value)
}

/// For each number in `text`, in order: is it written as an integer? Only consulted when
/// the text parsed, so it need not reject anything.
fn integer_tokens(text: &str) -> Vec<bool> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                out.push(
                    !bytes[start..i]
                        .iter()
                        .any(|b| matches!(b, b'.' | b'e' | b'E')),
                );
            }
            b'a'..=b'z' => {
                // true, false, null: their letters include `e`, which is not a number.
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

#[derive(Clone, Copy)]
struct Decoder<'a> {
    integers: &'a [bool],
    /// Numbers seen so far (serde_json visits them in document order).
    next: &'a std::cell::Cell<usize>,
}

impl Decoder<'_> {
    fn number(&self) -> bool {
        let i = self.next.get();
        self.next.set(i + 1);
        self.integers.get(i).copied().unwrap_or(false)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Decoder<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Decoder<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        self.number();
        Ok(Value::Int(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        self.number();
        Ok(i64::try_from(n).map_or(Value::Float(n as f64), Value::Int))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        let integer = self.number();
        Ok(if integer && f == 0.0 {
            Value::Int(0)
        } else {
            Value::Float(f)
        })
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::str(s))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::list(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut d = Dict::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let value = map.next_value_seed(self)?;
            d.insert(Key(Value::str(&key)), value);
        }
        Ok(Value::Dict(d))
    }
}
