//! Lists and dicts. Both are immutable: every "change" returns a new value sharing structure.
//! `nil` counts as an empty collection for the readers (`first rest len empty? get keys vals`).

use super::{as_int, as_list, pure, Entry, NResult};
use crate::error::{index_error, type_error};
use crate::value::{compare, Dict, Key, List, Value};

pub(super) fn table() -> Vec<Entry> {
    vec![
        pure("list", 0, None, |a| Ok(Value::list(a.to_vec()))),
        pure("cons", 2, Some(2), |a| {
            Ok(Value::List(List::cons(
                a[0].clone(),
                as_list(&a[1], "cons")?,
            )))
        }),
        pure("first", 1, Some(1), |a| match &a[0] {
            Value::Str(s) => Ok(s
                .chars()
                .next()
                .map_or(Value::Nil, |c| Value::str(c.encode_utf8(&mut [0; 4])))),
            v => Ok(as_list(v, "first")?.first().cloned().unwrap_or(Value::Nil)),
        }),
        pure("rest", 1, Some(1), |a| {
            Ok(Value::List(as_list(&a[0], "rest")?.rest()))
        }),
        pure("nth", 2, Some(2), nth),
        pure("len", 1, Some(1), len),
        pure("last", 1, Some(1), |a| {
            Ok(as_list(&a[0], "last")?
                .iter()
                .last()
                .cloned()
                .unwrap_or(Value::Nil))
        }),
        pure("append", 0, None, append),
        pure("reverse", 1, Some(1), |a| {
            let mut out = List::empty();
            for v in as_list(&a[0], "reverse")?.iter() {
                out = List::cons(v.clone(), out);
            }
            Ok(Value::List(out))
        }),
        pure("range", 1, Some(3), range),
        pure("sort", 1, Some(1), |a| {
            let mut items = as_list(&a[0], "sort")?.to_vec();
            // Equal values of these kinds cannot be told apart, so an unstable sort (in
            // place, no scratch copy of the list) gives the stable result.
            let plain = |v: &Value| {
                matches!(
                    v,
                    Value::Int(_) | Value::Str(_) | Value::Keyword(_) | Value::Symbol(_)
                )
            };
            if items.iter().all(plain) {
                items.sort_unstable_by(compare);
            } else {
                items.sort_by(compare);
            }
            Ok(Value::list(items))
        }),
        pure("%sort-by-keys", 2, Some(2), sort_by_keys),
        pure("take", 2, Some(2), |a| {
            let n = as_int(&a[0], "take")?.max(0) as usize;
            Ok(Value::List(
                as_list(&a[1], "take")?.iter().take(n).cloned().collect(),
            ))
        }),
        pure("drop", 2, Some(2), |a| {
            let n = as_int(&a[0], "drop")?.max(0) as usize;
            let mut l = as_list(&a[1], "drop")?;
            for _ in 0..n {
                if l.is_empty() {
                    break;
                }
                l = l.rest();
            }
            Ok(Value::List(l))
        }),
        pure("empty?", 1, Some(1), |a| {
            Ok(Value::Bool(length(&a[0], "empty?")? == 0))
        }),
        pure("index-of", 2, Some(2), index_of),
        pure("dict", 0, None, |a| {
            if a.len() % 2 != 0 {
                return Err(type_error("dict needs key/value pairs", vec![]));
            }
            put_pairs(Dict::new(), a)
        }),
        pure("%dict-from-list", 1, Some(1), |a| {
            let items = as_list(&a[0], "dict")?.to_vec();
            put_pairs(Dict::new(), &items)
        }),
        pure("get", 2, Some(3), get),
        pure("assoc", 3, None, |a| {
            if a.len() % 2 != 1 {
                return Err(type_error("assoc needs key/value pairs", vec![]));
            }
            put_pairs(dict(&a[0], "assoc")?, &a[1..])
        }),
        pure("dissoc", 1, None, |a| {
            let mut d = dict(&a[0], "dissoc")?;
            for k in &a[1..] {
                d.remove(&Key(k.clone()));
            }
            Ok(Value::Dict(d))
        }),
        pure("keys", 1, Some(1), |a| {
            Ok(Value::list(
                dict(&a[0], "keys")?.keys().map(|k| k.0.clone()).collect(),
            ))
        }),
        pure("vals", 1, Some(1), |a| {
            Ok(Value::list(
                dict(&a[0], "vals")?.values().cloned().collect(),
            ))
        }),
        pure("has?", 2, Some(2), |a| {
            Ok(Value::Bool(
                dict(&a[0], "has?")?.contains_key(&Key(a[1].clone())),
            ))
        }),
        pure("merge", 0, None, |a| {
            let mut out = Dict::new();
            for d in a {
                for (k, v) in dict(d, "merge")?.iter() {
                    out.insert(k.clone(), v.clone());
                }
            }
            Ok(Value::Dict(out))
        }),
    ]
}

fn dict(v: &Value, who: &str) -> Result<Dict, Value> {
    match v {
        Value::Dict(d) => Ok(d.clone()),
        Value::Nil => Ok(Dict::new()),
        other => Err(type_error(
            format!("{who} expects a dict, got {}", other.type_name()),
            vec![other.clone()],
        )),
    }
}

fn put_pairs(mut d: Dict, pairs: &[Value]) -> NResult {
    for pair in pairs.chunks(2) {
        if pair[0].is_function() {
            return Err(type_error(
                "a function cannot be a dict key",
                vec![pair[0].clone()],
            ));
        }
        d.insert(Key(pair[0].clone()), pair[1].clone());
    }
    Ok(Value::Dict(d))
}

fn length(v: &Value, who: &str) -> Result<usize, Value> {
    match v {
        Value::List(l) => Ok(l.len()),
        Value::Str(s) => Ok(s.chars().count()),
        Value::Dict(d) => Ok(d.len()),
        Value::Nil => Ok(0),
        other => Err(type_error(
            format!(
                "{who} expects a list, string or dict, got {}",
                other.type_name()
            ),
            vec![other.clone()],
        )),
    }
}

fn len(a: &[Value]) -> NResult {
    Ok(Value::Int(length(&a[0], "len")? as i64))
}

fn nth(a: &[Value]) -> NResult {
    let i = as_int(&a[1], "nth")?;
    let found = match &a[0] {
        Value::Str(s) => usize::try_from(i)
            .ok()
            .and_then(|i| s.chars().nth(i))
            .map(|c| Value::str(c.encode_utf8(&mut [0; 4]))),
        v => {
            let l = as_list(v, "nth")?;
            usize::try_from(i).ok().and_then(|i| l.nth(i).cloned())
        }
    };
    found.ok_or_else(|| {
        index_error(
            format!(
                "index {i} out of range for length {}",
                length(&a[0], "nth").unwrap_or(0)
            ),
            vec![a[1].clone()],
        )
    })
}

fn append(a: &[Value]) -> NResult {
    let Some((last, init)) = a.split_last() else {
        return Ok(Value::List(List::empty()));
    };
    let mut out = as_list(last, "append")?;
    for v in init.iter().rev() {
        let items = as_list(v, "append")?.to_vec();
        out = List::from_iter_with_tail(items, out);
    }
    Ok(Value::List(out))
}

fn range(a: &[Value]) -> NResult {
    let (start, end, step) = match a {
        [n] => (0, as_int(n, "range")?, 1),
        [s, e] => (as_int(s, "range")?, as_int(e, "range")?, 1),
        [s, e, st] => (
            as_int(s, "range")?,
            as_int(e, "range")?,
            as_int(st, "range")?,
        ),
        _ => unreachable!("arity checked"),
    };
    if step == 0 {
        return Err(type_error("range step must not be zero", vec![]));
    }
    let mut next = Some(start);
    let items = std::iter::from_fn(|| {
        let i = next.filter(|i| (step > 0 && *i < end) || (step < 0 && *i > end))?;
        next = i.checked_add(step);
        Some(Value::Int(i))
    });
    Ok(Value::List(items.collect()))
}

fn sort_by_keys(a: &[Value]) -> NResult {
    let keys = as_list(&a[0], "sort-by")?;
    let items = as_list(&a[1], "sort-by")?;
    let mut pairs: Vec<(Value, Value)> = keys.iter().cloned().zip(items.iter().cloned()).collect();
    pairs.sort_by(|x, y| compare(&x.0, &y.0));
    Ok(Value::list(pairs.into_iter().map(|(_, v)| v).collect()))
}

fn index_of(a: &[Value]) -> NResult {
    if let (Value::Str(s), Value::Str(needle)) = (&a[0], &a[1]) {
        return Ok(s.find(&**needle).map_or(Value::Nil, |byte| {
            Value::Int(s[..byte].chars().count() as i64)
        }));
    }
    let l = as_list(&a[0], "index-of")?;
    Ok(l.iter()
        .position(|x| *x == a[1])
        .map_or(Value::Nil, |i| Value::Int(i as i64)))
}

fn get(a: &[Value]) -> NResult {
    let default = a.get(2).cloned().unwrap_or(Value::Nil);
    match &a[0] {
        Value::Dict(d) => Ok(d.get(&Key(a[1].clone())).cloned().unwrap_or(default)),
        Value::Nil => Ok(default),
        Value::List(l) => Ok(match &a[1] {
            Value::Int(i) if *i >= 0 => l.nth(*i as usize).cloned().unwrap_or(default),
            _ => default,
        }),
        other => Err(type_error(
            format!("get expects a dict, got {}", other.type_name()),
            vec![other.clone()],
        )),
    }
}
