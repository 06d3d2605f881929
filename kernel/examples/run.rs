//! Runs one SX file on the VM with the kernel alone (no server, no effects): for profiling
//! the engine, e.g. `valgrind --tool=callgrind target/release/examples/run bench/loop.sx`.
//! `cargo build --release -p sx-kernel --example run`.

use sx_kernel::{Backend, Engine};

fn main() {
    let path = std::env::args().nth(1).expect("usage: run FILE.sx");
    let source = std::fs::read_to_string(&path).expect("a readable file");
    let mut engine = Engine::with_backend(Backend::Vm);
    engine.set_output(Box::new(|text| print!("{text}")));
    let mut run = match engine.start(&source, Some(&path)) {
        Ok(run) => run,
        Err(e) => panic!("{}", sx_kernel::printer::repr(&e)),
    };
    let unknown = |request: &sx_kernel::Value| Err(sx_kernel::engine::unknown_effect(request));
    if let Err(e) = sx_kernel::drive_now(&mut run, &mut engine, unknown) {
        panic!("{}", sx_kernel::printer::repr(&e));
    }
}
