//! The `sx` command as users run it: exit codes, stdout/stderr contracts, hostile input.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

fn sx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(args)
        .output()
        .expect("the sx binary runs")
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(contents)
        .unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_prints_exactly_what_print_wrote() {
    let f = temp_file(
        "hello.sx",
        b"(print \"a\" 1 (list \"b\" 2))\n(define x 5)\n(print (* x x))",
    );
    let out = sx(&["run", f.to_str().unwrap()]);
    assert_eq!(text(&out.stdout), "a 1 (\"b\" 2)\n25\n");
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn uncaught_error_reports_type_message_and_location() {
    let f = temp_file(
        "err.sx",
        b"(print \"before\")\n(define (f x) (+ x \"a\"))\n(f 1)\n(print \"after\")",
    );
    let out = sx(&["run", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "before\n");
    let err = text(&out.stderr);
    assert!(err.contains("type-error"), "{err}");
    assert!(err.contains("err.sx:2:15"), "{err}");
    assert!(err.contains("in f at"), "{err}");
}

#[test]
fn read_errors_name_line_and_column_and_run_nothing() {
    let f = temp_file("unclosed.sx", b"(print \"ran\")\n(let ((a 1)\n  (b 2)");
    let out = sx(&["run", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(err.contains("unclosed.sx:2:6"), "{err}");
    assert!(err.contains("read-error"), "{err}");
}

#[test]
fn garbage_never_panics() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut random = Vec::new();
    for _ in 0..4096 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        random.push((seed >> 24) as u8);
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random.sx", random),
        ("unbalanced.sx", b"(((]]) )))".to_vec()),
        ("deep.sx", "(".repeat(100_000).into_bytes()),
        (
            "deep-closed.sx",
            format!("{}{}", "(".repeat(100_000), ")".repeat(100_000)).into_bytes(),
        ),
        ("quotes.sx", "'".repeat(100_000).into_bytes()),
        (
            "deep-code.sx",
            format!("{}1{}", "(list ".repeat(5000), ")".repeat(5000)).into_bytes(),
        ),
    ];
    for (name, bytes) in cases {
        let f = temp_file(name, &bytes);
        let out = sx(&["run", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        assert!(!text(&out.stderr).is_empty(), "{name} gave no message");
    }
}

#[test]
fn a_test_file_reports_passes_and_failures() {
    let f = temp_file(
        "mixed.sx",
        b"(deftest \"passes\" (assert= 2 (+ 1 1)))\n(deftest \"fails\" (assert= 3 (+ 1 1)))\n",
    );
    let out = sx(&["test", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().last(),
        Some("1 passed, 1 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("expected: 3"), "{stdout}");
    assert!(stdout.contains("actual:   2"), "{stdout}");
    assert!(stdout.contains("mixed.sx:2:1"), "{stdout}");
}

#[test]
fn passing_tests_exit_zero() {
    let f = temp_file("ok.sx", b"(deftest \"ok\" (assert true))");
    let out = sx(&["test", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).lines().last(), Some("1 passed, 0 failed"));
}

#[test]
fn fuel_limits_a_run() {
    let f = temp_file("spin.sx", b"(define (spin) (spin))\n(spin)");
    let out = sx(&["run", "--fuel", "10000", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("out-of-fuel"));
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = sx(&["run", "/definitely/not/here.sx"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read /definitely/not/here.sx"));
}

#[test]
fn help_is_available_for_every_subcommand() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["test", "--help"],
        &["repl", "--help"],
    ] {
        let out = sx(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(text(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn both_engines_print_the_same() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut programs: Vec<PathBuf> = std::fs::read_dir(root.join("bench"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sx"))
        .filter(|p| !p.ends_with("loop.sx")) // ten million iterations: too slow for the interpreter here
        .filter(|p| !p.ends_with("tc_hi.sx")) // 3.5 million Datalog tuples: too slow in a debug build
        .collect();
    programs.push(root.join("sx/examples/hello.sx"));
    programs.push(temp_file(
        "errors.sx",
        b"(define (f x) (guard (e ((string? e) (str \"caught \" e))) (raise x)))\n(print (f \"s\"))\n(print (map (fn (x) (* x x)) (range 5)))\n(f 1)",
    ));
    for program in programs {
        let path = program.to_str().unwrap();
        let interp = sx(&["run", "--engine", "interp", path]);
        let vm = sx(&["run", "--engine", "vm", path]);
        assert_eq!(text(&interp.stdout), text(&vm.stdout), "{path}");
        assert_eq!(interp.status.code(), vm.status.code(), "{path}");
        let first_line = |o: &Output| text(&o.stderr).lines().next().unwrap_or("").to_string();
        assert_eq!(first_line(&interp), first_line(&vm), "{path}");
    }
}

#[test]
fn compiled_bytecode_runs_and_disassembles() {
    let src = temp_file(
        "prog.sx",
        b"(define (sq x) (* x x))\n(print (map sq (range 4)))",
    );
    let out_path = src.with_extension("sxbc");
    let out = sx(&[
        "compile",
        src.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ran = sx(&["run", out_path.to_str().unwrap()]);
    assert_eq!(text(&ran.stdout), "(0 1 4 9)\n");
    let listing = sx(&["disasm", out_path.to_str().unwrap()]);
    assert_eq!(listing.status.code(), Some(0));
    assert!(
        text(&listing.stdout).contains("mul r1 r0 r0 *"),
        "{}",
        text(&listing.stdout)
    );
}

#[test]
fn damaged_and_stale_bytecode_exit_1_with_a_message() {
    let src = temp_file("small.sx", b"(print \"hi\")");
    let good = src.with_extension("sxbc");
    let out = sx(&[
        "compile",
        src.to_str().unwrap(),
        "-o",
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let bytes = std::fs::read(&good).unwrap();

    let truncated = temp_file("truncated.sxbc", &bytes[..bytes.len() - 3]);
    let out = sx(&["run", truncated.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("damaged bytecode"),
        "{}",
        text(&out.stderr)
    );

    let mut flipped = bytes.clone();
    flipped[7] ^= 0x10; // inside the opcode-table hash
    let stale = temp_file("stale.sxbc", &flipped);
    let out = sx(&["run", stale.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("stale bytecode"), "{err}");
    assert!(err.contains("this is kernel"), "{err}");

    for i in 0..bytes.len() {
        let mut mutated = bytes.clone();
        mutated[i] ^= 0x41;
        let path = temp_file("mutated.sxbc", &mutated);
        let out = sx(&["run", "--fuel", "10000", path.to_str().unwrap()]);
        assert_ne!(
            out.status.code(),
            Some(101),
            "byte {i}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn compile_errors_are_reported() {
    let src = temp_file("bad.sx", b"(define (f) (if))");
    let out = sx(&[
        "compile",
        src.to_str().unwrap(),
        "-o",
        "/tmp/never-written.sxbc",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("syntax-error"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn account_commands_refuse_bad_input_clearly() {
    let dir = std::env::temp_dir().join(format!("sx-accounts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["token", "create", "nobody", "--data", data],
            "there is no user \"nobody\"",
        ),
        (
            &["grant", "nobody", "write", "--data", data],
            "there is no user \"nobody\"",
        ),
        (
            &[
                "user",
                "add",
                "bad name",
                "--password",
                "long enough",
                "--data",
                data,
            ],
            "is not a user name",
        ),
        (
            &["user", "add", "cy", "--password", "short", "--data", data],
            "at least 8 characters",
        ),
    ];
    for (args, message) in cases {
        let out = sx(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = sx(&[
        "user",
        "add",
        "cy",
        "--password",
        "long enough",
        "--data",
        data,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = sx(&[
        "user",
        "add",
        "cy",
        "--password",
        "long enough",
        "--data",
        data,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already a user"));
    let out = sx(&["grant", "cy", "has space", "--data", data]);
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_configured_admin_can_get_a_token_before_the_first_start() {
    let dir = std::env::temp_dir().join(format!("sx-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str], admin: &str| {
        Command::new(env!("CARGO_BIN_EXE_sx"))
            .args(args)
            .arg("--data")
            .arg(&dir)
            .env("SX_ADMIN_USER", admin)
            .env("SX_ADMIN_PASSWORD", "correct horse battery")
            .output()
            .unwrap()
    };
    let out = run(&["token", "create", "ann"], "ann");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("sxt_"));
    let out = run(&["token", "create", "ann"], "not a name");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("SX_ADMIN_USER"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
