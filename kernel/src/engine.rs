//! The kernel image and the protocol of its engines: an [`Engine`] holds one kernel image
//! (globals, registered tests, the output sink, limits); a machine of either engine runs on
//! it until it ends in a [`Step`]: done, failed, or stopped at a `perform` whose request the
//! host serves. Running SX text (reader → expander → engine), programs and the drive loop
//! are in `run.rs`, a layer above the engines.

use std::rc::Rc;

use crate::builtins;
use crate::error::{ErrorValue, StackEntry};
use crate::expander::{Globals, SrcLoc};
use crate::reader;
use crate::value::Value;

pub const DEFAULT_MAX_DEPTH: usize = 100_000;

/// The kernel version, stamped into bytecode and reported by hosts.
pub const KERNEL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a run of a machine ended with.
pub enum Step {
    Done(Value),
    /// The machine stopped at `(perform request)`; resume it with a value or an error.
    Perform(Value),
    Error(Value),
}

/// Which engine runs expanded code. Both give the same results (the conformance suite
/// checks that); the interpreter is the reference, the VM the fast path. The interpreter
/// runs only expanded source, so it exists only with the `source` feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    #[cfg(feature = "source")]
    Interp,
    Vm,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Evaluation steps a run may take; `None` is unlimited.
    pub fuel: Option<u64>,
    /// Nested (non-tail) calls before `stack-overflow`.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: None,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// A `deftest` registered while a file ran.
pub struct Test {
    pub name: Rc<str>,
    pub thunk: Value,
    pub loc: Option<Rc<SrcLoc>>,
}

pub struct Engine {
    pub backend: Backend,
    pub globals: Globals,
    pub tests: Vec<Test>,
    pub limits: Limits,
    output: Box<dyn FnMut(&str)>,
}

/// Turns a read error into an SX `read-error` value located at `file:line:col`.
pub fn read_error_value(err: &reader::ReadError, file: Option<&Rc<str>>) -> Value {
    let v = ErrorValue::value("read-error", err.message.clone(), vec![]);
    if let Value::Error(e) = &v {
        e.stack.borrow_mut().push(StackEntry {
            name: Rc::from("<read>"),
            file: file.cloned(),
            pos: Some(err.pos),
        });
    }
    v
}

impl Drop for Engine {
    // Globals and the code that names them point at each other (a function's code holds the
    // cell the function is stored in): clear the cells so dropping an engine frees its image.
    fn drop(&mut self) {
        for global in self.globals.values() {
            global.value.borrow_mut().take();
        }
    }
}

impl Engine {
    /// An image with the core library's natives and nothing else (no prelude).
    pub(crate) fn bare(backend: Backend) -> Engine {
        let mut engine = Engine {
            backend,
            globals: Globals::new(),
            tests: Vec::new(),
            limits: Limits::default(),
            output: Box::new(|_| {}),
        };
        builtins::install(&mut engine.globals);
        engine
    }

    /// Where `print` writes.
    pub fn set_output(&mut self, sink: Box<dyn FnMut(&str)>) {
        self.output = sink;
    }

    pub fn write_output(&mut self, text: &str) {
        (self.output)(text);
    }

    pub fn lookup(&self, name: &str) -> Option<Value> {
        self.globals
            .get(&crate::value::Symbol::new(name))
            .and_then(|g| g.value.borrow().clone())
    }
}

pub fn unknown_effect(request: &Value) -> Value {
    let op = match request {
        Value::Dict(d) => d
            .get(&crate::value::Key(Value::kw("op")))
            .map(crate::printer::display)
            .unwrap_or_default(),
        _ => String::new(),
    };
    ErrorValue::value(
        "unknown-effect",
        format!("no handler for effect {op:?}"),
        vec![request.clone()],
    )
}
