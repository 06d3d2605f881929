//! The printer: `repr` (SX text that reads back to an equal value) and the display form
//! used by `print` and `str` (strings as their characters, everything else as `repr`).

use std::fmt::Write;

use crate::value::Value;

pub fn repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, v);
    out
}

pub fn display(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        other => repr(other),
    }
}

/// Appends the display form of `v` to `out` (`nil` contributes nothing: that is `str`'s rule).
pub fn write_str_part(out: &mut String, v: &Value) {
    match v {
        Value::Nil => {}
        Value::Str(s) => out.push_str(s),
        other => write_repr(out, other),
    }
}

pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        "+nan.0".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+inf.0" } else { "-inf.0" }.into()
    } else {
        format!("{f:?}")
    }
}

pub fn write_string_literal(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub fn write_repr(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => out.push_str(&float_repr(*f)),
        Value::Str(s) => write_string_literal(out, s),
        Value::Keyword(k) => {
            out.push(':');
            out.push_str(k.name());
        }
        Value::Symbol(s) => out.push_str(s.name()),
        Value::List(items) => {
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_repr(out, item);
            }
            out.push(')');
        }
        Value::Dict(d) => {
            out.push('{');
            for (i, (k, val)) in d.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_repr(out, &k.0);
                out.push(' ');
                write_repr(out, val);
            }
            out.push('}');
        }
        Value::Fn(c) => match c.name() {
            Some(name) => {
                let _ = write!(out, "#<fn {}>", name.name());
            }
            None => out.push_str("#<fn>"),
        },
        Value::Native(n) => {
            let _ = write!(out, "#<fn {}>", n.name);
        }
        Value::Macro(c) => {
            let name = c.name().map_or("", |n| n.name());
            let _ = write!(out, "#<macro {name}>");
        }
        Value::Component(c) => {
            let _ = write!(out, "#<component {}>", c.name.name());
        }
        Value::Error(e) => {
            let _ = write!(out, "#<error {}: {}>", e.error_type, e.message);
        }
        Value::Boxed(b) => write_repr(out, &b.borrow()),
        Value::Opaque(o) => out.push_str(&o.repr()),
        Value::Raw(s) => {
            out.push_str("(raw! ");
            write_string_literal(out, s);
            out.push(')');
        }
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&repr(self))
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&display(self))
    }
}
