//! Numbers: checked integer arithmetic (overflow raises, never wraps), floats, comparison.

use super::{as_str, pure, Entry, NResult};
use crate::error::{division_by_zero, overflow, type_error};
use crate::value::{compare, Value, TWO_POW_63};

pub(super) fn table() -> Vec<Entry> {
    vec![
        pure("+", 0, None, add),
        pure("-", 1, None, sub),
        pure("*", 0, None, mul),
        pure("/", 1, None, div),
        pure("quot", 2, Some(2), quot),
        pure("rem", 2, Some(2), rem),
        pure("mod", 2, Some(2), modulo),
        pure("abs", 1, Some(1), abs),
        pure("min", 1, None, |a| pick(a, "min", std::cmp::Ordering::Less)),
        pure("max", 1, None, |a| {
            pick(a, "max", std::cmp::Ordering::Greater)
        }),
        pure("floor", 1, Some(1), |a| round_with(a, "floor", f64::floor)),
        pure("ceil", 1, Some(1), |a| round_with(a, "ceil", f64::ceil)),
        pure("round", 1, Some(1), |a| round_with(a, "round", f64::round)),
        pure("sqrt", 1, Some(1), |a| {
            Ok(Value::Float(float(&a[0], "sqrt")?.sqrt()))
        }),
        pure("expt", 2, Some(2), expt),
        pure("inc", 1, Some(1), |a| add(&[a[0].clone(), Value::Int(1)])),
        pure("dec", 1, Some(1), |a| sub(&[a[0].clone(), Value::Int(1)])),
        pure("=", 1, None, |a| {
            Ok(Value::Bool(a.windows(2).all(|w| w[0] == w[1])))
        }),
        pure("<", 1, None, |a| chain(a, "<", |o| o.is_lt())),
        pure(">", 1, None, |a| chain(a, ">", |o| o.is_gt())),
        pure("<=", 1, None, |a| chain(a, "<=", |o| o.is_le())),
        pure(">=", 1, None, |a| chain(a, ">=", |o| o.is_ge())),
        pure("zero?", 1, Some(1), |a| {
            Ok(Value::Bool(float(&a[0], "zero?")? == 0.0))
        }),
        pure("even?", 1, Some(1), |a| {
            Ok(Value::Bool(int(&a[0], "even?")? % 2 == 0))
        }),
        pure("odd?", 1, Some(1), |a| {
            Ok(Value::Bool(int(&a[0], "odd?")? % 2 != 0))
        }),
        pure("number->string", 1, Some(1), |a| match a[0] {
            Value::Int(n) => Ok(Value::str(crate::printer::decimal(
                n,
                &mut itoa::Buffer::new(),
            ))),
            _ => {
                float(&a[0], "number->string")?;
                Ok(Value::str(&crate::printer::repr(&a[0])))
            }
        }),
        pure("string->number", 1, Some(1), string_to_number),
    ]
}

fn not_a_number(v: &Value, who: &str) -> Value {
    type_error(
        format!("{who} expects a number, got {}", v.type_name()),
        vec![v.clone()],
    )
}

fn float(v: &Value, who: &str) -> Result<f64, Value> {
    match v {
        Value::Int(n) => Ok(*n as f64),
        Value::Float(f) => Ok(*f),
        other => Err(not_a_number(other, who)),
    }
}

fn int(v: &Value, who: &str) -> Result<i64, Value> {
    match v {
        Value::Int(n) => Ok(*n),
        other => Err(type_error(
            format!("{who} expects an integer, got {}", other.type_name()),
            vec![other.clone()],
        )),
    }
}

/// Folds a binary operation over the arguments, in integers while both sides are integers.
fn fold(
    a: &[Value],
    init: Value,
    who: &str,
    ints: fn(i64, i64) -> Option<i64>,
    floats: fn(f64, f64) -> f64,
) -> NResult {
    let mut acc = init;
    for v in a {
        acc = match (&acc, v) {
            (Value::Int(x), Value::Int(y)) => Value::Int(ints(*x, *y).ok_or_else(overflow)?),
            _ => Value::Float(floats(float(&acc, who)?, float(v, who)?)),
        };
    }
    Ok(acc)
}

fn add(a: &[Value]) -> NResult {
    fold(a, Value::Int(0), "+", i64::checked_add, |x, y| x + y)
}

fn mul(a: &[Value]) -> NResult {
    fold(a, Value::Int(1), "*", i64::checked_mul, |x, y| x * y)
}

fn sub(a: &[Value]) -> NResult {
    if a.len() == 1 {
        return fold(a, Value::Int(0), "-", i64::checked_sub, |x, y| x - y);
    }
    fold(&a[1..], a[0].clone(), "-", i64::checked_sub, |x, y| x - y).and_then(|v| {
        float(&a[0], "-")?;
        Ok(v)
    })
}

fn divide(x: &Value, y: &Value) -> NResult {
    match (x, y) {
        (_, Value::Int(0)) => {
            float(x, "/")?;
            Err(division_by_zero())
        }
        (Value::Int(p), Value::Int(q)) => match p.checked_rem(*q) {
            Some(0) => Ok(Value::Int(p.checked_div(*q).ok_or_else(overflow)?)),
            Some(_) => Ok(Value::Float(*p as f64 / *q as f64)),
            None => Err(overflow()),
        },
        _ => Ok(Value::Float(float(x, "/")? / float(y, "/")?)),
    }
}

fn div(a: &[Value]) -> NResult {
    if a.len() == 1 {
        return divide(&Value::Int(1), &a[0]);
    }
    let mut acc = a[0].clone();
    float(&acc, "/")?;
    for v in &a[1..] {
        acc = divide(&acc, v)?;
    }
    Ok(acc)
}

/// Integer division family: `quot` truncates, `rem` takes the dividend's sign, `mod` the
/// divisor's. Floats are accepted and give floats.
fn int_division(
    a: &[Value],
    who: &str,
    op: fn(i64, i64) -> Option<i64>,
    fop: fn(f64, f64) -> f64,
) -> NResult {
    match (&a[0], &a[1]) {
        (_, Value::Int(0)) => {
            float(&a[0], who)?;
            Err(division_by_zero())
        }
        (Value::Int(x), Value::Int(y)) => op(*x, *y).map(Value::Int).ok_or_else(overflow),
        (x, y) => Ok(Value::Float(fop(float(x, who)?, float(y, who)?))),
    }
}

fn quot(a: &[Value]) -> NResult {
    int_division(a, "quot", i64::checked_div, |x, y| (x / y).trunc())
}

/// `x rem y`, defined for every `y != 0`: `i64::MIN rem -1` is 0 (only the quotient of
/// that pair overflows, not the remainder).
fn int_rem(x: i64, y: i64) -> Option<i64> {
    if y == -1 {
        Some(0)
    } else {
        x.checked_rem(y)
    }
}

fn rem(a: &[Value]) -> NResult {
    int_division(a, "rem", int_rem, |x, y| x % y)
}

fn modulo(a: &[Value]) -> NResult {
    int_division(
        a,
        "mod",
        |x, y| {
            let r = int_rem(x, y)?;
            Some(if r != 0 && ((r < 0) != (y < 0)) {
                r + y
            } else {
                r
            })
        },
        |x, y| {
            let r = x % y;
            if r != 0.0 && ((r < 0.0) != (y < 0.0)) {
                r + y
            } else {
                r
            }
        },
    )
}

fn abs(a: &[Value]) -> NResult {
    match &a[0] {
        Value::Int(n) => n.checked_abs().map(Value::Int).ok_or_else(overflow),
        Value::Float(f) => Ok(Value::Float(f.abs())),
        other => Err(not_a_number(other, "abs")),
    }
}

fn pick(a: &[Value], who: &str, want: std::cmp::Ordering) -> NResult {
    let mut best = &a[0];
    float(best, who)?;
    for v in &a[1..] {
        float(v, who)?;
        if compare(v, best) == want {
            best = v;
        }
    }
    Ok(best.clone())
}

fn round_with(a: &[Value], who: &str, f: fn(f64) -> f64) -> NResult {
    match &a[0] {
        Value::Int(n) => Ok(Value::Int(*n)),
        Value::Float(x) => {
            let r = f(*x);
            if r.is_nan() {
                return Err(type_error(format!("{who} of NaN"), vec![a[0].clone()]));
            }
            if !(-TWO_POW_63..TWO_POW_63).contains(&r) {
                return Err(overflow());
            }
            Ok(Value::Int(r as i64))
        }
        other => Err(not_a_number(other, who)),
    }
}

fn expt(a: &[Value]) -> NResult {
    match (&a[0], &a[1]) {
        (Value::Int(b), Value::Int(e)) if *e >= 0 => match (*b, u32::try_from(*e)) {
            (b, Ok(e)) => b.checked_pow(e).map(Value::Int).ok_or_else(overflow),
            // Exponents beyond u32: only 0, 1 and -1 have a power that fits in an i64.
            (0 | 1, Err(_)) => Ok(Value::Int(*b)),
            (-1, Err(_)) => Ok(Value::Int(if e % 2 == 0 { 1 } else { -1 })),
            (_, Err(_)) => Err(overflow()),
        },
        (b, e) => Ok(Value::Float(float(b, "expt")?.powf(float(e, "expt")?))),
    }
}

fn chain(a: &[Value], who: &str, ok: fn(std::cmp::Ordering) -> bool) -> NResult {
    for v in a {
        float(v, who)?;
    }
    Ok(Value::Bool(a.windows(2).all(|w| match (&w[0], &w[1]) {
        // NaN is unordered: every comparison with it is false.
        (Value::Float(x), _) if x.is_nan() => false,
        (_, Value::Float(y)) if y.is_nan() => false,
        (x, y) => ok(compare(x, y)),
    })))
}

fn string_to_number(a: &[Value]) -> NResult {
    let s = as_str(&a[0], "string->number")?.trim();
    match crate::reader::read_one(s) {
        Ok(v @ (Value::Int(_) | Value::Float(_))) => Ok(v),
        _ => Ok(Value::Nil),
    }
}
