//! The printer: `repr` (SX text that reads back to an equal value) and the display form
//! used by `print` and `str` (strings as their characters, everything else as `repr`).

use std::fmt::Write;

use crate::value::Value;

pub fn repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, v);
    out
}

pub fn display(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        other => repr(other),
    }
}

/// Appends the display form of `v` to `out` (`nil` contributes nothing: that is `str`'s rule).
pub fn write_str_part(out: &mut String, v: &Value) {
    match v {
        Value::Nil => {}
        Value::Str(s) => out.push_str(s),
        other => write_repr(out, other),
    }
}

/// A float as `repr` writes it: the shortest digits that read back to the same float, laid
/// out as Rust's `{:?}` lays them out (decimal with at least one fractional digit when
/// 1e-4 <= |f| < 1e16 or f is zero, else `1.5e-7`). The digits come from ryu (with its small
/// table), not from `core::fmt`, whose float formatting is about 10 KB of the browser module;
/// a test checks this against `{:?}`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "+nan.0".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+inf.0" } else { "-inf.0" }.into();
    }
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    let abs = f.abs();
    if abs == 0.0 {
        out.push_str("0.0");
        return out;
    }
    let mut buffer = ryu::Buffer::new();
    let (mut digits, mut exp) = shortest_digits(buffer.format_finite(abs));
    if halfway_above(abs, &digits, exp) {
        // Both candidates are shortest and equally near: ryu rounds the tie to even, core's
        // formatting (and so `repr`) up.
        (digits, exp) = next_up(&digits, exp);
    }
    let n = digits.len() as i32;
    if (1e-4..1e16).contains(&abs) {
        if exp <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp) as usize));
            out.push_str(&digits);
        } else if exp >= n {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (exp - n) as usize));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..exp as usize]);
            out.push('.');
            out.push_str(&digits[exp as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push_str(&(exp - 1).to_string());
    }
    out
}

/// Whether `f` (positive, finite) is exactly halfway between `0.digits × 10^exp` and the
/// number one unit of its last digit above: with `k = exp - n`, that midpoint is
/// `(2·digits + 1) · 5^k · 2^(k-1)`.
fn halfway_above(f: f64, digits: &str, exp: i32) -> bool {
    let Ok(d) = digits.parse::<u128>() else {
        return false;
    };
    let odd = 2 * d + 1;
    let k = exp - digits.len() as i32;
    // f = m·2^q with m odd.
    let bits = f.to_bits();
    let (frac, biased) = (bits & ((1 << 52) - 1), ((bits >> 52) & 0x7ff) as i32);
    let (m, q) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1 << 52), biased - 1075)
    };
    let (m, q) = (
        u128::from(m >> m.trailing_zeros()),
        q + m.trailing_zeros() as i32,
    );
    let pow5 = 5u128.checked_pow(k.unsigned_abs());
    q == k - 1
        && if k >= 0 {
            pow5.and_then(|p| odd.checked_mul(p)) == Some(m)
        } else {
            pow5.and_then(|p| m.checked_mul(p)) == Some(odd)
        }
}

/// The digits one unit of the last one above (`0.digits × 10^exp`), without trailing zeros.
fn next_up(digits: &str, exp: i32) -> (String, i32) {
    let mut bytes = digits.as_bytes().to_vec();
    let mut i = bytes.len();
    loop {
        if i == 0 {
            bytes.insert(0, b'1');
            return (trim_zeros(bytes), exp + 1);
        }
        i -= 1;
        if bytes[i] == b'9' {
            bytes[i] = b'0';
        } else {
            bytes[i] += 1;
            return (trim_zeros(bytes), exp);
        }
    }
}

fn trim_zeros(mut bytes: Vec<u8>) -> String {
    while bytes.last() == Some(&b'0') {
        bytes.pop();
    }
    String::from_utf8(bytes).unwrap_or_default()
}

/// ryu's text of a positive finite float → its significant digits `d1d2...` (no leading or
/// trailing zeros) and `e` such that the float is `0.d1d2... × 10^e`.
fn shortest_digits(text: &str) -> (String, i32) {
    let (mantissa, exp) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = int.chars().chain(frac.chars()).collect();
    let leading = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0').to_string();
    (digits, exp + int.len() as i32 - leading as i32)
}

pub fn write_string_literal(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `n` in decimal: a few instructions per digit pair (itoa) where `core::fmt` costs
/// hundreds per number (`str` and `number->string` of integers).
pub fn decimal(n: i64, buf: &mut itoa::Buffer) -> &str {
    buf.format(n)
}

pub fn write_repr(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(decimal(*n, &mut itoa::Buffer::new())),
        Value::Float(f) => out.push_str(&float_repr(*f)),
        Value::Str(s) => write_string_literal(out, s),
        Value::Keyword(k) => {
            out.push(':');
            out.push_str(k.name());
        }
        Value::Symbol(s) => out.push_str(s.name()),
        Value::List(items) => {
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_repr(out, item);
            }
            out.push(')');
        }
        Value::Dict(d) => {
            out.push('{');
            for (i, (k, val)) in d.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_repr(out, &k.0);
                out.push(' ');
                write_repr(out, val);
            }
            out.push('}');
        }
        Value::Fn(c) => match c.name() {
            Some(name) => {
                let _ = write!(out, "#<fn {}>", name.name());
            }
            None => out.push_str("#<fn>"),
        },
        Value::Native(n) => {
            let _ = write!(out, "#<fn {}>", n.name);
        }
        Value::Macro(c) => {
            let name = c.name().map_or("", |n| n.name());
            let _ = write!(out, "#<macro {name}>");
        }
        Value::Component(c) => {
            let _ = write!(out, "#<component {}>", c.name.name());
        }
        Value::Error(e) => {
            let _ = write!(out, "#<error {}: {}>", e.error_type, e.message);
        }
        Value::Boxed(b) => write_repr(out, &b.borrow()),
        Value::Opaque(o) => out.push_str(&o.repr()),
        Value::Raw(s) => {
            out.push_str("(raw! ");
            write_string_literal(out, s);
            out.push(')');
        }
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&repr(self))
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&display(self))
    }
}

#[cfg(test)]
mod tests {
    use super::float_repr;

    fn check(f: f64) {
        let expected = if f.is_nan() {
            "+nan.0".to_string()
        } else if f.is_infinite() {
            if f > 0.0 { "+inf.0" } else { "-inf.0" }.to_string()
        } else {
            format!("{f:?}")
        };
        assert_eq!(float_repr(f), expected, "bits {:016x}", f.to_bits());
    }

    /// `float_repr` writes what Rust's `{:?}` writes: edges, the layout thresholds, and
    /// seeded random bit patterns and short decimals.
    #[test]
    fn floats_print_as_debug_does() {
        for f in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            0.5,
            2.5,
            100.0,
            1e15,
            1e16,
            1e17,
            9999999999999998.0,
            1e-4,
            9.999e-5,
            1.0001e-4,
            1e-5,
            1e-7,
            1.5e-7,
            123.456,
            1e21,
            1e22,
            1e23,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            5e-324,
            2.2250738585072e-308,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.3,
            1.0 / 3.0,
            2.0f64.powi(53),
            2.0f64.powi(53) + 2.0,
            123456789012345680.0,
        ] {
            check(f);
            check(-f);
        }
        for e in -330..=310 {
            for m in [1.0, 9.999999999999999, 5.0, 1.5] {
                check(m * 10f64.powi(e));
            }
        }
        let mut x: u64 = 7;
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            check(f64::from_bits(x));
            let digits = (x >> 20) % 1_000_000_000;
            check(digits as f64 / 10f64.powi((x % 23) as i32));
            // Few fractional bits, and multiples of powers of five: where the two shortest
            // candidates can tie.
            check((x >> 11) as f64 / f64::from(1 << (x % 5)));
            check(((x >> 40) * 5u64.pow(13)) as f64 * 2f64.powi((x % 60) as i32 - 10));
        }
    }
}
