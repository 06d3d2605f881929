//! Compiles the SX apps (`sx/host/*.sx`, then `sx/blog/*.sx`) into one bytecode bundle that
//! the binary embeds. An SX error fails the build with `file:line:col`. Never runs cargo.

use std::path::{Path, PathBuf};

const APP_DIRS: &[&str] = &["sx/host", "sx/blog"];

fn sx_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sx"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let mut files = Vec::new();
    for dir in APP_DIRS {
        println!("cargo:rerun-if-changed={dir}");
        for file in sx_files(&root.join(dir)) {
            println!("cargo:rerun-if-changed={}", file.display());
            let name = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let source = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
            files.push((name, source));
        }
    }
    let bundle = sx_kernel::sxbc::compile_bundle(&files)
        .unwrap_or_else(|err| panic!("{}", sx_kernel::error::describe_located(&err)));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets this")).join("apps.sxbc");
    std::fs::write(&out, bundle).expect("OUT_DIR is writable");
}
