//! The store's tests. Each body in `on_both_backends!` runs twice: against real LMDB in a
//! temporary directory and against a real PostgreSQL server started for the test.

use super::*;
use sx_kernel::value::{Dict, Key};

#[path = "../../tests/support/postgres.rs"]
mod support;

/// Where a test's store lives; `open` may be called again to reopen it.
enum Fixture {
    Lmdb(tempfile::TempDir),
    Postgres(support::TestPostgres),
}

impl Fixture {
    fn lmdb() -> Fixture {
        Fixture::Lmdb(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Fixture {
        Fixture::Postgres(support::TestPostgres::start())
    }

    fn open(&self) -> Store {
        match self {
            Fixture::Lmdb(dir) => Store::open(dir.path()).unwrap(),
            Fixture::Postgres(pg) => Store::connect(&pg.url(), 4).unwrap(),
        }
    }

    /// The store as a node named `node` whose claims last `lease_ms`.
    fn open_as(&self, node: &str, lease_ms: i64) -> Store {
        self.open().with_claims(Claims {
            node: node.into(),
            lease_ms,
        })
    }
}

/// Defines each test once per backend: `lmdb::name` and `postgres::name`.
macro_rules! on_both_backends {
    ($(fn $name:ident($fx:ident: &Fixture) $body:block)*) => {
        $(fn $name($fx: &Fixture) $body)*

        mod lmdb {
            $(#[test]
            fn $name() {
                super::$name(&super::Fixture::lmdb())
            })*
        }

        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(&super::Fixture::postgres())
            })*
        }
    };
}

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

fn activity(id: &str) -> Value {
    op(&[
        ("id", Value::str(id)),
        ("type", Value::str("note")),
        ("actor", Value::str("http://me.example")),
    ])
}

fn create(title: &str, at: i64) -> Value {
    op(&[
        ("op", Value::str("create")),
        ("title", Value::str(title)),
        ("at", Value::Int(at)),
    ])
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

on_both_backends! {
fn due_flows_and_deliveries_are_found_soonest_first(fx: &Fixture) {
    let store = fx.open();
    for (id, due) in [("late", 300), ("early", 100), ("future", 900)] {
        let instance = op(&[("id", Value::str(id)), ("due", Value::Int(due))]);
        store.flow_start(&instance).unwrap();
    }
    let (ids, next) = store.flow_due(500, 10).unwrap();
    assert_eq!(ids, vec!["early".to_string(), "late".to_string()]);
    assert_eq!(next, Some(900));
    let (ids, next) = store.flow_due(500, 1).unwrap();
    assert_eq!((ids, next), (vec!["early".to_string()], Some(300)));
    store.follow("http://peer.example").unwrap();
    store.emit(&activity("x1"), &[], 100).unwrap();
    assert_eq!(store.deliveries_due(99, 10).unwrap().len(), 0);
    let due = store.deliveries_due(100, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].peer, "http://peer.example");
}

// A delivery skipped because its peer was unavailable, while the peer answered again in
// the meantime, is due at once rather than after the long wait for an unavailable peer.
fn a_delivery_skipped_while_its_peer_came_back_is_due_at_once(fx: &Fixture) {
    let store = fx.open();
    let peer = "http://peer.example";
    store.follow(peer).unwrap();
    store.peer_seen(peer, false, Some("gave up"), 50).unwrap();
    store.emit(&activity("x1"), &[], 100).unwrap();
    let due = store.deliveries_due(100, 10).unwrap();
    assert!(store.delivery_claim(&due[0], 100).unwrap());
    assert!(store.peer_unavailable(peer).unwrap());
    // The peer answers while the attempt that skipped it is in flight.
    store.peer_seen(peer, true, None, 150).unwrap();
    let waiting = |due| DeliveryOutcome::Waiting {
        due,
        error: "unavailable".into(),
    };
    store
        .delivery_outcome(&due[0].key, waiting(1_000_000), 160)
        .unwrap();
    let again = store.deliveries_due(160, 10).unwrap();
    assert_eq!(again.len(), 1, "due at once");
    // Still unavailable: it waits until `due`.
    store.peer_seen(peer, false, Some("gave up"), 170).unwrap();
    assert!(store.delivery_claim(&again[0], 170).unwrap());
    store
        .delivery_outcome(&again[0].key, waiting(1_000_000), 180)
        .unwrap();
    assert!(store.deliveries_due(999_999, 10).unwrap().is_empty());
    assert_eq!(store.deliveries_due(1_000_000, 10).unwrap().len(), 1);
}

fn concurrent_creates_of_one_title_get_distinct_slugs(fx: &Fixture) {
    // On PostgreSQL, two stores: two nodes' pools (LMDB allows one environment per process).
    let stores: Vec<_> = match fx {
        Fixture::Lmdb(_) => vec![std::sync::Arc::new(fx.open())],
        Fixture::Postgres(_) => vec![std::sync::Arc::new(fx.open()), std::sync::Arc::new(fx.open())],
    };
    let store = stores[0].clone();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = stores[t % stores.len()].clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|i| store.create_post("Same", &create("Same", t as i64 * 10 + i), &[]))
                    .collect::<Result<Vec<_>>>()
                    .unwrap()
            })
        })
        .collect();
    let mut slugs: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    slugs.sort();
    slugs.dedup();
    assert_eq!(slugs.len(), 20);
    assert_eq!(store.posts().unwrap().len(), 20);
}

fn a_post_is_the_fold_of_its_stream_and_survives_reopening(fx: &Fixture) {
    {
        let store = fx.open();
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
    let store = fx.open();
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


fn writes_that_belong_together_commit_together_or_not_at_all(fx: &Fixture) {
    let store = fx.open();
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


fn invalid_ops_are_refused_with_a_reason(fx: &Fixture) {
    let store = fx.open();
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


fn posts_list_newest_first(fx: &Fixture) {
    let store = fx.open();
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


fn seeding_is_idempotent_and_includes_welcome(fx: &Fixture) {
    let store = fx.open();
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


fn a_damaged_record_is_an_error_not_a_panic(fx: &Fixture) {
    let store = fx.open();
    store.put_raw(Table::Posts, "broken", "(unclosed").unwrap();
    assert!(matches!(store.post("broken"), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.posts(), Err(StoreError::Corrupt(_))));
}


fn a_decode_cache_never_serves_a_stale_post(fx: &Fixture) {
    let store = fx.open();
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


fn keys_lmdb_cannot_hold_name_nothing(fx: &Fixture) {
    let store = fx.open();
    let long = "x".repeat(600);
    for key in ["", long.as_str()] {
        assert_eq!(store.post(key).unwrap(), None);
        assert_eq!(store.user(key).unwrap(), None);
    }
}


fn expired_sessions_are_swept_and_live_ones_kept(fx: &Fixture) {
    let store = fx.open();
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


fn relations_are_ops_on_both_posts_committed_together(fx: &Fixture) {
    let store = fx.open();
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


fn changes_name_the_posts_written_since_a_sequence_number(fx: &Fixture) {
    let store = fx.open();
    let start = store.changes_since(None).unwrap();
    assert_eq!((start.seq, start.slugs), (0, None));
    store
        .append(&[("a", create("A", 1)), ("b", create("B", 2))])
        .unwrap();
    let slug = store.create_post("C", &create("C", 3), &[]).unwrap();
    let seen = store.changes_since(Some(0)).unwrap();
    assert_eq!(seen.seq, 3);
    assert_eq!(seen.slugs, Some(vec!["a".into(), "b".into(), slug]));
    store.append(&[("a", relation("relate", "b", 4))]).unwrap();
    let later = store.changes_since(Some(seen.seq)).unwrap();
    assert_eq!((later.seq, later.slugs), (4, Some(vec!["a".to_string()])));
    assert_eq!(store.changes_since(Some(4)).unwrap().slugs, Some(vec![]));
    // A failed append changes nothing.
    let _ = store.append(&[("zz", relation("relate", "a", 5))]);
    assert_eq!(store.changes_since(Some(4)).unwrap().seq, 4);
    // A reader further behind than the log reaches reloads everything.
    for i in 0..CHANGES_KEPT as i64 {
        store
            .append(&[(
                "a",
                op(&[("op", Value::str("edit")), ("at", Value::Int(10 + i))]),
            )])
            .unwrap();
    }
    assert_eq!(store.changes_since(Some(1)).unwrap().slugs, None);
    assert_eq!(
        store.changes_since(Some(4)).unwrap().slugs,
        Some(vec!["a".to_string()])
    );
}
}

#[test]
fn another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION.to_string());
        store.put_raw(Table::Meta, "schema", "999").unwrap();
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
fn a_version_1_store_is_upgraded_in_place_and_keeps_its_posts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.seed(1_000, &samples()).unwrap();
        store.put_raw(Table::Meta, "schema", "1").unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION.to_string());
    assert!(store.post("welcome").unwrap().is_some());
    assert_eq!(store.user_count().unwrap(), 0);
}

#[test]
fn postgres_lost_is_unavailable_then_recovers() {
    let pg = support::TestPostgres::start();
    let store = Store::connect(&pg.url(), 2).unwrap();
    store.append(&[("kept", create("Kept", 1))]).unwrap();
    pg.stop();
    assert!(matches!(
        store.post("kept"),
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.append(&[("lost", create("Lost", 2))]),
        Err(StoreError::Unavailable(_))
    ));
    pg.restart();
    assert!(
        store.post("kept").unwrap().is_some(),
        "acknowledged writes survive"
    );
    assert_eq!(
        store.post("lost").unwrap(),
        None,
        "a refused write left nothing"
    );
    store.append(&[("after", create("After", 3))]).unwrap();
}

#[test]
fn postgres_unreachable_or_newer_is_refused_naming_no_password() {
    let pg = support::TestPostgres::start();
    let url = pg.url();
    let store = Store::connect(&url, 1).unwrap();
    assert_eq!(store.schema_version().unwrap(), "1");
    drop(store);
    pg.sql("INSERT INTO sx_migrations (version, name) VALUES (999, 'future')");
    match Store::connect(&url, 1) {
        Err(StoreError::Schema { found, .. }) => assert_eq!(found, "999"),
        other => panic!("a newer schema opened: {:?}", other.err()),
    }
    pg.stop();
    let with_password = url.replacen("://sx@", "://sx:hunter2@", 1);
    let err = Store::connect(&with_password, 1)
        .err()
        .expect("nothing listens");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let shown = Location::Postgres(with_password).to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// Two nodes on one PostgreSQL: what one claims the other leaves alone until the claim ends.
#[test]
fn postgres_a_claim_holds_until_released_or_its_lease_ends() {
    let fx = Fixture::postgres();
    let (a, b) = (fx.open_as("a", 60_000), fx.open_as("b", 60_000));
    for id in ["i1", "i2"] {
        let instance = op(&[("id", Value::str(id)), ("due", Value::Int(100))]);
        a.flow_start(&instance).unwrap();
    }
    assert_eq!(a.flow_due(200, 1).unwrap().0, vec!["i1".to_string()]);
    // b skips what a holds, without counting it against its limit.
    assert_eq!(b.flow_due(200, 1).unwrap().0, vec!["i2".to_string()]);
    assert_eq!(a.flow_renew(&["i1".into()], 300).unwrap(), vec![true]);
    assert_eq!(b.flow_renew(&["i1".into()], 300).unwrap(), vec![false]);
    // A release names its own claim only.
    b.flow_release("i1").unwrap();
    assert!(b.flow_due(400, 10).unwrap().0 == vec!["i2".to_string()]);
    // a stops renewing (it died): once its lease ends, b takes i1 over.
    let taken = b.flow_due(300 + 60_001, 10).unwrap().0;
    assert_eq!(taken, vec!["i1".to_string(), "i2".to_string()]);
    assert_eq!(
        a.flow_renew(&["i1".into()], 300 + 60_002).unwrap(),
        vec![false]
    );
    a.flow_release("i1").unwrap();
    assert_eq!(
        b.flow_renew(&["i1".into()], 300 + 60_003).unwrap(),
        vec![true]
    );
}

/// A delivery is attempted by one node at a time, and the outcome of a node whose claim
/// another took over is dropped.
#[test]
fn postgres_a_delivery_is_claimed_by_one_node_at_a_time() {
    let fx = Fixture::postgres();
    let (a, b) = (fx.open_as("a", 60_000), fx.open_as("b", 60_000));
    a.follow("http://peer.example").unwrap();
    a.emit(&activity("x1"), &[], 100).unwrap();
    let due = a.deliveries_due(100, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert!(
        b.deliveries_due(200, 10).unwrap().is_empty(),
        "a is delivering it"
    );
    assert!(!b.delivery_claim(&due[0], 300).unwrap());
    // a stalls past its lease; b takes over and delivers.
    let later = 100 + 60_001;
    let taken = b.deliveries_due(later, 10).unwrap();
    assert_eq!(taken.len(), 1);
    assert!(
        !a.delivery_claim(&due[0], later).unwrap(),
        "a must not send it now"
    );
    assert!(b.delivery_claim(&taken[0], later).unwrap());
    b.delivery_outcome(&taken[0].key, DeliveryOutcome::Delivered, later)
        .unwrap();
    // Delivered and released: a's claim is gone for good, not free to take again.
    assert!(!a.delivery_claim(&due[0], later + 1).unwrap());
    // a's late failure changes nothing.
    let late = DeliveryOutcome::Retry {
        due: later + 10,
        error: "timed out".into(),
    };
    a.delivery_outcome(&due[0].key, late, later + 1).unwrap();
    let (_, deliveries) = &a.activities(1).unwrap()[0];
    assert_eq!(get(&deliveries[0], "status"), Value::str("delivered"));
    assert_eq!(get(&deliveries[0], "attempts"), Value::Int(1));
    assert!(a.deliveries_due(i64::MAX / 2, 10).unwrap().is_empty());
}

/// A panic inside a transaction gives its connection back (as broken): the pool of one
/// still serves the next transaction, and nothing of the panicking one was written.
#[test]
fn postgres_a_panic_in_a_transaction_leaks_no_connection() {
    let pg = support::TestPostgres::start();
    let store = Store::connect(&pg.url(), 1).unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.write(|txn| -> Result<()> {
            txn.put(Table::AppData, "half", "1")?;
            panic!("a bug in a transaction")
        })
    }));
    assert!(panicked.is_err());
    store.data_put("after", &Value::Int(2)).unwrap();
    assert_eq!(store.data_get("half").unwrap(), None);
    assert_eq!(store.data_get("after").unwrap(), Some(Value::Int(2)));
}
