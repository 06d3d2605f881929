//! The store against real LMDB in temporary directories.

use super::*;
use sx_kernel::value::{Dict, Key};

fn op(fields: &[(&str, Value)]) -> Value {
    let mut d = Dict::new();
    for (k, v) in fields {
        d.insert(Key(Value::kw(k)), v.clone());
    }
    Value::Dict(d)
}

/// Sample posts as an app declares them (`defsite` :samples), plus one without a body that
/// seeding skips.
fn samples() -> Vec<Value> {
    let sample = |slug: &str, title: &str, tags: &[&str]| {
        op(&[
            ("slug", Value::str(slug)),
            ("title", Value::str(title)),
            ("body", Value::str("Text.")),
            (
                "tags",
                Value::list(tags.iter().map(|t| Value::str(t)).collect()),
            ),
        ])
    };
    vec![
        sample("welcome", "Welcome", &["sx", "meta"]),
        sample("second", "Second", &[]),
        sample("third", "Third", &["x"]),
        op(&[
            ("slug", Value::str("broken")),
            ("title", Value::str("No body")),
        ]),
    ]
}

fn get(post: &Value, field: &str) -> Value {
    match post {
        Value::Dict(d) => d.get(&Key(Value::kw(field))).cloned().unwrap_or(Value::Nil),
        _ => Value::Nil,
    }
}

fn create(title: &str, at: i64) -> Value {
    op(&[
        ("op", Value::str("create")),
        ("title", Value::str(title)),
        ("at", Value::Int(at)),
    ])
}

#[test]
fn a_post_is_the_fold_of_its_stream_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.append(&[("hello", create("Hello", 10))]).unwrap();
        store
            .append(&[(
                "hello",
                op(&[
                    ("op", Value::str("edit")),
                    ("body", Value::str("Body")),
                    ("at", Value::Int(20)),
                ]),
            )])
            .unwrap();
        store
            .append(&[(
                "hello",
                op(&[("op", Value::str("publish")), ("at", Value::Int(30))]),
            )])
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let post = store.post("hello").unwrap().expect("the post survives");
    assert_eq!(get(&post, "title"), Value::str("Hello"));
    assert_eq!(get(&post, "body"), Value::str("Body"));
    assert_eq!(get(&post, "status"), Value::str("published"));
    assert_eq!(get(&post, "published-at"), Value::Int(30));
    assert_eq!(get(&post, "ops"), Value::Int(3));
    let history = store.history("hello").unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(get(&history[1], "op"), Value::str("edit"));
    assert_eq!(store.post("missing").unwrap(), None);
}

#[test]
fn writes_that_belong_together_commit_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bad = op(&[("op", Value::str("edit")), ("at", Value::Int(5))]);
    let err = store
        .append(&[("first", create("First", 1)), ("ghost", bad)])
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(
        store.post("first").unwrap(),
        None,
        "the valid half was not written"
    );
    assert!(store.history("first").unwrap().is_empty());
}

#[test]
fn invalid_ops_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cases = [
        (Value::str("not a dict"), "must be a dict"),
        (op(&[("at", Value::Int(1))]), "needs :op"),
        (
            op(&[("op", Value::str("create")), ("title", Value::str("x"))]),
            "needs :at",
        ),
        (
            op(&[("op", Value::str("create")), ("at", Value::Int(1))]),
            "needs a :title",
        ),
        (
            op(&[
                ("op", Value::str("create")),
                ("title", Value::Int(3)),
                ("at", Value::Int(1)),
            ]),
            "must be a string",
        ),
        (
            op(&[("op", Value::str("publish")), ("at", Value::Int(1))]),
            "does not exist yet",
        ),
    ];
    for (bad, expected) in cases {
        let err = store.append(&[("p", bad)]).unwrap_err().to_string();
        assert!(err.contains(expected), "{err} should mention {expected}");
    }
    store.append(&[("p", create("P", 1))]).unwrap();
    let again = store
        .append(&[("p", create("P", 2))])
        .unwrap_err()
        .to_string();
    assert!(again.contains("already exists"), "{again}");
}

#[test]
fn posts_list_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append(&[
            ("old", create("Old", 100)),
            ("new", create("New", 300)),
            ("mid", create("Mid", 200)),
        ])
        .unwrap();
    let slugs: Vec<Value> = store
        .posts()
        .unwrap()
        .iter()
        .map(|p| get(p, "slug"))
        .collect();
    assert_eq!(
        slugs,
        vec![Value::str("new"), Value::str("mid"), Value::str("old")]
    );
}

#[test]
fn seeding_is_idempotent_and_includes_welcome() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(
        !store.seed(1_000_000, &[]).unwrap(),
        "no samples, nothing seeded"
    );
    assert!(store.seed(1_000_000, &samples()).unwrap());
    let count = store.posts().unwrap().len();
    assert_eq!(count, 3);
    assert!(!store.seed(2_000_000, &samples()).unwrap());
    assert_eq!(store.posts().unwrap().len(), count);
    let welcome = store.post("welcome").unwrap().expect("welcome is seeded");
    assert_eq!(get(&welcome, "status"), Value::str("published"));
    assert!(matches!(get(&welcome, "tags"), Value::List(tags) if !tags.is_empty()));
}

#[test]
fn another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION.to_string());
        let mut wtxn = store.env.write_txn().unwrap();
        store.meta.put(&mut wtxn, "schema", "999").unwrap();
        wtxn.commit().unwrap();
    }
    match Store::open(dir.path()) {
        Err(StoreError::Schema { found, expected }) => {
            assert_eq!(found, "999");
            assert_eq!(expected, SCHEMA_VERSION);
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a store of another schema opened"),
    }
}

#[test]
fn a_damaged_record_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut wtxn = store.env.write_txn().unwrap();
    store.posts.put(&mut wtxn, "broken", "(unclosed").unwrap();
    wtxn.commit().unwrap();
    assert!(matches!(store.post("broken"), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.posts(), Err(StoreError::Corrupt(_))));
}

#[test]
fn a_decode_cache_never_serves_a_stale_post() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cache = DecodeCache::default();
    store.append(&[("p", create("First title", 1))]).unwrap();
    let first = store.post_cached("p", &cache).unwrap().unwrap();
    assert_eq!(get(&first, "title"), Value::str("First title"));
    store
        .append(&[(
            "p",
            op(&[
                ("op", Value::str("edit")),
                ("title", Value::str("Second title")),
                ("at", Value::Int(2)),
            ]),
        )])
        .unwrap();
    let second = store.post_cached("p", &cache).unwrap().unwrap();
    assert_eq!(get(&second, "title"), Value::str("Second title"));
    assert_eq!(store.posts_cached(&cache).unwrap().len(), 1);
}

#[test]
fn keys_lmdb_cannot_hold_name_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let long = "x".repeat(600);
    for key in ["", long.as_str()] {
        assert_eq!(store.post(key).unwrap(), None);
        assert_eq!(store.user(key).unwrap(), None);
    }
}

#[test]
fn expired_sessions_are_swept_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .put_user(&User {
            name: "ann".into(),
            password_hash: "unused".into(),
            grants: vec![],
        })
        .unwrap();
    let session = |expires| Session {
        user: "ann".into(),
        csrf: "t".into(),
        expires,
    };
    store.put_session("old", &session(1_000)).unwrap();
    store.put_session("new", &session(3_000)).unwrap();
    assert_eq!(store.sweep_sessions(2_000).unwrap(), 1);
    assert!(store.session("new", 2_000).unwrap().is_some());
    assert!(store.session("old", 0).unwrap().is_none());
}

#[test]
fn a_version_1_store_is_upgraded_in_place_and_keeps_its_posts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.seed(1_000, &samples()).unwrap();
        let mut wtxn = store.env.write_txn().unwrap();
        store.meta.put(&mut wtxn, "schema", "1").unwrap();
        wtxn.commit().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION.to_string());
    assert!(store.post("welcome").unwrap().is_some());
    assert_eq!(store.user_count().unwrap(), 0);
}

fn relation(kind: &str, other: &str, at: i64) -> Value {
    op(&[
        ("op", Value::str(kind)),
        ("other", Value::str(other)),
        ("at", Value::Int(at)),
    ])
}

fn related(store: &Store, slug: &str) -> Value {
    get(&store.post(slug).unwrap().unwrap(), "related")
}

#[test]
fn relations_are_ops_on_both_posts_committed_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append(&[("a", create("A", 1)), ("b", create("B", 2))])
        .unwrap();
    store
        .append(&[
            ("a", relation("relate", "b", 3)),
            ("b", relation("relate", "a", 3)),
        ])
        .unwrap();
    // Relating twice keeps one entry.
    store.append(&[("a", relation("relate", "b", 4))]).unwrap();
    assert_eq!(related(&store, "a"), Value::list(vec![Value::str("b")]));
    assert_eq!(related(&store, "b"), Value::list(vec![Value::str("a")]));

    // A post cannot be related to itself, nor to a missing post: nothing is written, not
    // even the half that was valid.
    let refused = [
        store.append(&[("a", relation("relate", "a", 5))]),
        store.append(&[
            ("a", relation("relate", "c", 5)),
            ("c", relation("relate", "a", 5)),
        ]),
    ];
    for result in refused {
        assert!(matches!(result, Err(StoreError::Invalid(_))));
    }
    assert_eq!(related(&store, "a"), Value::list(vec![Value::str("b")]));

    store
        .append(&[
            ("a", relation("unrelate", "b", 6)),
            ("b", relation("unrelate", "a", 6)),
        ])
        .unwrap();
    assert_eq!(related(&store, "a"), Value::list(vec![]));
    assert_eq!(related(&store, "b"), Value::list(vec![]));
    // The history keeps every relation made and undone.
    assert_eq!(store.history("a").unwrap().len(), 4);
}

#[test]
fn changes_name_the_posts_written_since_a_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = store.changes_since(None);
    assert_eq!((start.seq, start.slugs), (0, None));
    store
        .append(&[("a", create("A", 1)), ("b", create("B", 2))])
        .unwrap();
    let slug = store.create_post("C", &create("C", 3), &[]).unwrap();
    let seen = store.changes_since(Some(0));
    assert_eq!(seen.seq, 3);
    assert_eq!(seen.slugs, Some(vec!["a".into(), "b".into(), slug]));
    store.append(&[("a", relation("relate", "b", 4))]).unwrap();
    let later = store.changes_since(Some(seen.seq));
    assert_eq!((later.seq, later.slugs), (4, Some(vec!["a".to_string()])));
    assert_eq!(store.changes_since(Some(4)).slugs, Some(vec![]));
    // A failed append changes nothing.
    let _ = store.append(&[("zz", relation("relate", "a", 5))]);
    assert_eq!(store.changes_since(Some(4)).seq, 4);
    // A reader further behind than the log reaches reloads everything.
    for i in 0..CHANGES_KEPT as i64 {
        store
            .append(&[(
                "a",
                op(&[("op", Value::str("edit")), ("at", Value::Int(10 + i))]),
            )])
            .unwrap();
    }
    assert_eq!(store.changes_since(Some(1)).slugs, None);
    assert_eq!(
        store.changes_since(Some(4)).slugs,
        Some(vec!["a".to_string()])
    );
}
