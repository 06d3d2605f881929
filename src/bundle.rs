//! The browser build's last step, after `sx stamp-wasm` has stamped the module: gives the
//! bundle content-hashed names (`sx-client-<hash>.js`, `sx-client-<hash>_bg.wasm`, the JS
//! rewritten to import the renamed module), writes `.br` and `.gz` beside both for the server
//! to send as they are, and writes `manifest.json` naming them, which the server reads at
//! start (`sx_server::client_bundle`). The editor island (`sx-island_bg.wasm`, built after
//! the bundle into the same directory) goes through the same step and gets its own
//! manifest, `manifest-sx-island.json`.

use std::io::Write;
use std::path::{Path, PathBuf};

use sx_server::client_bundle::manifest_for;

/// What the step wrote: the hashed script and wasm module, in `dir`.
#[derive(Debug, PartialEq, Eq)]
pub struct Hashed {
    pub dir: PathBuf,
    pub script: String,
    pub wasm: String,
    /// The manifest naming them (`manifest.json` for the browser bundle).
    pub manifest: String,
}

/// Hashes the bundle whose module is `wasm` (`NAME_bg.wasm`, with wasm-bindgen's `NAME.js`
/// beside it). `Ok(None)` when there is no such script (a lone module: only stamped).
pub fn hash_names(wasm: &Path) -> Result<Option<Hashed>, String> {
    let dir = wasm.parent().unwrap_or(Path::new("."));
    let file_name = wasm.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some(stem) = file_name.strip_suffix("_bg.wasm") else {
        return Ok(None);
    };
    let script_path = dir.join(format!("{stem}.js"));
    let script = match std::fs::read_to_string(&script_path) {
        Ok(script) => script,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", script_path.display())),
    };
    let module = std::fs::read(wasm).map_err(|e| format!("cannot read {}: {e}", wasm.display()))?;
    let hash = {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(&module);
        hasher.update(script.as_bytes());
        let digest = hasher.finalize();
        digest[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let hashed_script = format!("{stem}-{hash}.js");
    let hashed_wasm = format!("{stem}-{hash}_bg.wasm");
    // wasm-bindgen's loader finds the module with `new URL('NAME_bg.wasm', import.meta.url)`.
    let mut found = false;
    let mut rewritten = script.clone();
    for quote in ['\'', '"'] {
        let old = format!("{quote}{file_name}{quote}");
        if rewritten.contains(&old) {
            found = true;
            rewritten = rewritten.replace(&old, &format!("{quote}{hashed_wasm}{quote}"));
        }
    }
    if !found {
        return Err(format!(
            "{} does not name {file_name} in quotes: is it wasm-bindgen's --target web output?",
            script_path.display()
        ));
    }
    write(&dir.join(&hashed_wasm), &module)?;
    write(&dir.join(&hashed_script), rewritten.as_bytes())?;
    for (name, bytes) in [
        (&hashed_wasm, module.as_slice()),
        (&hashed_script, rewritten.as_bytes()),
    ] {
        write(&dir.join(format!("{name}.br")), &brotli(bytes)?)?;
        write(&dir.join(format!("{name}.gz")), &gzip(bytes)?)?;
    }
    // Trunk's index.html (not served as a page) keeps naming files that exist.
    let index = dir.join("index.html");
    if let Ok(html) = std::fs::read_to_string(&index) {
        let html = html
            .replace(&format!("{stem}_bg.wasm"), &hashed_wasm)
            .replace(&format!("{stem}.js"), &hashed_script);
        write(&index, html.as_bytes())?;
    }
    for old in [wasm, script_path.as_path()] {
        std::fs::remove_file(old).map_err(|e| format!("cannot remove {}: {e}", old.display()))?;
    }
    // Last: the server takes the bundle only once the manifest names it.
    let manifest = serde_json::json!({ "script": hashed_script, "wasm": hashed_wasm });
    let manifest_name = manifest_for(stem);
    write(
        &dir.join(&manifest_name),
        format!("{manifest:#}\n").as_bytes(),
    )?;
    Ok(Some(Hashed {
        dir: dir.to_path_buf(),
        script: hashed_script,
        wasm: hashed_wasm,
        manifest: manifest_name,
    }))
}

/// Writes through a temporary file and a rename: never half a file.
fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Brotli at its best quality (done once per build, not per request).
pub fn brotli(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 1 << 16, 11, 22);
        writer
            .write_all(bytes)
            .and_then(|()| writer.flush())
            .map_err(|e| format!("brotli: {e}"))?;
    }
    Ok(out)
}

/// Gzip at its best level.
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|e| format!("gzip: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use sx_server::client_bundle::MANIFEST;

    #[test]
    fn the_bundle_gets_hashed_names_compressed_siblings_and_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("sx-client_bg.wasm");
        let module = b"\0asm\x01\0\0\0 a module".repeat(50);
        std::fs::write(&wasm, &module).unwrap();
        std::fs::write(
            dir.path().join("sx-client.js"),
            "module_or_path = new URL('sx-client_bg.wasm', import.meta.url);\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("index.html"),
            "<script type=module>import init from '/static/client/sx-client.js';</script>",
        )
        .unwrap();
        let hashed = hash_names(&wasm).unwrap().unwrap();
        assert!(hashed.script.starts_with("sx-client-") && hashed.script.ends_with(".js"));
        assert_eq!(
            hashed.wasm,
            hashed.script.replace(".js", "_bg.wasm"),
            "the shell preloads the module by this rule"
        );
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(read(&hashed.wasm), module);
        let script = String::from_utf8(read(&hashed.script)).unwrap();
        assert!(
            script.contains(&format!("new URL('{}'", hashed.wasm)),
            "{script}"
        );
        let mut unbrotlied = Vec::new();
        brotli::Decompressor::new(read(&format!("{}.br", hashed.wasm)).as_slice(), 4096)
            .read_to_end(&mut unbrotlied)
            .unwrap();
        assert_eq!(unbrotlied, module);
        let mut gunzipped = String::new();
        flate2::read::GzDecoder::new(read(&format!("{}.gz", hashed.script)).as_slice())
            .read_to_string(&mut gunzipped)
            .unwrap();
        assert_eq!(gunzipped, script);
        assert!(!wasm.exists() && !dir.path().join("sx-client.js").exists());
        let index = String::from_utf8(read("index.html")).unwrap();
        assert!(index.contains(&hashed.script), "{index}");
        // The server reads what the step wrote.
        let bundle =
            sx_server::client_bundle::parse_manifest(&String::from_utf8(read(MANIFEST)).unwrap())
                .unwrap();
        assert_eq!(bundle, (hashed.script.clone(), hashed.wasm.clone()));
    }

    #[test]
    fn a_lone_module_is_left_as_it_is_and_a_foreign_script_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("sx-client_bg.wasm");
        std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
        assert_eq!(hash_names(&wasm), Ok(None));
        std::fs::write(dir.path().join("sx-client.js"), "no module named here").unwrap();
        assert!(hash_names(&wasm).unwrap_err().contains("does not name"));
        assert!(wasm.exists());
    }
}
