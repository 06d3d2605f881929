//! Several `sx serve` nodes on one PostgreSQL (started by each test in a temp directory):
//! a write on one is read on another at once, a session made on one is valid on all, slugs
//! stay unique under concurrent creates, timers and deliveries happen once with every node
//! running and are taken over when a node is killed, a database outage answers 503 and
//! recovers without losing an acknowledged write, and a database unreachable at start
//! stops the node naming the URL without its password.

mod common;

#[path = "../server/tests/support/postgres.rs"]
mod postgres;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{exchange, free_port, header, iso, request, wait_for, Server};
use postgres::TestPostgres;

const SECRET: &str = "a-shared-federation-secret";
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// A node of the site in `pg`, with short timers so that the tests run in seconds.
fn node(pg: &TestPostgres, dir: &Path, name: &str) -> Server {
    node_with(pg, dir, name, &[])
}

/// `node`, with more variables (later ones win).
fn node_with(pg: &TestPostgres, dir: &Path, name: &str, extra: &[(&str, &str)]) -> Server {
    let url = pg.url();
    let mut env = vec![
        ("SX_DATABASE_URL", url.as_str()),
        ("SX_FED_SECRET", SECRET),
        ("SX_FED_TICK_MS", "100"),
        ("SX_FED_RETRY_MS", "100"),
        ("SX_LEASE_MS", "2000"),
    ];
    env.extend_from_slice(extra);
    Server::start(&["serve"], &dir.join(name), &env)
}

/// `sx ARGS` against the database (the account commands).
fn sx(pg: &TestPostgres, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(args)
        .env("SX_DATABASE_URL", pg.url())
        .output()
        .expect("sx runs")
}

/// A new API token for the admin the nodes create from SX_ADMIN_USER (grants `*`).
fn admin_bearer(pg: &TestPostgres) -> String {
    let out = sx(pg, &["token", "create", "admin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("Bearer {}", String::from_utf8_lossy(&out.stdout).trim())
}

/// Creates a post with a form POST; the slug it got (from the redirect), or the status.
fn create(port: u16, auth: &str, form: &str) -> Result<String, u16> {
    match exchange(port, "POST", "/new", &[("Authorization", auth), FORM], form) {
        Some((303, head, _)) => Ok(header(&head, "location")
            .expect("a redirect")
            .trim_matches('/')
            .to_string()),
        Some((status, _, _)) => Err(status),
        None => Err(0),
    }
}

fn status(port: u16, path: &str, headers: &[(&str, &str)]) -> u16 {
    request(port, "GET", path, headers, "").map_or(0, |(status, _)| status)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn two_nodes_share_posts_sessions_and_unique_slugs() {
    let pg = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(&pg, dir.path(), "a"), node(&pg, dir.path(), "b"));
    let auth = admin_bearer(&pg);

    // B's workers derive the tag index from the posts they have seen.
    for _ in 0..8 {
        assert_eq!(status(b.port, "/tags", &[]), 200);
    }
    // B keeps its index page for visitors who are not signed in ...
    let cached = || {
        let (code, head, page) = exchange(b.port, "GET", "/", &[], "").unwrap();
        assert_eq!(code, 200);
        (header(&head, "x-sx-cache").map(str::to_string), page)
    };
    cached();
    assert_eq!(cached().0.as_deref(), Some("hit"));
    // Written through A, read through B at once — the post, and what B derived from posts
    // (every worker: each checks the database's change log before answering).
    let form = "title=Shared&body=From+A&tags=zebra&intent=publish";
    let slug = create(a.port, &auth, form).unwrap();
    // ... and no longer once A has written a post.
    let (kept, index) = cached();
    assert_eq!(kept.as_deref(), Some("miss"));
    assert!(index.contains(&format!("/{slug}/")), "{index}");
    let (code, page) = request(b.port, "GET", &format!("/{slug}/"), &[], "").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("From A"), "{page}");
    for _ in 0..8 {
        assert_eq!(status(b.port, "/tags/zebra", &[]), 200);
    }

    // A session made on A is valid on B.
    let login = "username=admin&password=admin-password-1&next=%2Fnew";
    let (code, head, _) = exchange(a.port, "POST", "/login", &[FORM], login).unwrap();
    assert_eq!(code, 303);
    let cookie = header(&head, "set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert_eq!(status(b.port, "/new", &[("Cookie", cookie)]), 200);
    assert_eq!(
        status(b.port, "/new", &[]),
        401,
        "without it: the login page"
    );

    // 100 creates of one title, half through each node, at once: 100 distinct slugs.
    let ports = [a.port, b.port];
    let writers: Vec<_> = (0..10)
        .map(|w| {
            let auth = auth.clone();
            let port = ports[w % 2];
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| create(port, &auth, "title=Same+title&body=x").unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let slugs: HashSet<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(slugs.len(), 100, "every create got its own slug");
    for slug in &slugs {
        let path = format!("/{slug}/");
        assert_eq!(status(b.port, &path, &[("Authorization", &auth)]), 200);
    }
}

/// An HTTP server that answers every request 202 after `delay` and keeps the bodies POSTed
/// to /inbox.
fn follower(delay: Duration) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            let body = loop {
                let Ok(n) = stream.read(&mut buf) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = header(head, "content-length")
                        .and_then(|l| l.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        break Some((head.to_string(), body.to_string()));
                    }
                }
            };
            if let Some((head, body)) = body {
                if head.starts_with("POST /inbox") {
                    std::thread::sleep(delay);
                    kept.lock().unwrap().push(body);
                }
            }
            let _ = stream.write_all(
                b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (port, bodies)
}

fn signed_inbox(port: u16, body: &str) -> u16 {
    use hmac::{Hmac, Mac};
    let timestamp = (now_ms() / 1000).to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let headers = [
        ("Content-Type", "text/sx"),
        ("SX-Fed-Timestamp", timestamp.as_str()),
        ("SX-Fed-Signature", signature.as_str()),
    ];
    request(port, "POST", "/inbox", &headers, body).unwrap().0
}

#[test]
fn with_two_nodes_delivering_a_follower_gets_each_activity_exactly_once() {
    let pg = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    // A slow follower and short claims: delivering the backlog takes several leases, so a
    // node that kept its claims only from the batch's start would be overtaken.
    let short = [("SX_LEASE_MS", "1000")];
    let a = node_with(&pg, dir.path(), "a", &short);
    let b = node_with(&pg, dir.path(), "b", &short);
    let auth = admin_bearer(&pg);
    let (port, inbox) = follower(Duration::from_millis(150));
    let follow = format!("{{:id \"f1\" :type \"follow\" :actor \"http://127.0.0.1:{port}\"}}");
    assert_eq!(signed_inbox(a.port, &follow), 202);

    let published = 16;
    for i in 0..published {
        let node = if i % 2 == 0 { &a } else { &b };
        let form = format!("title=News+{i}&body=x&intent=publish");
        create(node.port, &auth, &form).unwrap();
    }
    wait_for(Duration::from_secs(30), || {
        inbox.lock().unwrap().len() >= published
    });
    // Both nodes keep ticking: time for any second delivery to show.
    std::thread::sleep(Duration::from_millis(1000));
    let bodies = inbox.lock().unwrap().clone();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for body in &bodies {
        let id = body
            .split(":id \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no :id in {body}"));
        *by_id.entry(id.to_string()).or_default() += 1;
    }
    assert_eq!(by_id.len(), published, "{bodies:?}");
    assert!(by_id.values().all(|n| *n == 1), "{by_id:?}");
}

/// The flow instances as `/flows` lists them (JSON).
fn flows(port: u16, auth: &str) -> Vec<serde_json::Value> {
    let headers = [("Authorization", auth), ("Accept", "application/json")];
    let (_, body) = request(port, "GET", "/flows?limit=100", &headers, "").unwrap();
    serde_json::from_str::<serde_json::Value>(&body)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_post_scheduled_on_a_killed_node_is_published_once_by_another() {
    let pg = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(&pg, dir.path(), "a"), node(&pg, dir.path(), "b"));
    let auth = admin_bearer(&pg);
    // Whole seconds: the time is written to the second.
    let at = (now_ms() / 1000 + 2) * 1000;
    let form = format!("title=Later&body=Soon&publish_at={}", iso(at));
    let slug = create(a.port, &auth, &form).unwrap();
    // Others scheduled through both nodes while both run: each published once too.
    let mut scheduled = vec![slug.clone()];
    for i in 0..4 {
        let port = if i % 2 == 0 { a.port } else { b.port };
        let form = format!("title=Also+later+{i}&body=Soon&publish_at={}", iso(at));
        scheduled.push(create(port, &auth, &form).unwrap());
    }
    assert_eq!(
        status(b.port, &format!("/{slug}/"), &[]),
        404,
        "a draft until then"
    );
    a.kill();
    let runs = published_once(b.port, &auth, &scheduled);
    assert_eq!(runs.len(), scheduled.len());
}

/// Waits until every post of `slugs` is public and every flow is done; checks that each
/// flow moved once per step (wait, then publish) and answers the flows.
fn published_once(port: u16, auth: &str, slugs: &[String]) -> Vec<serde_json::Value> {
    for slug in slugs {
        let path = format!("/{slug}/");
        wait_for(Duration::from_secs(15), || status(port, &path, &[]) == 200);
    }
    wait_for(Duration::from_secs(10), || {
        flows(port, auth).iter().all(|f| f["status"] == "done")
    });
    let runs = flows(port, auth);
    for run in &runs {
        let steps = run["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2, "wait, then publish, once: {run}");
        assert_eq!(steps[1]["result"], "published", "{run}");
    }
    runs
}

#[test]
fn scheduled_posts_publish_once_with_both_nodes_running() {
    let pg = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(&pg, dir.path(), "a"), node(&pg, dir.path(), "b"));
    let auth = admin_bearer(&pg);
    let at = (now_ms() / 1000 + 2) * 1000;
    let slugs: Vec<String> = (0..6)
        .map(|i| {
            let port = if i % 2 == 0 { a.port } else { b.port };
            let form = format!("title=Together+{i}&body=Soon&publish_at={}", iso(at));
            create(port, &auth, &form).unwrap()
        })
        .collect();
    // Both runners polled the same timers: each instance moved once per step.
    published_once(a.port, &auth, &slugs);
}

#[test]
fn a_database_outage_answers_503_then_recovers_losing_no_acknowledged_write() {
    let pg = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(&pg, dir.path(), "a"), node(&pg, dir.path(), "b"));
    let auth = admin_bearer(&pg);
    let ports = [a.port, b.port];
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (auth, stop) = (auth.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut acknowledged, mut statuses) = (Vec::new(), Vec::new());
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let form = format!("title=Load+{w}+{i}&body=x&intent=publish");
                    match create(ports[w], &auth, &form) {
                        Ok(slug) => acknowledged.push(slug),
                        Err(status) => statuses.push(status),
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                (acknowledged, statuses)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    pg.stop();
    wait_for(Duration::from_secs(10), || status(a.port, "/", &[]) == 503);
    assert_eq!(status(b.port, "/health", &[]), 503);
    std::thread::sleep(Duration::from_millis(500));
    pg.restart();
    wait_for(Duration::from_secs(15), || {
        status(a.port, "/", &[]) == 200 && status(b.port, "/", &[]) == 200
    });
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for writer in writers {
        let (ok, statuses) = writer.join().unwrap();
        acknowledged.extend(ok);
        refused.extend(statuses);
    }
    assert!(!refused.is_empty(), "writes were refused during the outage");
    assert!(
        refused.iter().all(|s| *s == 503),
        "refused with 503, not {refused:?}"
    );
    let last = create(a.port, &auth, "title=After&body=x").unwrap();
    assert!(!last.is_empty(), "writes work again");
    for slug in &acknowledged {
        assert_eq!(
            status(b.port, &format!("/{slug}/"), &[]),
            200,
            "{slug} was lost"
        );
    }
}

#[test]
fn a_node_whose_database_is_unreachable_exits_1_naming_it_without_the_password() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(["serve", "--port", &free_port().to_string(), "--data"])
        .arg(dir.path())
        .env(
            "SX_DATABASE_URL",
            format!("postgres://sx:hunter2@127.0.0.1:{port}/sx"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("postgres://sx@127.0.0.1:{port}/sx")),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn sx_kernel_keeps_its_flows_in_the_database_too() {
    let pg = TestPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url();
    let token = "a-kernel-token-of-enough-length";
    let env = [
        ("SX_DATABASE_URL", url.as_str()),
        ("SX_KERNEL_TOKEN", token),
    ];
    let kernel = Server::start(&["kernel"], &dir.path().join("k"), &env);
    assert_eq!(status(kernel.port, "/health", &[]), 200);
    assert_eq!(pg.sql("SELECT max(version) FROM sx_migrations").trim(), "1");
    assert!(
        !dir.path().join("k").join("data.mdb").exists(),
        "no LMDB store was made"
    );
}
