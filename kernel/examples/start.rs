//! Start costs: a fresh engine, and a server worker's kernel image (a VM engine with the
//! host library and the blog loaded from their bundle, as `server/src/handler.rs::Image::load`
//! makes it, before its `defstart` functions). The bundle is compiled once, untimed.
//! `cargo run --release -p sx-kernel --example start` (env: RUNS=200), from the repository
//! root; prints a Markdown table of medians.

use std::time::{Duration, Instant};

use sx_kernel::{Backend, Engine};

fn sources(dir: &str) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e} (run from the repository root)"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sx"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            (p.display().to_string(), text)
        })
        .collect()
}

/// A measure's name and what it times.
type Row<'a> = (&'static str, Box<dyn FnMut() + 'a>);

fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let mut files = sources("sx/host");
    files.extend(sources("sx/blog"));
    let bundle = sx_kernel::sxbc::compile_bundle(&files)
        .unwrap_or_else(|e| panic!("{}", sx_kernel::error::describe_located(&e)));
    let rows: [Row; 4] = [
        (
            "VM engine (natives + prelude)",
            Box::new(|| drop(Engine::with_backend(Backend::Vm))),
        ),
        (
            "VM engine, prelude compiled from source",
            Box::new(|| drop(Engine::from_prelude_source(Backend::Vm))),
        ),
        (
            "worker image: VM engine + host and blog bundle",
            Box::new(|| {
                let mut engine = Engine::with_backend(Backend::Vm);
                engine.load_bundle(&bundle).expect("the bundle loads");
            }),
        ),
        (
            "interpreter engine (natives + prelude from source)",
            Box::new(|| drop(Engine::with_backend(Backend::Interp))),
        ),
    ];
    println!(
        "| measure (median of {runs}, bundle {} KB) | µs |",
        bundle.len() / 1024
    );
    println!("|---|---|");
    for (name, mut f) in rows {
        let t = median(runs, &mut f);
        println!("| {name} | {:.0} |", t.as_secs_f64() * 1e6);
    }
}
