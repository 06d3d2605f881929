//! The browser bundle under `static/client/`: built by Trunk, stamped by `sx stamp-wasm`
//! with a custom section holding the kernel version and opcode-table hash it was built with
//! (`sx_kernel::sxbc::stamp`). A server serves only a bundle made from its own kernel: a
//! stale one would fail in the browser in ways that are hard to see (the earlier system's
//! "unknown opcode 0").

use std::path::Path;

/// Where the bundle's files are, under the static directory.
pub const DIR: &str = "client";
pub const WASM: &str = "sx-client_bg.wasm";
pub const SCRIPT: &str = "sx-client.js";

const REBUILD: &str =
    "rebuild it with `.ci/build` (or `trunk build --release` after `cargo build --release`)";

/// Checks the bundle in `static_dir`: `Ok(true)` when it is there and matches this kernel,
/// `Ok(false)` when there is none (pages then work without JavaScript), an error saying how
/// to rebuild when it is stale or unreadable.
pub fn check(static_dir: &Path) -> Result<bool, String> {
    let path = static_dir.join(DIR).join(WASM);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
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
        Ok(Some(found)) if found == expected.as_bytes() => Ok(true),
        Ok(Some(found)) => Err(format!(
            "{} was built for `{}` but this server is `{expected}`; {REBUILD}",
            path.display(),
            String::from_utf8_lossy(found)
        )),
    }
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

    #[test]
    fn a_bundle_from_another_kernel_is_refused_with_how_to_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check(dir.path()), Ok(false));
        std::fs::create_dir_all(dir.path().join(DIR)).unwrap();
        let path = dir.path().join(DIR).join(WASM);
        std::fs::write(
            &path,
            module(&[("sx-stamp", b"sx-kernel 0.0.1 opcodes 00")]),
        )
        .unwrap();
        let err = check(dir.path()).unwrap_err();
        assert!(err.contains("sx-kernel 0.0.1 opcodes 00"), "{err}");
        assert!(err.contains(&sx_kernel::sxbc::stamp()), "{err}");
        assert!(err.contains("rebuild"), "{err}");
        std::fs::write(&path, module(&[])).unwrap();
        assert!(check(dir.path())
            .unwrap_err()
            .contains("no sx-stamp section"));
        let stamp = sx_kernel::sxbc::stamp();
        std::fs::write(&path, module(&[("sx-stamp", stamp.as_bytes())])).unwrap();
        assert_eq!(check(dir.path()), Ok(true));
    }
}
