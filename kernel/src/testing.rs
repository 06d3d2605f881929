//! Test support for SX files (SX.md §8): run a file's `deftest`s and describe failures with
//! expected/actual and location. `sx test` and the conformance harness both use this.

use std::rc::Rc;

use crate::engine::{Backend, Engine};
use crate::error::describe;
use crate::expander::SrcLoc;
use crate::printer::repr;
use crate::run::drive_now;
use crate::value::Value;

pub type Effects<'a> = &'a mut dyn FnMut(&Value) -> Result<Value, Value>;

pub struct TestOutcome {
    pub name: Rc<str>,
    pub loc: Option<Rc<SrcLoc>>,
    /// The value the test raised, when it failed.
    pub failure: Option<Value>,
}

pub struct FileReport {
    pub file: String,
    /// The file itself failed to read or run (its tests may not all be registered).
    pub load_error: Option<Value>,
    pub tests: Vec<TestOutcome>,
}

impl FileReport {
    pub fn passed(&self) -> usize {
        self.tests.iter().filter(|t| t.failure.is_none()).count()
    }

    pub fn failed(&self) -> usize {
        self.tests.len() - self.passed() + usize::from(self.load_error.is_some())
    }
}

/// Loads `source` into a fresh engine, then runs every test it registered.
pub fn run_file(source: &str, file: &str, backend: Backend, effects: Effects<'_>) -> FileReport {
    run_file_with(&[], source, file, backend, effects)
}

/// Like [`run_file`], with `preload` — (file name, source) pairs, e.g. an app's code that
/// its tests exercise — loaded first, in order. A failure there is the report's load error.
pub fn run_file_with(
    preload: &[(String, String)],
    source: &str,
    file: &str,
    backend: Backend,
    effects: Effects<'_>,
) -> FileReport {
    let mut engine = Engine::with_backend(backend);
    let mut load_error = None;
    for (name, text) in preload
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .chain([(file, source)])
    {
        load_error = match engine.start(text, Some(name)) {
            Err(e) => Some(e),
            Ok(mut run) => drive_now(&mut run, &mut engine, &mut *effects).err(),
        };
        if load_error.is_some() {
            break;
        }
    }
    let tests = engine
        .run_tests(effects)
        .into_iter()
        .map(|(test, result)| TestOutcome {
            name: test.name,
            loc: test.loc,
            failure: result.err(),
        })
        .collect();
    FileReport {
        file: file.to_string(),
        load_error,
        tests,
    }
}

/// A failure as people read it: what was expected, what came instead, and where.
pub fn describe_failure(file: &str, outcome: &TestOutcome) -> String {
    let at = match &outcome.loc {
        Some(loc) => format!("{}:{}", loc.file.as_deref().unwrap_or(file), loc.pos),
        None => file.to_string(),
    };
    let mut out = format!("FAIL {:?} ({at})\n", &*outcome.name);
    if let Some(Value::Error(e)) = &outcome.failure {
        if &*e.error_type == "assertion-failed" && e.irritants.len() >= 2 {
            out.push_str(&format!("  {}\n", e.message));
            out.push_str(&format!("    expected: {}\n", repr(&e.irritants[0])));
            out.push_str(&format!("    actual:   {}\n", repr(&e.irritants[1])));
            for entry in e.stack.borrow().iter() {
                out.push_str(&format!("  in {entry}\n"));
            }
            return out;
        }
    }
    if let Some(v) = &outcome.failure {
        for line in describe(v).lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
