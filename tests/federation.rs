//! Federation between real `sx serve` processes on 127.0.0.1 — the seed's live proofs as
//! tests: follow and publish → a signed delivery whose behaviors fire on the follower; a
//! follower down while 1 000 activities are published gets each exactly once when it is
//! back; a sender killed mid-backlog loses and repeats nothing; forged, unsigned, stale,
//! replayed and malformed activities are refused and never processed; the gig-night
//! allocation reaches the events peer; `sx peers` starts and stops its three instances.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{admin_token, free_port, request, wait_for, Server};
use serde_json::Value;

const SECRET: &str = "a-shared-federation-secret";

fn fed_env(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("SX_FED_SECRET", SECRET.to_string()),
        ("SX_FED_TICK_MS", "200".to_string()),
        ("SX_FED_RETRY_MS", "100".to_string()),
    ];
    env.extend(extra.iter().cloned());
    env
}

fn start(port: u16, data: &std::path::Path, env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_on(port, &["serve"], data, &env)
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn json(port: u16, path: &str) -> Value {
    let (status, body) =
        request(port, "GET", path, &[("Accept", "application/json")], "").expect("answers");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("GET {path}: {body}"))
}

fn rows(port: u16) -> Vec<Value> {
    json(port, "/activities?limit=5000")
        .as_array()
        .unwrap()
        .clone()
}

/// `(status, body)` of a form POST made with a Bearer token.
fn post(port: u16, token: &str, path: &str, form: &str) -> u16 {
    let auth = format!("Bearer {token}");
    request(
        port,
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form,
    )
    .expect("answers")
    .0
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// POSTs `body` to `/inbox` with the given timestamp and signature headers.
fn deliver(port: u16, body: &str, timestamp: Option<i64>, signature: Option<&str>) -> u16 {
    let ts = timestamp.map(|t| t.to_string());
    let mut headers = vec![("Content-Type", "text/sx")];
    if let Some(ts) = &ts {
        headers.push(("SX-Fed-Timestamp", ts));
    }
    if let Some(sig) = signature {
        headers.push(("SX-Fed-Signature", sig));
    }
    request(port, "POST", "/inbox", &headers, body)
        .expect("answers")
        .0
}

fn signed(port: u16, body: &str) -> u16 {
    let now = now_s();
    deliver(port, body, Some(now), Some(&signature(SECRET, now, body)))
}

/// Received rows on `port` by activity id.
fn received(port: u16) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for row in rows(port) {
        if row["direction"] == "in" {
            *seen
                .entry(row["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    seen
}

#[test]
fn a_follower_gets_each_activity_once_through_outages_and_a_killed_sender() {
    let dir = tempfile::tempdir().unwrap();
    let (a_port, b_port) = (free_port(), free_port());
    let a_env = fed_env(&[]);
    let b_env = fed_env(&[("SX_FOLLOW", url(a_port))]);
    let a = start(a_port, &dir.path().join("a"), &a_env);
    let b = start(b_port, &dir.path().join("b"), &b_env);
    let token = admin_token(&dir.path().join("a"));
    wait_for(Duration::from_secs(10), || {
        json(a_port, "/followers") == serde_json::json!([url(b_port)])
    });

    // Publish → a signed delivery → the follower's article behaviors fire.
    assert_eq!(
        post(a_port, &token, "/new", "title=Hello+peers&body=Hi"),
        303
    );
    assert_eq!(post(a_port, &token, "/hello-peers/publish", ""), 303);
    // Received first, then its behaviors run and their result is recorded.
    wait_for(Duration::from_secs(10), || {
        rows(b_port).iter().any(|r| {
            r["type"] == "publish" && r["status"] == "received" && r["result"][0].is_string()
        })
    });
    let publish = rows(b_port)
        .into_iter()
        .find(|r| r["type"] == "publish")
        .unwrap();
    assert_eq!(publish["object"]["slug"], "hello-peers");
    assert_eq!(publish["actor"], url(a_port));
    assert!(
        publish["result"][0]
            .as_str()
            .unwrap()
            .starts_with("notified: Hello peers"),
        "{publish}"
    );

    // The follower down while 1 000 activities are made; the sender killed mid-backlog.
    b.kill();
    let backlog = 1000;
    for i in 0..backlog {
        let form = format!("title=Hello+peers&body=Edit+{i}");
        assert_eq!(post(a_port, &token, "/hello-peers/edit", &form), 303);
    }
    let pending = rows(a_port)
        .iter()
        .filter(|r| r["direction"] == "out" && r["status"] == "pending")
        .count();
    assert_eq!(pending, backlog, "every update is queued for the follower");
    let b = start(b_port, &dir.path().join("b"), &b_env);
    std::thread::sleep(Duration::from_millis(150));
    a.kill();
    let _a = start(a_port, &dir.path().join("a"), &a_env);
    wait_for(Duration::from_secs(60), || {
        rows(a_port)
            .iter()
            .filter(|r| r["direction"] == "out" && r["status"] == "delivered")
            .count()
            == backlog + 1
    });
    let seen = received(b_port);
    let updates = rows(b_port)
        .iter()
        .filter(|r| r["type"] == "update")
        .count();
    assert_eq!(updates, backlog, "each update arrived");
    assert!(
        seen.values().all(|n| *n == 1),
        "and was processed once: {seen:?}"
    );
    drop(b);
}

#[test]
fn forged_unsigned_stale_replayed_and_malformed_activities_are_never_processed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = start(port, &dir.path().join("a"), &fed_env(&[]));
    let activity = |id: &str| {
        format!(
            "{{:id \"{id}\" :type \"publish\" :actor \"http://peer.example\" :object {{:slug \"x\" :title \"X\" :url \"http://peer.example/x/\"}}}}"
        )
    };
    let body = activity("ok-1");
    let now = now_s();
    // Missing, forged (wrong secret, or another body's, or not lowercase hex), stale, from
    // the future.
    let sign = |secret: &str, at: i64, text: &str| Some(signature(secret, at, text));
    let refused = [
        (None, None),
        (Some(now), None),
        (Some(now), sign("wrong", now, &body)),
        (Some(now), sign(SECRET, now, &activity("other"))),
        (Some(now - 301), sign(SECRET, now - 301, &body)),
        (Some(now + 301), sign(SECRET, now + 301, &body)),
        (
            Some(now),
            Some(signature(SECRET, now, &body).to_uppercase()),
        ),
    ];
    for (timestamp, signature) in refused {
        assert_eq!(
            deliver(port, &body, timestamp, signature.as_deref()),
            403,
            "{timestamp:?} {signature:?}"
        );
    }
    assert!(rows(port).is_empty(), "nothing refused was kept");
    // Malformed: not data, not a dict, fields missing, code (read as data, never run).
    for bad in [
        "{:id",
        "(1 2 3)",
        "{:type \"publish\" :actor \"http://p\"}",
        "{:id \"x\" :actor \"http://p\"}",
        "{:id \"x\" :type \"publish\"}",
        "{:id 1 :type \"publish\" :actor \"http://p\"}",
        "{:id \"x\" :type \"publish\" :actor \"http://p\" :object \"not a dict\"}",
    ] {
        assert_eq!(signed(port, bad), 400, "{bad}");
    }
    let code = "{:id \"code\" :type \"publish\" :actor \"http://p\" :object {:slug (perform {:op \"post/publish\" :slug \"welcome\"})}}";
    assert_eq!(signed(port, code), 202);
    // Accepted once; the same activity again (a replay) is acknowledged and dropped.
    assert_eq!(signed(port, &body), 202);
    assert_eq!(signed(port, &body), 202);
    let seen = received(port);
    assert_eq!(seen.get("ok-1"), Some(&1), "{seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Over the body limit.
    let huge = activity(&"x".repeat(1 << 20));
    assert_eq!(signed(port, &huge), 413);
}

#[test]
fn without_a_secret_the_inbox_is_closed_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let follower = free_port();
    let _server = start(port, &dir.path().join("a"), &[("SX_FOLLOW", url(follower))]);
    let body = "{:id \"1\" :type \"follow\" :actor \"http://peer.example\"}";
    assert_eq!(deliver(port, body, Some(now_s()), None), 403);
    assert_eq!(signed(port, body), 403);
    assert_eq!(json(port, "/followers"), serde_json::json!([]));
}

#[test]
fn gig_night_is_allocated_to_the_events_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let (blog_port, events_port) = (free_port(), free_port());
    let blog = start(
        blog_port,
        &dir.path().join("blog"),
        &fed_env(&[("SX_EVENTS_URL", url(events_port))]),
    );
    let events = start(
        events_port,
        &dir.path().join("events"),
        &fed_env(&[("SX_DOMAIN", "events".to_string())]),
    );
    let (status, page) = request(events.port, "GET", "/", &[], "").unwrap();
    assert_eq!(status, 200);
    assert!(
        page.contains("/calendar/main"),
        "a main calendar from the start"
    );
    let token = admin_token(&dir.path().join("blog"));
    // The sample post `gig-night` is published on a fresh blog.
    assert_eq!(
        post(blog.port, &token, "/gig-night/allocate?calendar=main", ""),
        303
    );
    wait_for(Duration::from_secs(10), || {
        let (_, calendar) = request(events.port, "GET", "/calendar/main", &[], "").unwrap();
        calendar.contains(&format!("{}/gig-night/", url(blog_port)))
    });
    let received = rows(events.port);
    assert_eq!(received[0]["type"], "allocate");
    assert_eq!(received[0]["object"]["slug"], "gig-night");
    assert_eq!(received[0]["status"], "received");
    let events_token = admin_token(&dir.path().join("events"));
    let auth = format!("Bearer {events_token}");
    wait_for(Duration::from_secs(10), || {
        let (_, page) = request(
            events.port,
            "GET",
            "/flows",
            &[("Authorization", &auth)],
            "",
        )
        .unwrap();
        page.contains("linked gig-night")
    });
    // A calendar that does not exist is refused (not 404 on the blog: it is the peer's call).
    let (status, _) = request(events.port, "GET", "/calendar/nope", &[], "").unwrap();
    assert_eq!(status, 404);
}

#[test]
fn sx_peers_starts_three_federated_instances_and_stops_them() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    // Three free ports in a row.
    let base = loop {
        let p = free_port();
        if p < 65000 && (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            break p;
        }
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(["peers", "--base-port", &base.to_string(), "--data"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.starts_with("Ctrl-C") {
            break;
        }
    }
    for i in 0..3 {
        assert!(said.contains(&url(base + i)), "{said}");
    }
    assert!(said.contains("admin"), "{said}");
    wait_for(Duration::from_secs(10), || {
        json(base, "/followers") == serde_json::json!([url(base + 1)])
    });
    let (status, page) = request(base + 2, "GET", "/", &[], "").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("Calendars"));
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    for i in 0..3 {
        assert!(
            request(base + i, "GET", "/health", &[], "").is_none(),
            "peer {i} stopped"
        );
    }
}

#[test]
fn a_delivery_past_the_give_up_time_fails_and_its_peer_waits_until_it_answers_again() {
    let dir = tempfile::tempdir().unwrap();
    let (a_port, b_port) = (free_port(), free_port());
    let a = start(
        a_port,
        &dir.path().join("a"),
        &fed_env(&[("SX_FED_GIVE_UP_S", "1".to_string())]),
    );
    let b_env = fed_env(&[("SX_FOLLOW", url(a_port))]);
    let b = start(b_port, &dir.path().join("b"), &b_env);
    let token = admin_token(&dir.path().join("a"));
    wait_for(Duration::from_secs(10), || {
        json(a_port, "/followers") == serde_json::json!([url(b_port)])
    });
    b.kill();
    assert_eq!(
        post(a.port, &token, "/welcome/edit", "title=Welcome&body=One"),
        303
    );
    wait_for(Duration::from_secs(10), || {
        rows(a_port)
            .iter()
            .any(|r| r["type"] == "update" && r["status"] == "failed")
    });
    let (_, page) = request(a_port, "GET", "/activities", &[], "").unwrap();
    assert!(page.contains("unavailable"), "{page}");
    // Back: its follow marks it available, and new activities reach it again.
    let _b = start(b_port, &dir.path().join("b"), &b_env);
    assert_eq!(
        post(a.port, &token, "/welcome/edit", "title=Welcome&body=Two"),
        303
    );
    wait_for(Duration::from_secs(10), || {
        rows(b_port)
            .iter()
            .any(|r| r["type"] == "update" && r["object"]["summary"] == "Two")
    });
    let failed = rows(a_port)
        .iter()
        .filter(|r| r["status"] == "failed")
        .count();
    assert_eq!(
        failed, 1,
        "a failed delivery stays failed (it was given up)"
    );
}
