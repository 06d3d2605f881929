//! Compiles the browser engine (`sx/web/engine.sx`) and the kernel's prelude to bytecode with
//! this same kernel (so neither is ever stale); the client embeds both and evaluates no
//! source. An SX error fails the build with `file:line:col`.

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
    let image = sx_kernel::prelude::compile_image()
        .unwrap_or_else(|err| panic!("{}", sx_kernel::error::describe_located(&err)));
    let out = out.with_file_name("prelude.sxpi");
    std::fs::write(&out, image).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
