//! `upper` and `lower` without the standard library's case tables (about 35 KB of the
//! browser module: `str::to_lowercase`/`to_uppercase` link them). The same mappings, kept as
//! runs: `case_tables.rs` is generated from this toolchain's `char::to_lowercase`/
//! `to_uppercase` (and, for the final-sigma rule, from `str::to_lowercase` itself), and a test
//! checks every character against the standard library. Regenerate it (after a toolchain
//! upgrade brings a new Unicode version) with `SX_BLESS=1 cargo test -p sx-kernel --lib
//! case_tables`.

use super::case_tables::{CASED, IGNORABLE, LOWER, LOWER_MULTI, UPPER, UPPER_MULTI};

/// A run of characters that map to `c + delta`: `start`, `start + stride`, ... (`count` of
/// them), packed as `(start, count << 1 | (stride - 1), delta)`.
type Run = (u32, u32, i32);

fn single(c: char, runs: &[Run]) -> Option<char> {
    let c32 = c as u32;
    let i = runs.partition_point(|r| r.0 <= c32).checked_sub(1)?;
    let (start, packed, delta) = runs[i];
    let (count, stride) = (packed >> 1, (packed & 1) + 1);
    let offset = c32 - start;
    (offset % stride == 0 && offset / stride < count)
        .then(|| char::from_u32(c32.wrapping_add_signed(delta)))
        .flatten()
}

fn push_mapped(out: &mut String, c: char, runs: &[Run], multi: &[(char, [char; 3])]) {
    if let Ok(i) = multi.binary_search_by_key(&c, |m| m.0) {
        out.extend(multi[i].1.iter().filter(|m| **m != '\0'));
    } else {
        out.push(single(c, runs).unwrap_or(c));
    }
}

fn in_ranges(c: char, ranges: &[(u32, u32)]) -> bool {
    let c = c as u32;
    ranges
        .partition_point(|r| r.0 <= c)
        .checked_sub(1)
        .is_some_and(|i| c <= ranges[i].1)
}

/// Unicode's Final_Sigma condition, as `str::to_lowercase` decides it: skipping
/// case-ignorable characters, the first character is cased.
fn cased_after_ignorables(mut chars: impl Iterator<Item = char>) -> bool {
    chars
        .find(|c| !in_ranges(*c, IGNORABLE))
        .is_some_and(|c| in_ranges(c, CASED))
}

/// `str::to_lowercase`.
pub fn lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if c == 'Σ' {
            let word_final = cased_after_ignorables(s[..i].chars().rev())
                && !cased_after_ignorables(s[i + c.len_utf8()..].chars());
            out.push(if word_final { 'ς' } else { 'σ' });
        } else {
            push_mapped(&mut out, c, LOWER, LOWER_MULTI);
        }
    }
    out
}

/// `str::to_uppercase`.
pub fn upper(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_uppercase());
        } else {
            push_mapped(&mut out, c, UPPER, UPPER_MULTI);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    fn chars() -> impl Iterator<Item = char> {
        (0..=0x10FFFF).filter_map(char::from_u32)
    }

    /// Runs of single-character mappings, and the multi-character ones.
    fn runs(map: impl Fn(char) -> Vec<char>) -> (Vec<Run>, Vec<(char, [char; 3])>) {
        let mut singles = Vec::new();
        let mut multi = Vec::new();
        for c in chars() {
            match map(c)[..] {
                [m] if m == c => {}
                [m] => singles.push((c as u32, m as i64 - c as i64)),
                ref ms => {
                    let mut three = ['\0'; 3];
                    three[..ms.len()].copy_from_slice(ms);
                    multi.push((c, three));
                }
            }
        }
        let mut out: Vec<Run> = Vec::new();
        let mut i = 0;
        while i < singles.len() {
            let (start, delta) = singles[i];
            let stride = match singles.get(i + 1) {
                Some(&(next, d)) if d == delta && next - start <= 2 => next - start,
                _ => 1,
            };
            let mut count = 1;
            while let Some(&(next, d)) = singles.get(i + count) {
                if d != delta || next != start + stride * count as u32 {
                    break;
                }
                count += 1;
            }
            out.push((start, (count as u32) << 1 | (stride - 1), delta as i32));
            i += count;
        }
        (out, multi)
    }

    /// What `str::to_lowercase` does with a sigma followed by `x`: `x` is case-ignorable
    /// (skipped), cased (and not ignorable), or neither.
    fn ranges(want: u8) -> Vec<(u32, u32)> {
        let sigma = |s: String| s.to_lowercase().chars().nth(1) == Some('σ');
        let class = |x: char| {
            if sigma(format!("AΣ{x}")) {
                1 // cased: the sigma is not final
            } else if sigma(format!("AΣ{x}A")) {
                2 // ignorable: skipped, the A after it is cased
            } else {
                0
            }
        };
        let mut out: Vec<(u32, u32)> = Vec::new();
        for c in chars().filter(|c| class(*c) == want) {
            match out.last_mut() {
                Some(last) if last.1 + 1 == c as u32 => last.1 = c as u32,
                _ => out.push((c as u32, c as u32)),
            }
        }
        out
    }

    fn generate() -> String {
        let mut out = String::from(
            "//! Generated by `SX_BLESS=1 cargo test -p sx-kernel --lib case_tables` from the\n\
             //! toolchain's Unicode case mappings (see `case.rs`). Do not edit.\n\n",
        );
        let lower = runs(|c| c.to_lowercase().collect());
        let upper = runs(|c| c.to_uppercase().collect());
        for (name, (runs, multi)) in [("LOWER", lower), ("UPPER", upper)] {
            writeln!(out, "pub(super) const {name}: &[(u32, u32, i32)] = &[").unwrap();
            for (s, p, d) in runs {
                writeln!(out, "    (0x{s:X}, {p}, {d}),").unwrap();
            }
            writeln!(
                out,
                "];\n\npub(super) const {name}_MULTI: &[(char, [char; 3])] = &["
            )
            .unwrap();
            for (c, m) in multi {
                writeln!(out, "    ({c:?}, [{:?}, {:?}, {:?}]),", m[0], m[1], m[2]).unwrap();
            }
            writeln!(out, "];\n").unwrap();
        }
        for (name, class) in [("CASED", 1), ("IGNORABLE", 2)] {
            writeln!(out, "pub(super) const {name}: &[(u32, u32)] = &[").unwrap();
            for (a, b) in ranges(class) {
                writeln!(out, "    (0x{a:X}, 0x{b:X}),").unwrap();
            }
            writeln!(out, "];\n").unwrap();
        }
        out.pop();
        out
    }

    #[test]
    fn case_tables_are_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/builtins/case_tables.rs");
        let fresh = generate();
        if std::env::var_os("SX_BLESS").is_some() {
            std::fs::write(&path, fresh).expect("the source tree is writable");
            return;
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == fresh,
            "kernel/src/builtins/case_tables.rs differs from this toolchain's Unicode tables. \
             Regenerate it: SX_BLESS=1 cargo test -p sx-kernel --lib case_tables"
        );
    }

    /// Every character maps as the standard library maps it, alone and as a final sigma's
    /// neighbour on either side.
    #[test]
    fn every_character_maps_as_std_does() {
        let mut s = String::new();
        for c in chars() {
            s.clear();
            s.push(c);
            assert_eq!(lower(&s), s.to_lowercase(), "lower {c:?}");
            assert_eq!(upper(&s), s.to_uppercase(), "upper {c:?}");
            for text in [
                format!("AΣ{c}"),
                format!("AΣ{c}A"),
                format!("{c}Σ"),
                format!("A{c}Σ"),
            ] {
                assert_eq!(lower(&text), text.to_lowercase(), "lower {text:?}");
            }
        }
    }

    /// Mixed strings of sigmas, cased, ignorable and other characters (seeded).
    #[test]
    fn mixed_strings_map_as_std_does() {
        let pool = [
            'Σ', 'A', 'ß', 'İ', '\'', '.', 'ʰ', '\u{301}', ' ', '1', 'ǅ', 'ﬃ', 'ᾳ', 'σ',
        ];
        let mut x: u64 = 42;
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(x % 7) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push(pool[(x >> 33) as usize % pool.len()]);
            }
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            assert_eq!(lower(&s), s.to_lowercase(), "lower {s:?}");
            assert_eq!(upper(&s), s.to_uppercase(), "upper {s:?}");
        }
    }
}
