//! What calling a function value means, written once for both engines: a native's argument
//! count, the natives that need the machine (`raise`, `print`, `apply`, `call-with-fuel`,
//! `eval`) decided here and carried out by the engine, and a component's keyword arguments.

use crate::builtins;
use crate::engine::Engine;
use crate::error::{arity_error, type_error};
use crate::value::{Component, Native, NativeKind, Value};

/// What a native call asks of the engine that made it.
pub(crate) enum NativeCall {
    /// The call's value.
    Return(Value),
    /// Raise this, at the named site.
    Raise(Value, &'static str),
    /// `apply`: call the function with these arguments (in tail position if the call was).
    Apply(Value, Vec<Value>),
    /// `call-with-fuel`: call the thunk with at most this many more steps.
    WithFuel(u64, Value),
    /// `eval`: expand and run this form in the global environment.
    Eval(Value),
}

/// Calls `native` with `args`: checks the count, runs a plain native, and decides what a
/// machine-level native needs.
pub(crate) fn call_native(native: &Native, args: &[Value], engine: &mut Engine) -> NativeCall {
    let n = args.len();
    if n < native.min_args || native.max_args.is_some_and(|max| n > max) {
        return NativeCall::Raise(builtins::arity_mismatch(native, n), native.name);
    }
    let first = || args.first().cloned().unwrap_or(Value::Nil);
    match native.kind {
        NativeKind::Pure(f) => match f(args) {
            Ok(v) => NativeCall::Return(v),
            Err(err) => NativeCall::Raise(err, native.name),
        },
        NativeKind::Raise => NativeCall::Raise(first(), "raise"),
        NativeKind::Print => {
            let mut line = String::new();
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    line.push(' ');
                }
                line.push_str(&crate::printer::display(a));
            }
            line.push('\n');
            engine.write_output(&line);
            NativeCall::Return(Value::Nil)
        }
        NativeKind::Apply => match builtins::spread_apply_args(args.to_vec()) {
            Ok((f, spread)) => NativeCall::Apply(f, spread),
            Err(err) => NativeCall::Raise(err, "apply"),
        },
        NativeKind::WithFuel => match args {
            [Value::Int(budget), thunk] if *budget >= 0 => {
                NativeCall::WithFuel(*budget as u64, thunk.clone())
            }
            _ => NativeCall::Raise(
                type_error("call-with-fuel needs a non-negative integer budget", vec![]),
                "call-with-fuel",
            ),
        },
        NativeKind::Eval => NativeCall::Eval(first()),
    }
}

/// Sorts a component call's arguments into slots: each key's value (or nil), then children.
pub(crate) fn component_args(comp: &Component, args: Vec<Value>) -> Result<Vec<Value>, Value> {
    let mut slots = vec![Value::Nil; comp.keys.len()];
    let mut it = args.into_iter().peekable();
    while let Some(Value::Keyword(k)) = it.peek() {
        let k = *k;
        it.next();
        let Some(value) = it.next() else {
            return Err(arity_error(
                format!("prop :{} of {} has no value", k.name(), comp.name.name()),
                vec![Value::Keyword(k)],
            ));
        };
        match comp.keys.iter().position(|key| key.name() == k.name()) {
            Some(i) => slots[i] = value,
            None => {
                return Err(arity_error(
                    format!("{} has no prop :{}", comp.name.name(), k.name()),
                    vec![Value::Keyword(k)],
                ))
            }
        }
    }
    slots.push(Value::List(it.collect()));
    Ok(slots)
}
