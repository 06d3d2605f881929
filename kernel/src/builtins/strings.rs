//! Strings, symbols and keywords. Lengths and indices count characters (Unicode scalar
//! values), not bytes.

use super::{as_int, as_list, as_str, pure, Entry, NResult};
use crate::error::{index_error, type_error};
use crate::value::{List, Symbol, Value};

pub(super) fn table() -> Vec<Entry> {
    vec![
        pure("str", 0, None, |a| {
            // Sized up front: one allocation for the text, one for the string value.
            let size = a.iter().map(|v| match v {
                Value::Str(s) => s.len(),
                Value::Int(_) => 20,
                _ => 16,
            });
            let mut out = String::with_capacity(size.sum());
            for v in a {
                crate::printer::write_str_part(&mut out, v);
            }
            Ok(Value::str(&out))
        }),
        pure("string-length", 1, Some(1), |a| {
            Ok(Value::Int(
                as_str(&a[0], "string-length")?.chars().count() as i64
            ))
        }),
        pure("substring", 2, Some(3), substring),
        pure("string-split", 2, Some(2), split),
        pure("string-join", 1, Some(2), join),
        pure("upper", 1, Some(1), |a| {
            Ok(Value::str(&super::case::upper(as_str(&a[0], "upper")?)))
        }),
        pure("lower", 1, Some(1), |a| {
            Ok(Value::str(&super::case::lower(as_str(&a[0], "lower")?)))
        }),
        pure("trim", 1, Some(1), |a| {
            Ok(Value::str(as_str(&a[0], "trim")?.trim()))
        }),
        pure("starts-with?", 2, Some(2), |a| {
            Ok(Value::Bool(
                as_str(&a[0], "starts-with?")?.starts_with(as_str(&a[1], "starts-with?")?),
            ))
        }),
        pure("ends-with?", 2, Some(2), |a| {
            Ok(Value::Bool(
                as_str(&a[0], "ends-with?")?.ends_with(as_str(&a[1], "ends-with?")?),
            ))
        }),
        pure("string-contains?", 2, Some(2), |a| {
            Ok(Value::Bool(
                as_str(&a[0], "string-contains?")?.contains(as_str(&a[1], "string-contains?")?),
            ))
        }),
        pure("replace", 3, Some(3), replace),
        pure("string->symbol", 1, Some(1), |a| {
            let s = as_str(&a[0], "string->symbol")?;
            if s.is_empty() {
                return Err(type_error("string->symbol of an empty string", vec![]));
            }
            Ok(Value::Symbol(Symbol::new(s)))
        }),
        pure("symbol->string", 1, Some(1), |a| match &a[0] {
            Value::Symbol(s) => Ok(Value::str(s.name())),
            other => Err(type_error(
                "symbol->string expects a symbol",
                vec![other.clone()],
            )),
        }),
        pure("keyword->string", 1, Some(1), |a| match &a[0] {
            Value::Keyword(k) => Ok(Value::str(k.name())),
            other => Err(type_error(
                "keyword->string expects a keyword",
                vec![other.clone()],
            )),
        }),
        pure("string->keyword", 1, Some(1), |a| {
            let s = as_str(&a[0], "string->keyword")?;
            let s = s.strip_prefix(':').unwrap_or(s);
            if s.is_empty() {
                return Err(type_error("string->keyword of an empty string", vec![]));
            }
            Ok(Value::Keyword(Symbol::new(s)))
        }),
    ]
}

/// Byte offset of character `index` in `s`, if `index <= len`.
fn char_offset(s: &str, index: usize) -> Option<usize> {
    if index == 0 {
        return Some(0);
    }
    s.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .nth(index)
}

fn substring(a: &[Value]) -> NResult {
    let s = as_str(&a[0], "substring")?;
    let start = as_int(&a[1], "substring")?;
    let len = s.chars().count() as i64;
    let end = match a.get(2) {
        Some(v) => as_int(v, "substring")?,
        None => len,
    };
    if start < 0 || end < start || end > len {
        return Err(index_error(
            format!("substring {start}..{end} out of range for length {len}"),
            vec![a[1].clone(), Value::Int(end)],
        ));
    }
    let from = char_offset(s, start as usize).unwrap_or(0);
    let to = char_offset(s, end as usize).unwrap_or(s.len());
    Ok(Value::str(&s[from..to]))
}

fn split(a: &[Value]) -> NResult {
    let s = as_str(&a[0], "string-split")?;
    let sep = as_str(&a[1], "string-split")?;
    let parts: List = if sep.is_empty() {
        s.chars()
            .map(|c| Value::str(c.encode_utf8(&mut [0; 4])))
            .collect()
    } else if let [byte] = *sep.as_bytes() {
        // One ASCII separator (the usual case): `memchr`, not a substring search.
        s.split(char::from(byte)).map(Value::str).collect()
    } else {
        s.split(sep).map(Value::str).collect()
    };
    Ok(Value::List(parts))
}

fn join(a: &[Value]) -> NResult {
    let items = as_list(&a[0], "string-join")?;
    let sep = match a.get(1) {
        Some(v) => as_str(v, "string-join")?,
        None => "",
    };
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        crate::printer::write_str_part(&mut out, item);
    }
    Ok(Value::str(&out))
}

fn replace(a: &[Value]) -> NResult {
    let s = as_str(&a[0], "replace")?;
    let from = as_str(&a[1], "replace")?;
    let to = as_str(&a[2], "replace")?;
    if from.is_empty() {
        return Err(type_error("replace: the text to replace is empty", vec![]));
    }
    Ok(Value::str(&s.replace(from, to)))
}
