//! The browser bundle: built by Trunk, stamped by `sx stamp-wasm` with a custom section
//! holding the kernel version and opcode-table hash it was built with
//! (`sx_kernel::sxbc::stamp`), then given content-hashed names (`sx-client-<hash>.js`,
//! `sx-client-<hash>_bg.wasm`) listed in the directory's [`MANIFEST`]. A server serves only
//! a bundle made from its own kernel: a stale one would fail in the browser in ways that are
//! hard to see (the earlier system's "unknown opcode 0").
//!
//! Where it is looked for, first found wins: `<SX_STATIC_DIR>/client`, then the directories
//! of [`beside_binary`] (`Config::bundle_dirs`).

use std::path::{Path, PathBuf};

/// Where the bundle's files are served, under `/static/`.
pub const DIR: &str = "client";
/// The file naming the bundle's (hashed) script and wasm module, written by `sx stamp-wasm`.
pub const MANIFEST: &str = "manifest.json";
/// The editor island's manifest (`island/`, built by `.ci/build` into the bundle's directory
/// after Trunk, stamped and hashed by `sx stamp-wasm` like the bundle): optional.
pub const ISLAND_MANIFEST: &str = "manifest-sx-island.json";

/// The manifest `sx stamp-wasm` writes for a module named `STEM_bg.wasm`: the browser
/// bundle's is [`MANIFEST`], any other module's (the island) `manifest-STEM.json`.
pub fn manifest_for(stem: &str) -> String {
    if stem == "sx-client" {
        MANIFEST.to_string()
    } else {
        format!("manifest-{stem}.json")
    }
}

/// The wasm module's name before the post-build step hashes it (a bundle whose directory
/// holds it but no manifest was built by an older build).
pub const UNHASHED_WASM: &str = "sx-client_bg.wasm";
/// How the content-hashed files are cached: they never change under their name.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

const REBUILD: &str =
    "rebuild it with `.ci/build` (or `trunk build --release` after `cargo build --release`)";

/// A bundle that matches this kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The directory holding its files.
    pub dir: PathBuf,
    /// The JS module's file name (`sx-client-<hash>.js`).
    pub script: String,
    /// The wasm module's file name (`sx-client-<hash>_bg.wasm`).
    pub wasm: String,
    /// The editor island's script and module (`sx-island-<hash>.js`, `..._bg.wasm`) when
    /// the directory has them: loaded only by pages with `[data-island]`.
    pub island: Option<(String, String)>,
}

impl Bundle {
    /// The module's URL path, which the shell preloads and `/__sx/boot.js` imports.
    pub fn module_path(&self) -> String {
        format!("/static/{DIR}/{}", self.script)
    }

    /// Whether `name` (a file name in the bundle's directory) is one of its content-hashed
    /// files, cached as [`IMMUTABLE`].
    pub fn is_hashed(&self, name: &str) -> bool {
        name == self.script
            || name == self.wasm
            || self
                .island
                .as_ref()
                .is_some_and(|(script, wasm)| name == script || name == wasm)
    }

    /// The island's module URL path, which `/__sx/boot.js` imports when a page needs it.
    pub fn island_path(&self) -> Option<String> {
        self.island
            .as_ref()
            .map(|(script, _)| format!("/static/{DIR}/{script}"))
    }
}

/// Directories beside the running executable that may hold the bundle:
/// `<exe dir>/static/client` (an installed binary), `<exe dir>/../../static/client` (cargo's
/// `target/release/sx` in a checkout) and the `static/client` of the source tree the binary
/// was built from (a cargo build with another `CARGO_TARGET_DIR`). Missing ones are skipped
/// when the bundle is looked for.
pub fn beside_binary() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("static").join(DIR));
        dirs.push(exe_dir.join("../../static").join(DIR));
    }
    dirs.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../static")
            .join(DIR),
    );
    dirs
}

/// Finds the bundle: in `<static_dir>/client`, else in the first of `others` that holds one.
/// `Ok(None)` when there is none (pages then work without JavaScript); an error saying how
/// to rebuild when the first one found is stale, unhashed or unreadable.
pub fn locate(static_dir: &Path, others: &[PathBuf]) -> Result<Option<Bundle>, String> {
    let first = static_dir.join(DIR);
    for dir in std::iter::once(&first).chain(others) {
        if let Some(bundle) = check(dir)? {
            return Ok(Some(bundle));
        }
    }
    Ok(None)
}

/// The bundle in `dir`: `Ok(None)` when it holds none, the bundle when its manifest names
/// files that exist and its wasm module carries this kernel's stamp, else an error.
pub fn check(dir: &Path) -> Result<Option<Bundle>, String> {
    let manifest_path = dir.join(MANIFEST);
    let manifest = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if dir.join(UNHASHED_WASM).exists() {
                Err(format!(
                    "{} holds a bundle without {MANIFEST} (an older build); {REBUILD}",
                    dir.display()
                ))
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(format!("cannot read {}: {e}", manifest_path.display())),
    };
    let (script, wasm) = checked(dir, MANIFEST, &manifest)?;
    let island = match std::fs::read_to_string(dir.join(ISLAND_MANIFEST)) {
        Ok(text) => Some(checked(dir, ISLAND_MANIFEST, &text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(format!(
                "cannot read {}: {e}",
                dir.join(ISLAND_MANIFEST).display()
            ))
        }
    };
    Ok(Some(Bundle {
        dir: dir.to_path_buf(),
        script,
        wasm,
        island,
    }))
}

/// The script and module the manifest `name` (text `manifest`) in `dir` names, when both
/// exist and the module carries this kernel's stamp; else an error saying how to rebuild.
fn checked(dir: &Path, name: &str, manifest: &str) -> Result<(String, String), String> {
    let manifest_path = dir.join(name);
    let (script, wasm) = parse_manifest(manifest)
        .map_err(|why| format!("{}: {why}; {REBUILD}", manifest_path.display()))?;
    let path = dir.join(&wasm);
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "{} names {wasm}, which cannot be read ({e}); {REBUILD}",
            manifest_path.display()
        )
    })?;
    if !dir.join(&script).is_file() {
        return Err(format!(
            "{} names {script}, which is missing; {REBUILD}",
            manifest_path.display()
        ));
    }
    let expected = sx_kernel::sxbc::stamp();
    match custom_section(&bytes, sx_kernel::sxbc::STAMP_SECTION) {
        Err(why) => Err(format!(
            "{} is not a wasm module ({why}); {REBUILD}",
            path.display()
        )),
        Ok(None) => Err(format!(
            "{} has no {} section (it was not built by this project's build); {REBUILD}",
            path.display(),
            sx_kernel::sxbc::STAMP_SECTION
        )),
        Ok(Some(found)) if found == expected.as_bytes() => Ok((script, wasm)),
        Ok(Some(found)) => Err(format!(
            "{} was built for `{}` but this server is `{expected}`; {REBUILD}",
            path.display(),
            String::from_utf8_lossy(found)
        )),
    }
}

/// The manifest's `script` and `wasm`: plain file names in the bundle's directory.
pub fn parse_manifest(text: &str) -> Result<(String, String), String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let name = |key: &str| {
        let name = json
            .get(key)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("no {key:?} file name"))?;
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if plain {
            Ok(name.to_string())
        } else {
            Err(format!("{key:?} is not a plain file name: {name:?}"))
        }
    };
    Ok((name("script")?, name("wasm")?))
}

fn leb128(bytes: &[u8], at: &mut usize) -> Result<usize, String> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*at).ok_or("truncated")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return usize::try_from(value).map_err(|_| "a size too large".into());
        }
    }
    Err("a malformed size".into())
}

/// The contents of the first custom section called `name`.
pub fn custom_section<'a>(bytes: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, String> {
    if bytes.get(..8) != Some(b"\0asm\x01\0\0\0".as_slice()) {
        return Err("no wasm header".into());
    }
    let mut at = 8;
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let size = leb128(bytes, &mut at)?;
        let end = at
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or("truncated")?;
        if id == 0 {
            let mut p = at;
            let len = leb128(bytes, &mut p)?;
            let name_end = p
                .checked_add(len)
                .filter(|&e| e <= end)
                .ok_or("truncated")?;
            if &bytes[p..name_end] == name.as_bytes() {
                return Ok(Some(&bytes[name_end..end]));
            }
        }
        at = end;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = b"\0asm\x01\0\0\0".to_vec();
        for (name, data) in sections {
            let mut body = vec![name.len() as u8];
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(data);
            out.push(0);
            out.push(body.len() as u8);
            out.extend(body);
        }
        out
    }

    #[test]
    fn finds_a_custom_section_and_refuses_garbage() {
        let wasm = module(&[("other", b"x"), ("sx-stamp", b"hello")]);
        assert_eq!(
            custom_section(&wasm, "sx-stamp"),
            Ok(Some(b"hello".as_slice()))
        );
        assert_eq!(custom_section(&wasm, "missing"), Ok(None));
        assert!(custom_section(b"not wasm", "sx-stamp").is_err());
        for cut in 9..wasm.len() {
            // Never a panic, whatever the length.
            let _ = custom_section(&wasm[..cut], "sx-stamp");
        }
    }

    /// A bundle directory as the post-build step leaves it, its wasm stamped with `stamp`.
    fn bundle_dir(dir: &Path, stamp: &[u8]) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join(MANIFEST),
            r#"{"script": "sx-client-0123abcd.js", "wasm": "sx-client-0123abcd_bg.wasm"}"#,
        )
        .unwrap();
        std::fs::write(dir.join("sx-client-0123abcd.js"), "export default 1;").unwrap();
        std::fs::write(
            dir.join("sx-client-0123abcd_bg.wasm"),
            module(&[("sx-stamp", stamp)]),
        )
        .unwrap();
    }

    #[test]
    fn a_bundle_from_another_kernel_is_refused_with_how_to_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check(dir.path()), Ok(None));
        bundle_dir(dir.path(), b"sx-kernel 0.0.1 opcodes 00");
        let err = check(dir.path()).unwrap_err();
        assert!(err.contains("sx-kernel 0.0.1 opcodes 00"), "{err}");
        assert!(err.contains(&sx_kernel::sxbc::stamp()), "{err}");
        assert!(err.contains("rebuild"), "{err}");
        let wasm = dir.path().join("sx-client-0123abcd_bg.wasm");
        std::fs::write(&wasm, module(&[])).unwrap();
        assert!(check(dir.path())
            .unwrap_err()
            .contains("no sx-stamp section"));
        let stamp = sx_kernel::sxbc::stamp();
        std::fs::write(&wasm, module(&[("sx-stamp", stamp.as_bytes())])).unwrap();
        let bundle = check(dir.path()).unwrap().unwrap();
        assert_eq!(bundle.module_path(), "/static/client/sx-client-0123abcd.js");
        assert!(bundle.is_hashed("sx-client-0123abcd_bg.wasm"));
        assert!(!bundle.is_hashed(MANIFEST));
        std::fs::remove_file(dir.path().join("sx-client-0123abcd.js")).unwrap();
        assert!(check(dir.path()).unwrap_err().contains("missing"));
    }

    #[test]
    fn the_island_is_optional_and_checked_like_the_bundle() {
        let stamp = sx_kernel::sxbc::stamp();
        let dir = tempfile::tempdir().unwrap();
        bundle_dir(dir.path(), stamp.as_bytes());
        assert_eq!(check(dir.path()).unwrap().unwrap().island_path(), None);
        assert_eq!(manifest_for("sx-island"), ISLAND_MANIFEST);
        assert_eq!(manifest_for("sx-client"), MANIFEST);
        std::fs::write(
            dir.path().join(ISLAND_MANIFEST),
            r#"{"script": "sx-island-77.js", "wasm": "sx-island-77_bg.wasm"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("sx-island-77.js"), "export default 1;").unwrap();
        let wasm = dir.path().join("sx-island-77_bg.wasm");
        std::fs::write(
            &wasm,
            module(&[("sx-stamp", b"sx-kernel 0.0.1 opcodes 00")]),
        )
        .unwrap();
        let err = check(dir.path()).unwrap_err();
        assert!(
            err.contains(ISLAND_MANIFEST) || err.contains("sx-island-77"),
            "{err}"
        );
        std::fs::write(&wasm, module(&[("sx-stamp", stamp.as_bytes())])).unwrap();
        let bundle = check(dir.path()).unwrap().unwrap();
        assert_eq!(
            bundle.island_path().as_deref(),
            Some("/static/client/sx-island-77.js")
        );
        assert!(bundle.is_hashed("sx-island-77_bg.wasm"));
        assert!(!bundle.is_hashed(ISLAND_MANIFEST));
    }

    #[test]
    fn an_unhashed_bundle_and_a_bad_manifest_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(UNHASHED_WASM), module(&[])).unwrap();
        assert!(check(dir.path()).unwrap_err().contains(MANIFEST));
        for bad in [
            "not json",
            "{}",
            r#"{"script": "../x.js", "wasm": "a_bg.wasm"}"#,
            r#"{"script": "a.js", "wasm": ".hidden"}"#,
        ] {
            std::fs::write(dir.path().join(MANIFEST), bad).unwrap();
            assert!(check(dir.path()).unwrap_err().contains("rebuild"), "{bad}");
        }
    }

    #[test]
    fn the_static_directory_wins_then_the_first_directory_with_a_bundle() {
        let stamp = sx_kernel::sxbc::stamp();
        let root = tempfile::tempdir().unwrap();
        let (static_dir, empty, beside) = (
            root.path().join("static"),
            root.path().join("empty"),
            root.path().join("beside"),
        );
        std::fs::create_dir_all(&static_dir).unwrap();
        assert_eq!(locate(&static_dir, std::slice::from_ref(&empty)), Ok(None));
        bundle_dir(&beside, stamp.as_bytes());
        let found = locate(&static_dir, &[empty.clone(), beside.clone()]).unwrap();
        assert_eq!(found.map(|b| b.dir), Some(beside.clone()));
        bundle_dir(&static_dir.join(DIR), stamp.as_bytes());
        let found = locate(&static_dir, &[beside]).unwrap();
        assert_eq!(found.map(|b| b.dir), Some(static_dir.join(DIR)));
    }
}
