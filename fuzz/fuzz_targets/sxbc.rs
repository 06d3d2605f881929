//! Fuzz target: the `.sxbc` loader must refuse or accept any bytes without panicking, and
//! whatever it accepts must run (under a fuel limit) without panicking. Seed the corpus with
//! real files (`sx compile bench/fib.sx -o corpus/sxbc/fib.sxbc`) so mutations reach deep.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sx_kernel::{sxbc, Backend, Engine, Step};

fuzz_target!(|data: &[u8]| {
    let mut engine = Engine::with_backend(Backend::Vm);
    engine.limits.fuel = Some(10_000);
    engine.limits.max_depth = 1_000;
    let Ok(program) = sxbc::read(data, &mut engine.globals) else {
        return;
    };
    let mut run = engine.start_compiled(program);
    for _ in 0..100 {
        match run.step(&mut engine) {
            Step::Done(_) | Step::Error(_) => return,
            Step::Perform(request) => run.resume(Err(sx_kernel::engine::unknown_effect(&request))),
        }
    }
});
