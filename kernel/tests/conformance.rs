//! The SX conformance suite (`sx/tests/*.sx`) as cargo tests, ripgrep-style: one test body
//! run under every engine. Per file there is a trial for each engine (it fails when any
//! `deftest` fails or the file fails to load) and a differential trial that fails when the
//! engines disagree on any test's outcome or error type.

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use sx_kernel::engine::unknown_effect;
use sx_kernel::testing::{describe_failure, run_file, FileReport};
use sx_kernel::{Backend, Value};

const ENGINES: [(Backend, &str); 2] = [(Backend::Interp, "interp"), (Backend::Vm, "vm")];

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sx/tests")
}

/// The effects the suite may use: `now`, as the command line serves it.
fn effects(request: &Value) -> Result<Value, Value> {
    if let Value::Dict(d) = request {
        if d.get(&sx_kernel::value::Key(Value::kw("op"))) == Some(&Value::str("now")) {
            return Ok(Value::Int(1_800_000_000_000));
        }
    }
    Err(unknown_effect(request))
}

fn report(path: &Path, backend: Backend) -> Result<FileReport, Failed> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(run_file(
        &source,
        &path.display().to_string(),
        backend,
        &mut effects,
    ))
}

/// What a test's outcome is, as the engines must agree on it.
fn outcome_key(failure: &Option<Value>) -> String {
    match failure {
        None => "passed".into(),
        Some(Value::Error(e)) => format!("failed with {}", e.error_type),
        Some(other) => format!("failed raising {}", sx_kernel::printer::repr(other)),
    }
}

fn check_agreement(path: &Path) -> Result<(), Failed> {
    let interp = report(path, Backend::Interp)?;
    let vm = report(path, Backend::Vm)?;
    let mut problems = String::new();
    if interp.tests.len() != vm.tests.len() {
        problems.push_str(&format!(
            "interp registered {} tests, vm {}\n",
            interp.tests.len(),
            vm.tests.len()
        ));
    }
    for (a, b) in interp.tests.iter().zip(vm.tests.iter()) {
        let (ka, kb) = (outcome_key(&a.failure), outcome_key(&b.failure));
        if a.name != b.name || ka != kb {
            problems.push_str(&format!("{:?}: interp {ka}, vm {kb}\n", &*a.name));
        }
    }
    let (la, lb) = (outcome_key(&interp.load_error), outcome_key(&vm.load_error));
    if la != lb {
        problems.push_str(&format!("loading: interp {la}, vm {lb}\n"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.into())
    }
}

fn check_file(path: &Path, backend: Backend) -> Result<(), Failed> {
    let name = path.display().to_string();
    let report = report(path, backend)?;
    let mut problems = String::new();
    if let Some(err) = &report.load_error {
        problems.push_str(&format!(
            "loading failed: {}\n",
            sx_kernel::error::describe(err)
        ));
    }
    for outcome in report.tests.iter().filter(|t| t.failure.is_some()) {
        problems.push_str(&describe_failure(&name, outcome));
    }
    if report.tests.is_empty() {
        problems.push_str("the file registered no tests\n");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let mut files: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .expect("sx/tests exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sx"))
        .collect();
    files.sort();
    let mut trials = Vec::new();
    for path in files {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for (backend, engine) in ENGINES {
            let path = path.clone();
            trials.push(Trial::test(format!("{engine}::{stem}"), move || {
                check_file(&path, backend)
            }));
        }
        trials.push(Trial::test(format!("agree::{stem}"), move || {
            check_agreement(&path)
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}
