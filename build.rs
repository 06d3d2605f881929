//! Embeds the SX apps in the binary: the host library's sources (`sx/host`, compiled again
//! with an app folder at run time) and, for each embedded app (`sx/blog`, ...), one bytecode
//! bundle of the host plus that app. An SX error fails the build with `file:line:col`.
//! Never runs cargo.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The host library: always served, before any app.
const HOST_DIR: &str = "sx/host";
/// The apps compiled into the binary, selected at run time by `SX_DOMAIN`.
const EMBEDDED_APPS: &[&str] = &["blog", "events"];

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

/// `(name relative to the repository, source)` of every `.sx` file in `dir`, in name order.
fn sources(root: &Path, dir: &str) -> Vec<(String, String)> {
    println!("cargo:rerun-if-changed={dir}");
    sx_files(&root.join(dir))
        .into_iter()
        .map(|file| {
            println!("cargo:rerun-if-changed={}", file.display());
            let name = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let source = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
            (name, source)
        })
        .collect()
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets this"));
    let host = sources(&root, HOST_DIR);
    let mut code = String::from("/// The host library's sources: (file name, text).\n");
    code.push_str("pub const HOST_SOURCES: &[(&str, &str)] = &[\n");
    for (name, source) in &host {
        writeln!(code, "    ({name:?}, {source:?}),").unwrap();
    }
    code.push_str("];\n\n/// The embedded apps: (name, bundle of the host and the app).\n");
    code.push_str("pub const EMBEDDED_APPS: &[(&str, &[u8])] = &[\n");
    for app in EMBEDDED_APPS {
        let mut files = host.clone();
        files.extend(sources(&root, &format!("sx/{app}")));
        let bundle = sx_kernel::sxbc::compile_bundle(&files)
            .unwrap_or_else(|err| panic!("{}", sx_kernel::error::describe_located(&err)));
        let path = out.join(format!("{app}.sxbc"));
        std::fs::write(&path, bundle).expect("OUT_DIR is writable");
        writeln!(
            code,
            "    ({app:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    std::fs::write(out.join("apps.rs"), code).expect("OUT_DIR is writable");
}
