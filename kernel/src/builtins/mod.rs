//! The core library (SX.md §7): natives written in Rust, grouped by what they work on, and
//! the SX prelude (`prelude.sx`) for the higher-order functions, which must call back into
//! SX without Rust recursion and so are written in SX itself.

mod case;
#[rustfmt::skip] // generated (case.rs)
mod case_tables;
mod collections;
pub mod json;
mod numbers;
mod strings;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::error::{arity_error, type_error, ErrorValue};
use crate::expander::{global_cell, library_name, Globals};
use crate::value::{gensym, List, Native, NativeFn, NativeKind, Symbol, Value};

pub const PRELUDE: &str = include_str!("prelude.sx");

pub type NResult = Result<Value, Value>;

struct Entry {
    name: &'static str,
    min: usize,
    max: Option<usize>,
    kind: NativeKind,
}

const fn pure(name: &'static str, min: usize, max: Option<usize>, f: NativeFn) -> Entry {
    Entry {
        name,
        min,
        max,
        kind: NativeKind::Pure(f),
    }
}

fn table() -> Vec<Entry> {
    let mut t = vec![
        Entry {
            name: "apply",
            min: 2,
            max: None,
            kind: NativeKind::Apply,
        },
        Entry {
            name: "print",
            min: 0,
            max: None,
            kind: NativeKind::Print,
        },
        Entry {
            name: "call-with-fuel",
            min: 2,
            max: Some(2),
            kind: NativeKind::WithFuel,
        },
        Entry {
            name: "raise",
            min: 1,
            max: Some(1),
            kind: NativeKind::Raise,
        },
        Entry {
            name: "eval",
            min: 1,
            max: Some(1),
            kind: NativeKind::Eval,
        },
        pure("error", 1, None, error),
        pure("error-type", 1, Some(1), error_type),
        pure("error-message", 1, Some(1), error_message),
        pure("error-irritants", 1, Some(1), error_irritants),
        pure("make-error", 2, None, make_error),
        pure("type-of", 1, Some(1), |a| Ok(Value::str(a[0].type_name()))),
        pure("nil?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::Nil)))
        }),
        pure("bool?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::Bool(_))))
        }),
        pure("number?", 1, Some(1), |a| Ok(Value::Bool(a[0].is_number()))),
        pure("int?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::Int(_))))
        }),
        pure("float?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::Float(_))))
        }),
        pure("string?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::Str(_))))
        }),
        pure("keyword?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::Keyword(_))))
        }),
        pure("symbol?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::Symbol(_))))
        }),
        pure("list?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::List(_))))
        }),
        pure("dict?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::Dict(_))))
        }),
        pure("fn?", 1, Some(1), |a| Ok(Value::Bool(a[0].is_function()))),
        pure("error?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::Error(_))))
        }),
        pure("component?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::Component(_))))
        }),
        pure("raw?", 1, Some(1), |a| {
            Ok(Value::Bool(matches!(a[0], Value::Raw(_))))
        }),
        pure("not", 1, Some(1), |a| Ok(Value::Bool(!a[0].is_truthy()))),
        pure("identity", 1, Some(1), |a| Ok(a[0].clone())),
        pure("repr", 1, Some(1), |a| {
            Ok(Value::str(&crate::printer::repr(&a[0])))
        }),
        pure("read-string", 1, Some(1), read_string),
        pure("gensym", 0, Some(1), gensym_native),
        pure("el", 1, None, el),
        pure("raw!", 1, None, raw),
        pure("render-html", 1, Some(1), |a| {
            Ok(Value::str(&crate::html::render(&a[0])?))
        }),
        pure("assert", 1, Some(2), assert),
        pure("assert=", 2, Some(3), assert_eq),
        pure("%splice", 0, None, splice),
        pure("%native?", 2, Some(2), is_plain_native),
        pure("%map-native", 2, Some(2), map_native),
        pure("%filter-native", 2, Some(2), filter_native),
        pure("%reduce-native", 3, Some(3), reduce_native),
        pure("%entries", 1, Some(1), entries),
        pure("%library-name", 1, Some(1), |a| match &a[0] {
            Value::Symbol(s) => Ok(Value::Symbol(library_name(*s))),
            other => Err(type_error(
                "%library-name expects a symbol",
                vec![other.clone()],
            )),
        }),
    ];
    t.extend(numbers::table());
    t.extend(strings::table());
    t.extend(collections::table());
    #[cfg(feature = "json")]
    t.extend(json::table());
    #[cfg(feature = "datalog")]
    t.extend(
        crate::datalog::builtins::natives()
            .into_iter()
            .map(|(name, min, max, f)| pure(name, min, max, f)),
    );
    t
}

thread_local! {
    static NATIVES: RefCell<HashMap<&'static str, Rc<Native>>> = RefCell::new(
        table()
            .into_iter()
            .map(|e| {
                (e.name, Rc::new(Native { name: e.name, min_args: e.min, max_args: e.max, kind: e.kind }))
            })
            .collect(),
    );
}

/// The native called `name`.
pub fn native_rc(name: &str) -> Rc<Native> {
    NATIVES.with(|n| {
        n.borrow()
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no native called {name}"))
    })
}

/// The native called `name`, if there is one (for loading bytecode).
pub fn try_native(name: &str) -> Option<Value> {
    NATIVES.with(|n| n.borrow().get(name).cloned().map(Value::Native))
}

pub fn native(name: &str) -> Value {
    Value::Native(native_rc(name))
}

/// Binds every native in `globals`, under its public name and as the library's own
/// binding (`expander::library_name`), which user code cannot rebind.
pub fn install(globals: &mut Globals) {
    NATIVES.with(|n| {
        for (name, native) in n.borrow().iter() {
            let name = Symbol::new(name);
            for name in [name, library_name(name)] {
                let cell = global_cell(globals, name);
                *cell.value.borrow_mut() = Some(Value::Native(native.clone()));
                cell.builtin.set(true);
            }
        }
    });
}

pub fn arity_mismatch(native: &Native, got: usize) -> Value {
    let expected = match native.max_args {
        Some(max) if max == native.min_args => max.to_string(),
        Some(max) => format!("{} to {max}", native.min_args),
        None => format!("at least {}", native.min_args),
    };
    arity_error(
        format!("{} takes {expected} argument(s), got {got}", native.name),
        vec![Value::Int(got as i64)],
    )
}

/// `(apply f a b xs)` → `f` and `(a b . xs)`.
pub fn spread_apply_args(mut args: Vec<Value>) -> Result<(Value, Vec<Value>), Value> {
    let last = args.pop().unwrap_or(Value::Nil);
    let tail = as_list(&last, "apply")?;
    let mut it = args.into_iter();
    let f = it.next().unwrap_or(Value::Nil);
    let mut spread: Vec<Value> = it.collect();
    spread.extend(tail.iter().cloned());
    Ok((f, spread))
}

// ---- argument helpers, shared by the submodules ----

pub(crate) fn as_list(v: &Value, who: &str) -> Result<List, Value> {
    match v {
        Value::List(l) => Ok(l.clone()),
        Value::Nil => Ok(List::empty()),
        other => Err(type_error(
            format!("{who} expects a list, got {}", other.type_name()),
            vec![other.clone()],
        )),
    }
}

pub(crate) fn as_str<'a>(v: &'a Value, who: &str) -> Result<&'a str, Value> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(type_error(
            format!("{who} expects a string, got {}", other.type_name()),
            vec![other.clone()],
        )),
    }
}

pub(crate) fn as_int(v: &Value, who: &str) -> Result<i64, Value> {
    match v {
        Value::Int(n) => Ok(*n),
        other => Err(type_error(
            format!("{who} expects an integer, got {}", other.type_name()),
            vec![other.clone()],
        )),
    }
}

// ---- errors ----

fn error(a: &[Value]) -> NResult {
    let message = crate::printer::display(&a[0]);
    Err(ErrorValue::value("error", message, a[1..].to_vec()))
}

/// `(make-error type message irritants...)`: an error value of any type, not raised.
fn make_error(a: &[Value]) -> NResult {
    let ty = crate::printer::display(&a[0]);
    let message = crate::printer::display(&a[1]);
    Ok(ErrorValue::value(&ty, message, a[2..].to_vec()))
}

fn the_error<'a>(v: &'a Value, who: &str) -> Result<&'a crate::error::ErrorValue, Value> {
    match v {
        Value::Error(e) => Ok(e),
        other => Err(type_error(
            format!("{who} expects an error, got {}", other.type_name()),
            vec![other.clone()],
        )),
    }
}

fn error_type(a: &[Value]) -> NResult {
    Ok(Value::Str(
        the_error(&a[0], "error-type")?.error_type.clone(),
    ))
}

fn error_message(a: &[Value]) -> NResult {
    Ok(Value::Str(
        the_error(&a[0], "error-message")?.message.clone(),
    ))
}

fn error_irritants(a: &[Value]) -> NResult {
    Ok(Value::list(
        the_error(&a[0], "error-irritants")?.irritants.clone(),
    ))
}

// ---- data and misc ----

fn read_string(a: &[Value]) -> NResult {
    let text = as_str(&a[0], "read-string")?;
    crate::reader::read_one(text)
        .map_err(|e| ErrorValue::value("read-error", format!("{}: {}", e.pos, e.message), vec![]))
}

fn gensym_native(a: &[Value]) -> NResult {
    let prefix = match a.first() {
        Some(v) => crate::printer::display(v),
        None => "g".into(),
    };
    Ok(Value::Symbol(gensym(&prefix)))
}

fn el(a: &[Value]) -> NResult {
    let name = match &a[0] {
        Value::Str(s) => s.to_string(),
        Value::Symbol(s) | Value::Keyword(s) => s.name().to_string(),
        other => {
            return Err(type_error(
                "el expects an element name",
                vec![other.clone()],
            ));
        }
    };
    if !crate::html::valid_tag_name(&name) {
        return Err(type_error(
            format!("{name:?} is not a valid element name"),
            vec![a[0].clone()],
        ));
    }
    let mut items = vec![Value::sym(&name)];
    items.extend(a[1..].iter().cloned());
    Ok(Value::list(items))
}

fn raw(a: &[Value]) -> NResult {
    let mut out = String::new();
    for v in a {
        crate::printer::write_str_part(&mut out, v);
    }
    Ok(Value::Raw(Rc::from(out.as_str())))
}

fn assert(a: &[Value]) -> NResult {
    if a[0].is_truthy() {
        return Ok(Value::Bool(true));
    }
    let message = match a.get(1) {
        Some(m) => crate::printer::display(m),
        None => "assertion failed".into(),
    };
    Err(ErrorValue::value(
        "assertion-failed",
        message,
        vec![a[0].clone()],
    ))
}

fn assert_eq(a: &[Value]) -> NResult {
    if a[0] == a[1] {
        return Ok(Value::Bool(true));
    }
    let message = match a.get(2) {
        Some(m) => crate::printer::display(m),
        None => "assert= failed".into(),
    };
    Err(ErrorValue::value(
        "assertion-failed",
        message,
        vec![a[0].clone(), a[1].clone()],
    ))
}

/// Quasiquote's splice: appends lists; `nil` splices nothing, anything else is an error.
fn splice(a: &[Value]) -> NResult {
    let mut out = Vec::new();
    for v in a {
        match v {
            Value::List(l) => out.extend(l.iter().cloned()),
            Value::Nil => {}
            other => {
                return Err(type_error(
                    format!("unquote-splicing expects a list, got {}", other.type_name()),
                    vec![other.clone()],
                ))
            }
        }
    }
    Ok(Value::list(out))
}

/// `(%native? f n)`: is `f` a plain native that accepts `n` arguments? The prelude's
/// higher-order functions then call it directly, without a round trip through the engine.
fn is_plain_native(a: &[Value]) -> NResult {
    Ok(Value::Bool(plain_native(&a[0], &a[1]).is_some()))
}

fn plain_native(f: &Value, argc: &Value) -> Option<NativeFn> {
    let (Value::Native(n), Value::Int(argc)) = (f, argc) else {
        return None;
    };
    let argc = usize::try_from(*argc).ok()?;
    match n.kind {
        NativeKind::Pure(f) if n.min_args <= argc && n.max_args.is_none_or(|m| argc <= m) => {
            Some(f)
        }
        _ => None,
    }
}

fn native_arg(f: &Value, argc: i64) -> Result<NativeFn, Value> {
    plain_native(f, &Value::Int(argc))
        .ok_or_else(|| type_error("expected a plain native", vec![f.clone()]))
}

fn map_native(a: &[Value]) -> NResult {
    let f = native_arg(&a[0], 1)?;
    let items = match entries(&a[1..2])? {
        Value::List(l) => l,
        _ => List::empty(),
    };
    let mapped: Result<List, Value> = items.iter().map(|x| f(std::slice::from_ref(x))).collect();
    Ok(Value::List(mapped?))
}

fn filter_native(a: &[Value]) -> NResult {
    let f = native_arg(&a[0], 1)?;
    let items = match entries(&a[1..2])? {
        Value::List(l) => l,
        _ => List::empty(),
    };
    let mut kept = Vec::new();
    for x in items.iter() {
        if f(std::slice::from_ref(x))?.is_truthy() {
            kept.push(x.clone());
        }
    }
    Ok(Value::list(kept))
}

fn reduce_native(a: &[Value]) -> NResult {
    let f = native_arg(&a[0], 2)?;
    let items = match entries(&a[2..3])? {
        Value::List(l) => l,
        _ => List::empty(),
    };
    let mut acc = a[1].clone();
    for x in items.iter() {
        acc = f(&[acc, x.clone()])?;
    }
    Ok(acc)
}

/// A collection as a list of its elements; dicts give `(k v)` entries in key order.
fn entries(a: &[Value]) -> NResult {
    match &a[0] {
        Value::Dict(d) => Ok(Value::list(
            d.iter()
                .map(|(k, v)| Value::list(vec![k.0.clone(), v.clone()]))
                .collect(),
        )),
        Value::Nil => Ok(Value::List(List::empty())),
        Value::List(_) => Ok(a[0].clone()),
        other => Err(type_error(
            format!("expected a list or a dict, got {}", other.type_name()),
            vec![other.clone()],
        )),
    }
}
