//! `.sxbc` files: a compiled program runs like its source; truncated, bit-flipped and stale
//! files are refused with a clear error (never a panic); whatever a mutated file manages to
//! load runs without panicking.

use std::cell::RefCell;
use std::rc::Rc;

use sx_kernel::engine::unknown_effect;
use sx_kernel::sxbc::{self, LoadError};
use sx_kernel::{drive_now, Backend, Engine, Limits};

const PROGRAM: &str = r#"
(defmacro twice (e) `(begin ,e ,e))
(define (helper x) (* x 10))
(defmacro scaled (n) (helper n))
(defcomp ~card (&key title children) (div :class "card" (h2 title) children))
(define counter 0)
(define (bump!) (set! counter (+ counter 1)))
(twice (bump!))
(define (make-adder n) (fn (x) (+ x n)))
(define (count-to n) (let loop ((i 0) (acc ())) (if (= i n) (reverse acc) (loop (inc i) (cons i acc)))))
(print counter (scaled 4) ((make-adder 5) 10) (count-to 3))
(print (render-html (~card :title "T & co" (p "body"))))
(print (guard (e ((error? e) (error-type e))) (quot 1 0)))
(print (case 2 ((1) "one") ((2 3) "few") (else "many")) {:a [1 2.5 "s"] :b 'sym})
(print `(1 ,@(list 2 3) ,(+ 2 2)))
(define (empty? x) true)
(define (list &rest xs) :mine)
(print `(1 ,@'(2 3)) (map (fn (x) (* 2 x)) '(1 2)) (case 1 (() :no) ((1) :yes)) (list 1))
(print (guard (o (true :outer)) (guard (e ((string? e) 1)) (raise 5))) (assert-raises "division-by-zero" (quot 1 0)))
"#;

/// Runs a started program to the end; returns what it printed, or the error text.
fn run(engine: &mut Engine, mut run: sx_kernel::Run) -> Result<String, String> {
    let out = Rc::new(RefCell::new(String::new()));
    let sink = out.clone();
    engine.set_output(Box::new(move |s| sink.borrow_mut().push_str(s)));
    match drive_now(&mut run, engine, |req| Err(unknown_effect(req))) {
        Ok(_) => Ok(out.borrow().clone()),
        Err(e) => Err(sx_kernel::error::describe(&e)),
    }
}

fn compiled() -> Vec<u8> {
    let mut engine = Engine::with_backend(Backend::Vm);
    let program = engine
        .compile_program(PROGRAM, Some("program.sx"))
        .expect("compiles");
    sxbc::write(&program).expect("serialises")
}

#[test]
fn a_compiled_program_prints_what_its_source_prints() {
    let mut source_engine = Engine::with_backend(Backend::Interp);
    let started = source_engine.start(PROGRAM, Some("program.sx")).unwrap();
    let expected = run(&mut source_engine, started).unwrap();
    assert!(expected.starts_with("2 40 15 (0 1 2)\n"), "{expected}");
    // Library functions and expanded forms keep the library's own bindings.
    assert!(
        expected.ends_with("(1 2 3) (2 4) :yes :mine\n:outer true\n"),
        "{expected}"
    );

    let bytes = compiled();
    let mut engine = Engine::with_backend(Backend::Vm);
    let program = sxbc::read(&bytes, &mut engine.globals).expect("loads");
    let started = engine.start_compiled(program);
    assert_eq!(run(&mut engine, started).unwrap(), expected);
}

#[test]
fn every_truncation_is_refused() {
    let bytes = compiled();
    for len in 0..bytes.len() {
        let mut engine = Engine::with_backend(Backend::Vm);
        match sxbc::read(&bytes[..len], &mut engine.globals) {
            Err(LoadError::Damaged(_) | LoadError::NotBytecode) => {}
            Err(other) => panic!("truncated to {len}: unexpected {other}"),
            Ok(_) => panic!("a file truncated to {len} bytes loaded"),
        }
    }
}

#[test]
fn bit_flips_are_refused_or_run_safely() {
    let bytes = compiled();
    let mut loaded = 0;
    for i in 0..bytes.len() {
        for bit in [0u8, 3, 7] {
            let mut mutated = bytes.clone();
            mutated[i] ^= 1 << bit;
            let mut engine = Engine::with_backend(Backend::Vm);
            engine.limits = Limits {
                fuel: Some(20_000),
                max_depth: 1_000,
            };
            if let Ok(program) = sxbc::read(&mutated, &mut engine.globals) {
                loaded += 1;
                let started = engine.start_compiled(program);
                // Any outcome but a panic is acceptable: the flip may change a constant.
                let _ = run(&mut engine, started);
            }
        }
    }
    // Flips in constants and names still load; the point is that nothing panicked.
    assert!(loaded > 0);
}

#[test]
fn a_stale_file_names_both_versions() {
    let mut bytes = compiled();
    // The opcode-table hash follows the magic and the format version.
    bytes[6] ^= 0xff;
    let mut engine = Engine::with_backend(Backend::Vm);
    let err = sxbc::read(&bytes, &mut engine.globals)
        .err()
        .expect("refused");
    assert!(matches!(err, LoadError::Stale { .. }));
    let message = err.to_string();
    assert!(message.contains("stale bytecode"), "{message}");
    assert!(message.contains(sx_kernel::KERNEL_VERSION), "{message}");
    assert!(
        message.contains(&format!(
            "{:016x}",
            sx_kernel::bytecode::opcode_table_hash()
        )),
        "{message}"
    );

    let mut other_format = compiled();
    other_format[4] = 9;
    let err = sxbc::read(&other_format, &mut engine.globals)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("format 9"), "{err}");
}

#[test]
fn an_unknown_opcode_is_named() {
    let mut engine = Engine::with_backend(Backend::Vm);
    let program = engine.compile_program("(print 1)", None).unwrap();
    let lines = program.forms[0].lines.len();
    let mut bytes = sxbc::write(&program).unwrap();
    // The form's code ends with `return` and its register; its line table and child count
    // follow.
    let last = bytes.len() - 1 - 4 - 12 * lines - 4 - 2;
    let opcodes = sx_kernel::bytecode::OPCODES;
    let return_code = opcodes.iter().position(|(name, _)| *name == "return");
    assert_eq!(
        Some(bytes[last] as usize),
        return_code,
        "expected the return opcode"
    );
    bytes[last] = 200;
    let err = sxbc::read(&bytes, &mut engine.globals)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("unknown opcode 200"), "{err}");
}

#[test]
fn random_bytes_after_a_valid_header_are_refused() {
    let header = &compiled()[..4 + 2 + 8 + 4 + sx_kernel::KERNEL_VERSION.len()];
    let mut seed: u64 = 7;
    for _ in 0..2000 {
        let mut bytes = header.to_vec();
        for _ in 0..(seed % 64) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            bytes.push((seed >> 33) as u8);
        }
        let mut engine = Engine::with_backend(Backend::Vm);
        if let Ok(program) = sxbc::read(&bytes, &mut engine.globals) {
            engine.limits.fuel = Some(10_000);
            let started = engine.start_compiled(program);
            let _ = run(&mut engine, started);
        }
    }
}
