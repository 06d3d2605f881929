//! The engine's decisions (`engine/click`, `engine/submit`, `engine/popstate` in
//! `sx/web/engine.sx`) as a table: plain event data in, an action kind (or nothing) out. They
//! are pure SX, so they are checked here natively on the VM with the same compiled bundle the
//! browser loads; Playwright checks the effects in Chromium.

use sx_kernel::value::{kw_dict, Key};
use sx_kernel::{Engine, Value};

fn engine() -> Engine {
    let mut engine = Engine::from_prelude_image(crate::PRELUDE_IMAGE).expect("the prelude loads");
    engine
        .load_bundle(crate::ENGINE_BUNDLE)
        .expect("the engine bundle loads");
    engine
}

fn event(fields: &[(&str, Value)]) -> Value {
    kw_dict(fields.iter().map(|(k, v)| (*k, v.clone())))
}

/// The decision's `:kind`, or "leave" when the engine leaves the event to the browser.
fn decide(engine: &mut Engine, name: &str, ev: Value) -> String {
    let f = engine.lookup(name).expect("the engine defines it");
    match engine.call_with(&f, vec![ev], &mut |_| panic!("decisions do not perform")) {
        Ok(Value::Nil) => "leave".into(),
        Ok(Value::Dict(d)) => match d.get(&Key(Value::kw("kind"))) {
            Some(Value::Str(kind)) => kind.to_string(),
            other => panic!("an action without a kind: {other:?}"),
        },
        other => panic!("{name} gave {other:?}"),
    }
}

/// One row: what the case is, the event fields that differ from the default, the decision.
type Case<'a> = (&'a str, Vec<(&'a str, Value)>, &'a str);

const ORIGIN: &str = "http://127.0.0.1:8000";
const HERE: &str = "http://127.0.0.1:8000/welcome/";

fn click(overrides: &[(&str, Value)]) -> Value {
    let mut fields = vec![
        ("button", Value::Int(0)),
        ("ctrl", Value::Bool(false)),
        ("meta", Value::Bool(false)),
        ("shift", Value::Bool(false)),
        ("alt", Value::Bool(false)),
        ("origin", Value::str(ORIGIN)),
        ("location", Value::str(HERE)),
        ("href", Value::str("http://127.0.0.1:8000/other/")),
        ("target", Value::Nil),
        ("download", Value::Bool(false)),
        ("boost", Value::str("")),
        ("self", Value::str("#sx-auto-1")),
    ];
    for (k, v) in overrides {
        fields.retain(|(name, _)| name != k);
        fields.push((k, v.clone()));
    }
    event(&fields)
}

#[test]
fn which_clicks_are_boosted() {
    let mut engine = engine();
    let s = Value::str;
    let cases: Vec<Case> = vec![
        ("a same-origin link in sx-boost", vec![], "visit"),
        ("sx-boost=\"true\"", vec![("boost", s("true"))], "visit"),
        ("outside any sx-boost", vec![("boost", Value::Nil)], "leave"),
        ("sx-boost=\"false\"", vec![("boost", s("false"))], "leave"),
        ("ctrl-click", vec![("ctrl", Value::Bool(true))], "leave"),
        ("cmd-click", vec![("meta", Value::Bool(true))], "leave"),
        ("shift-click", vec![("shift", Value::Bool(true))], "leave"),
        ("alt-click", vec![("alt", Value::Bool(true))], "leave"),
        ("middle button", vec![("button", Value::Int(1))], "leave"),
        ("target=_blank", vec![("target", s("_blank"))], "leave"),
        ("target=_self", vec![("target", s("_self"))], "visit"),
        ("download", vec![("download", Value::Bool(true))], "leave"),
        (
            "another origin",
            vec![("href", s("http://example.com/x"))],
            "leave",
        ),
        (
            "a look-alike origin",
            vec![("href", s("http://127.0.0.1:80001/x"))],
            "leave",
        ),
        ("mailto:", vec![("href", s("mailto:a@b.c"))], "leave"),
        (
            "a hash on this page",
            vec![("href", s("http://127.0.0.1:8000/welcome/#part"))],
            "leave",
        ),
        (
            "a hash on another page",
            vec![("href", s("http://127.0.0.1:8000/other/#part"))],
            "visit",
        ),
        (
            "sx-get",
            vec![("sx-get", s("/part")), ("href", Value::Nil)],
            "partial",
        ),
        (
            "sx-post",
            vec![("sx-post", s("/part")), ("href", Value::Nil)],
            "partial",
        ),
    ];
    for (what, overrides, expected) in cases {
        assert_eq!(
            decide(&mut engine, "engine/click", click(&overrides)),
            expected,
            "{what}"
        );
    }
}

#[test]
fn which_submissions_are_boosted() {
    let mut engine = engine();
    let s = Value::str;
    let form = |overrides: &[(&str, Value)]| {
        let mut fields = vec![
            ("action", s("http://127.0.0.1:8000/new")),
            ("method", s("POST")),
            ("enctype", s("application/x-www-form-urlencoded")),
            ("body", s("title=x")),
            ("target", Value::Nil),
            ("origin", s(ORIGIN)),
            ("location", s(HERE)),
            ("boost", s("")),
            ("self", s("#f")),
        ];
        for (k, v) in overrides {
            fields.retain(|(name, _)| name != k);
            fields.push((k, v.clone()));
        }
        event(&fields)
    };
    let cases: Vec<Case> = vec![
        ("a POST form in sx-boost", vec![], "post"),
        ("a GET form", vec![("method", s("GET"))], "visit"),
        ("outside sx-boost", vec![("boost", Value::Nil)], "leave"),
        (
            "multipart",
            vec![("enctype", s("multipart/form-data"))],
            "leave",
        ),
        (
            "another origin",
            vec![("action", s("http://example.com/new"))],
            "leave",
        ),
        ("a target", vec![("target", s("other"))], "leave"),
        ("dialog method", vec![("method", s("DIALOG"))], "leave"),
        (
            "sx-post",
            vec![("sx-post", s("/part")), ("boost", Value::Nil)],
            "partial",
        ),
    ];
    for (what, overrides, expected) in cases {
        assert_eq!(
            decide(&mut engine, "engine/submit", form(&overrides)),
            expected,
            "{what}"
        );
    }
}

#[test]
fn history_pops_restore_other_pages_only() {
    let mut engine = engine();
    // engine/boot performs (history/replace); serve it by ignoring it.
    let boot = engine.lookup("engine/boot").unwrap();
    engine
        .call_with(&boot, vec![Value::str(HERE)], &mut |_| Ok(Value::Nil))
        .unwrap();
    let pop = |url: &str| event(&[("url", Value::str(url)), ("scroll", Value::Int(40))]);
    assert_eq!(decide(&mut engine, "engine/popstate", pop(HERE)), "leave");
    assert_eq!(
        decide(
            &mut engine,
            "engine/popstate",
            pop("http://127.0.0.1:8000/welcome/#x")
        ),
        "leave"
    );
    assert_eq!(
        decide(
            &mut engine,
            "engine/popstate",
            pop("http://127.0.0.1:8000/")
        ),
        "restore"
    );
}

/// The browser's kernel evaluates no source: `eval` raises `eval-unavailable` (an SX error
/// raised like any other, not a trap). (Built with the rest of the workspace, the kernel
/// has its `source` feature and `eval` works; `cargo test -p sx-client` alone builds it as
/// the browser does, without.)
#[test]
fn eval_without_the_source_feature_is_an_error() {
    let mut engine = engine();
    let eval = engine.lookup("eval").unwrap();
    let form = Value::list(vec![Value::sym("+"), Value::Int(1), Value::Int(2)]);
    let result = engine.call_with(&eval, vec![form], &mut |_| panic!("no effects"));
    if sx_kernel::EVALUATES_SOURCE {
        assert_eq!(result, Ok(Value::Int(3)));
    } else {
        let err = result.expect_err("eval is unavailable");
        assert_eq!(
            sx_kernel::error::describe(&err).split(':').next(),
            Some("eval-unavailable")
        );
        // The engine goes on.
        let again = engine.call_with(&eval, vec![Value::Int(7)], &mut |_| panic!("no effects"));
        assert!(again.is_err());
    }
}
