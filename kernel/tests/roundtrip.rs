//! Property tests: `read(repr(v)) == v` for generated data values, and the reader never
//! panics on arbitrary text.

use proptest::prelude::*;
use sx_kernel::printer::repr;
use sx_kernel::reader::{read_all, read_one, Mode};
use sx_kernel::value::{Dict, Key, Value};

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z*+!?<>=_-][a-zA-Z0-9*+!?<>=_./-]{0,8}".prop_filter("reserved words", |s| {
        !matches!(s.as_str(), "nil" | "true" | "false")
            && !s.starts_with(|c: char| {
                (c == '+' || c == '-')
                    && s.len() > 1
                    && s[1..].starts_with(|d: char| d.is_ascii_digit())
            })
    })
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        ".*".prop_map(|s: String| Value::str(&s)),
        name().prop_map(|s| Value::kw(&s)),
        name().prop_map(|s| Value::sym(&s)),
    ]
}

fn data() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::list),
            prop::collection::vec((inner.clone(), inner), 0..6).prop_map(|pairs| {
                let mut d = Dict::new();
                for (k, v) in pairs {
                    d.insert(Key(k), v);
                }
                Value::Dict(d)
            }),
        ]
    })
}

/// `=` treats NaN as unequal to itself; for the round trip, compare the printed forms too.
fn same(a: &Value, b: &Value) -> bool {
    a == b || repr(a) == repr(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn read_of_repr_is_identity(v in data()) {
        let text = repr(&v);
        let back = read_one(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert!(same(&v, &back), "{} read back as {}", text, repr(&back));
    }

    #[test]
    fn reader_never_panics(text in ".{0,200}") {
        let _ = read_all(&text, Mode::Code, 100);
        let _ = read_all(&text, Mode::Data, 100);
    }

    #[test]
    fn reader_never_panics_on_lisp_shaped_text(text in "[()\\[\\]{}'`,@#; \"\\\\a-z0-9:.+-]{0,300}") {
        let _ = read_all(&text, Mode::Code, 50);
    }
}
