//! `sx/host/dates.sx` (`host/date`, `host/civil`) against its tests in
//! `sx/host/tests/dates.sx`, under both engines: the epoch, days before it, leap days and
//! year ends.

use std::path::Path;

use sx_kernel::engine::unknown_effect;
use sx_kernel::testing::{describe_failure, run_file};
use sx_kernel::Backend;

#[test]
fn host_dates_pass_their_tests_on_both_engines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sx/host");
    let source = std::fs::read_to_string(root.join("dates.sx")).unwrap()
        + "\n"
        + &std::fs::read_to_string(root.join("tests/dates.sx")).unwrap();
    for backend in [Backend::Interp, Backend::Vm] {
        let report = run_file(&source, "sx/host/tests/dates.sx", backend, &mut |request| {
            Err(unknown_effect(request))
        });
        assert!(report.load_error.is_none(), "{:?}", report.load_error);
        assert!(report.tests.len() >= 4, "the tests were registered");
        let failures: Vec<String> = report
            .tests
            .iter()
            .filter(|t| t.failure.is_some())
            .map(|t| describe_failure(&report.file, t))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
