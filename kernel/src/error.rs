//! Error values (SX.md §4): a type, a message, irritants, and the SX call stack captured
//! where the error was raised. Constructors for every kernel-raised error type live here so
//! that the type names are spelled once.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use crate::value::Value;
pub use crate::value::{ErrorValue, StackEntry};

impl fmt::Display for StackEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        match (&self.file, self.pos) {
            (Some(file), Some(pos)) => write!(f, " at {file}:{pos}"),
            (None, Some(pos)) => write!(f, " at {pos}"),
            _ => Ok(()),
        }
    }
}

impl ErrorValue {
    pub fn value(error_type: &str, message: impl Into<String>, irritants: Vec<Value>) -> Value {
        Value::Error(Rc::new(ErrorValue {
            error_type: Rc::from(error_type),
            message: Rc::from(message.into().as_str()),
            irritants,
            stack: RefCell::new(Vec::new()),
        }))
    }
}

pub fn type_error(message: impl Into<String>, irritants: Vec<Value>) -> Value {
    ErrorValue::value("type-error", message, irritants)
}

pub fn arity_error(message: impl Into<String>, irritants: Vec<Value>) -> Value {
    ErrorValue::value("arity-error", message, irritants)
}

pub fn syntax_error(message: impl Into<String>, irritants: Vec<Value>) -> Value {
    ErrorValue::value("syntax-error", message, irritants)
}

/// A Datalog database refused a fact, rule or pattern (`kernel/src/datalog`).
pub fn dl_error(message: impl Into<String>, irritants: Vec<Value>) -> Value {
    ErrorValue::value("dl-error", message, irritants)
}

pub fn index_error(message: impl Into<String>, irritants: Vec<Value>) -> Value {
    ErrorValue::value("index-error", message, irritants)
}

/// `unbound-variable` naming the symbol (`set!` says so: it cannot create a binding).
pub fn unbound_variable(name: crate::value::Symbol, by_set: bool) -> Value {
    let what = if by_set {
        "set! of unbound variable"
    } else {
        "unbound variable"
    };
    ErrorValue::value(
        "unbound-variable",
        format!("{what} {}", name.name()),
        vec![Value::Symbol(name)],
    )
}

pub fn out_of_fuel() -> Value {
    ErrorValue::value("out-of-fuel", "out of fuel", vec![])
}

pub fn overflow() -> Value {
    ErrorValue::value("integer-overflow", "integer overflow", vec![])
}

pub fn division_by_zero() -> Value {
    ErrorValue::value("division-by-zero", "division by zero", vec![])
}

/// Renders an uncaught raised value the way the CLI and hosts report it:
/// `TYPE: MESSAGE irritants...` followed by the SX stack, one entry per line.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Error(e) => {
            let mut out = format!("{}: {}", e.error_type, e.message);
            for irritant in &e.irritants {
                let text = crate::printer::repr(irritant);
                // Kernel messages often name their irritant already ("unbound variable x").
                if !e.message.contains(&text) {
                    out.push(' ');
                    out.push_str(&text);
                }
            }
            for entry in e.stack.borrow().iter() {
                out.push_str("\n  in ");
                out.push_str(&entry.to_string());
            }
            out
        }
        other => format!("uncaught raise: {}", crate::printer::repr(other)),
    }
}

/// `describe`, prefixed with the innermost `file:line:col` of the error's stack, for tools
/// that report errors in source files (the build scripts).
pub fn describe_located(err: &Value) -> String {
    let location = match err {
        Value::Error(e) => e
            .stack
            .borrow()
            .iter()
            .find_map(|s| Some(format!("{}:{}: ", s.file.as_deref()?, s.pos?)))
            .unwrap_or_default(),
        _ => String::new(),
    };
    format!("{location}{}", describe(err))
}
