//! The prelude as bytecode: the *prelude image*.
//!
//! `builtins/prelude.sx` is the library's SX half. A VM engine does not compile it at each
//! start: it loads `builtins/prelude.sxbc`, the image checked in beside it, made by
//! [`compile_image`] (the prelude expanded in library mode and compiled on a fresh VM engine,
//! the same steps a run from source takes). Layout: magic `SXPI`, the FNV-1a hash (u64, little
//! endian) of the `prelude.sx` it was compiled from, then an ordinary `.sxbc` program, which
//! carries the format, opcode-table hash and kernel version and is validated like any other.
//!
//! An image is refused when its source hash is not this kernel's `prelude.sx` (the source was
//! edited and the image not regenerated) or when the `.sxbc` loader calls it stale or damaged.
//! `Engine::with_backend` then compiles the prelude from source (without the `source` feature
//! it fails naming the reason); the test `prelude_image_is_current` fails until the image is
//! regenerated with [`BLESS`].
//!
//! The browser does not use the checked-in file: `client/build.rs` compiles the image with
//! the same kernel it is built with, so its image is never stale.

use crate::builtins::PRELUDE;
use crate::expander::Globals;

/// The image checked in beside `prelude.sx`.
pub const IMAGE: &[u8] = include_bytes!("builtins/prelude.sxbc");

/// The command that regenerates [`IMAGE`].
pub const BLESS: &str = "SX_BLESS=1 cargo test -p sx-kernel --lib prelude_image";

const MAGIC: &[u8; 4] = b"SXPI";

/// The hash of this kernel's `prelude.sx`, computed while compiling: the source itself need
/// not be in a build that only loads the image.
pub const SOURCE_HASH: u64 = fnv1a(PRELUDE.as_bytes());

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Checks an image's header and loads its program (validated, nothing run), resolving its
/// globals in `globals`. The error says why it was refused and how to regenerate it.
pub fn load(image: &[u8], globals: &mut Globals) -> Result<crate::sxbc::Program, String> {
    let refused =
        |why: String| format!("the prelude image was refused: {why}. Regenerate it: {BLESS}");
    if image.len() < 12 || &image[..4] != MAGIC {
        return Err(refused("no SXPI header".into()));
    }
    let mut hash = [0u8; 8];
    hash.copy_from_slice(&image[4..12]);
    let hash = u64::from_le_bytes(hash);
    if hash != SOURCE_HASH {
        return Err(refused(format!(
            "it was compiled from another prelude.sx (source hash {hash:016x}, this kernel's is {SOURCE_HASH:016x})"
        )));
    }
    crate::sxbc::read(&image[12..], globals).map_err(|e| refused(e.to_string()))
}

/// Compiles this kernel's `prelude.sx` to an image. Deterministic: the same kernel gives the
/// same bytes.
#[cfg(feature = "source")]
pub fn compile_image() -> Result<Vec<u8>, crate::Value> {
    let mut engine = crate::engine::Engine::bare(crate::engine::Backend::Vm);
    let program = engine.compile_forms(PRELUDE, Some("prelude.sx"), true)?;
    let bytes = crate::sxbc::write(&program).map_err(|e| crate::error::type_error(e, vec![]))?;
    let mut image = Vec::with_capacity(12 + bytes.len());
    image.extend_from_slice(MAGIC);
    image.extend_from_slice(&SOURCE_HASH.to_le_bytes());
    image.extend_from_slice(&bytes);
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Engine, Value};

    fn path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/builtins/prelude.sxbc")
    }

    /// The checked-in image is what this kernel compiles from this `prelude.sx`; with
    /// `SX_BLESS=1` the test writes it instead.
    #[test]
    fn prelude_image_is_current() {
        let fresh = compile_image().expect("the prelude compiles");
        if std::env::var_os("SX_BLESS").is_some() {
            std::fs::write(path(), &fresh).expect("the source tree is writable");
            return;
        }
        assert!(
            fresh == IMAGE,
            "kernel/src/builtins/prelude.sxbc is stale (prelude.sx, the compiler or the \
             bytecode changed). Regenerate it: {BLESS}"
        );
    }

    #[test]
    fn prelude_image_is_deterministic() {
        assert_eq!(compile_image().unwrap(), compile_image().unwrap());
    }

    fn map_works(engine: &mut Engine) {
        let v = engine
            .eval_source("(map (fn (x) (* x 10)) [1 2 3])", None)
            .unwrap();
        assert_eq!(crate::printer::repr(&v), "(10 20 30)");
    }

    /// An image from another `prelude.sx`, kernel or instruction set is refused with a
    /// message naming the fix; `with_backend`'s path then compiles the prelude from source.
    #[test]
    fn a_stale_or_damaged_prelude_image_is_refused_and_the_source_is_compiled() {
        let fresh = compile_image().unwrap();
        let mut other_source = fresh.clone();
        other_source[4] ^= 1;
        let mut other_kernel = fresh.clone();
        // The `.sxbc` header's opcode-table hash: after SXPI, the source hash, SXBC, format.
        other_kernel[12 + 4 + 2] ^= 1;
        let mut truncated = fresh.clone();
        truncated.truncate(fresh.len() - 3);
        for (image, says) in [
            (&other_source[..], "another prelude.sx"),
            (&other_kernel[..], "stale bytecode"),
            (&truncated[..], "damaged bytecode"),
            (&b"SXBC"[..], "no SXPI header"),
        ] {
            let err = Engine::from_prelude_image(image).err().expect("refused");
            assert!(err.contains(says) && err.contains(BLESS), "{err}");
            let mut engine = Engine::vm_with_prelude(image);
            map_works(&mut engine);
        }
        let mut engine = Engine::from_prelude_image(&fresh).unwrap();
        map_works(&mut engine);
    }

    /// The image and the source give the VM the same library: every public and private
    /// binding of the prelude is defined, and library code still ignores user redefinitions.
    #[test]
    fn the_image_defines_what_the_source_defines() {
        let from_image = Engine::from_prelude_image(&compile_image().unwrap()).unwrap();
        let from_source = Engine::from_prelude_source(Backend::Vm);
        let names = |e: &Engine| {
            let mut names: Vec<String> = e
                .globals
                .iter()
                .filter(|(_, g)| g.is_bound())
                .map(|(name, g)| {
                    format!(
                        "{} {}",
                        name.name(),
                        g.value.borrow().as_ref().map_or("", Value::type_name)
                    )
                })
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&from_image), names(&from_source));
        let mut engine = from_image;
        let v = engine
            .eval_source(
                "(define (reverse xs) :mine) (list (map inc [1 2]) (assert-raises \"type-error\" (+ 1 \"a\")))",
                None,
            )
            .unwrap();
        assert_eq!(crate::printer::repr(&v), "((2 3) true)");
    }
}
