//! The SX conformance suite (`sx/tests/*.sx`) as cargo tests: one trial per file, each run
//! under every engine. A trial fails when any `deftest` fails or a file fails to load.

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use sx_kernel::engine::unknown_effect;
use sx_kernel::testing::{describe_failure, run_file};
use sx_kernel::Value;

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

fn check_file(path: &Path) -> Result<(), Failed> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.display().to_string();
    let report = run_file(&source, &name, &mut effects);
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
    let trials = files
        .into_iter()
        .map(|path| {
            let name = format!(
                "interp::{}",
                path.file_stem().unwrap_or_default().to_string_lossy()
            );
            Trial::test(name, move || check_file(&path))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
