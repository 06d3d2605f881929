//! Compiles the browser engine (`sx/web/engine.sx`) to bytecode with this same kernel; the
//! client embeds it. An SX error fails the build with `file:line:col`.

use std::path::PathBuf;

fn main() {
    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets this")).join("..");
    let name = "sx/web/engine.sx";
    let path = root.join(name);
    println!("cargo:rerun-if-changed={}", path.display());
    let source =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
    let bundle = sx_kernel::sxbc::compile_bundle(&[(name.to_string(), source)])
        .unwrap_or_else(|err| panic!("{}", sx_kernel::error::describe_located(&err)));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets this")).join("engine.sxbc");
    std::fs::write(&out, bundle).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
