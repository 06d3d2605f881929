//! Durable flows with `sx serve` as a real process: instances survive restarts and SIGKILL
//! without losing or repeating a recorded step, timers that fell due while the server was
//! down fire when it is back, and the /flow API keeps its contract. Effects call a counter
//! (a plain HTTP server in the test) with their idempotency key, so every run is counted.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{admin_token, iso, request, wait_for, Server};
use serde_json::{json, Value};

/// The test app: flows whose effects report to the counter at `input.counter`.
const APP: &str = r#"
(define (tick ctx name)
  (perform {:op "http/request" :method "POST"
            :url (str (get (get ctx :input) "counter") "/" (get ctx :key))})
  (perform {:op "sleep" :ms (get (get ctx :input) "pause" 0)})
  name)

(defflow steps
  (effect one (fn (ctx) (tick ctx "one")))
  (effect two (fn (ctx) (tick ctx "two")))
  (each items (fn (ctx) (list 1 2 3))
    (effect three (fn (ctx) (tick ctx (str "three " (get ctx :item))))))
  (effect four (fn (ctx) (tick ctx "four")))
  (effect five (fn (ctx) (tick ctx "five"))))

(defflow flaky
  (effect boom (fn (ctx) (tick ctx "boom") (raise "the mail server said no"))
    :retry 2 :backoff-ms 50))

(defflow waits
  (suspend approval :timeout-ms 300 :on-timeout ((effect expired (fn (ctx) "expired"))))
  (effect after (fn (ctx) "after")))

(defflow approve
  (suspend approval)
  (effect after (fn (ctx) (get (get ctx :results) :approval))))

(defflow nap
  (sleep nap :for-ms 1500)
  (effect woke (fn (ctx) "woke")))

(defroute "GET" "/" (fn (req) (p "flows")))
"#;

/// Counts requests by path (each effect's idempotency key).
#[derive(Clone, Default)]
struct Counter {
    seen: Arc<Mutex<HashMap<String, usize>>>,
    url: String,
}

impl Counter {
    fn start() -> Counter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counter = Counter {
            seen: Arc::default(),
            url,
        };
        let seen = counter.seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                if let Some(path) = head.split_whitespace().nth(1) {
                    *seen.lock().unwrap().entry(path.to_string()).or_default() += 1;
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        counter
    }

    fn counts(&self) -> HashMap<String, usize> {
        self.seen.lock().unwrap().clone()
    }

    fn total(&self) -> usize {
        self.counts().values().sum()
    }
}

struct Site {
    dir: tempfile::TempDir,
    token: Option<String>,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/app.sx"), APP).unwrap();
        Site { dir, token: None }
    }

    fn serve(&mut self) -> Server {
        let app = self.dir.path().join("app");
        let data = self.dir.path().join("data");
        let server = Server::start(&["serve", "--app", app.to_str().unwrap()], &data, &[]);
        if self.token.is_none() {
            self.token = Some(admin_token(&data));
        }
        server
    }

    fn call(&self, server: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token.as_ref().unwrap());
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (status, text) = request(
            server.port,
            method,
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ],
            &body,
        )
        .expect("the server answers");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path} → {status}, not JSON: {text}"));
        (status, json)
    }

    fn start(&self, server: &Server, flow: &str, id: &str, input: Value) -> Value {
        let (status, instance) = self.call(
            server,
            "POST",
            &format!("/flow/start/{flow}"),
            json!({"id": id, "input": input}),
        );
        assert_eq!(status, 200, "{instance}");
        instance
    }

    fn get(&self, server: &Server, id: &str) -> Value {
        let (status, instance) = self.call(server, "GET", &format!("/flow/{id}"), Value::Null);
        assert_eq!(status, 200, "{instance}");
        instance
    }

    /// Waits until the instance has `status`; returns it.
    fn until(&self, server: &Server, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(Duration::from_secs(20), || {
                last = self.get(server, id);
                last["status"] == status
            })
        }));
        assert!(found.is_ok(), "{id} never became {status}: {last}");
        last
    }
}

fn step_nodes(instance: &Value) -> Vec<String> {
    instance["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_flow_killed_at_any_point_finishes_without_repeating_a_recorded_step() {
    let counter = Counter::start();
    let mut site = Site::new();
    let mut server = site.serve();
    let input = json!({"counter": counter.url, "pause": 150});
    site.start(&server, "steps", "run-1", input.clone());
    // SIGKILL three times while the flow works (each effect takes ~150 ms).
    let mut kills = 0;
    for wait in [200, 330, 470] {
        std::thread::sleep(Duration::from_millis(wait));
        server.kill();
        kills += 1;
        server = site.serve();
    }
    let done = site.until(&server, "run-1", "done");
    assert_eq!(
        step_nodes(&done),
        ["one", "two", "items", "three", "three", "three", "four", "five"]
    );
    let counts = counter.counts();
    // Seven effects ran; only one interrupted by each kill may have run twice, and a repeat
    // carried the same idempotency key (so the effect could have recognised it).
    assert_eq!(counts.len(), 7, "{counts:?}");
    assert!(counter.total() <= 7 + kills, "{counts:?}");
    assert!(counts.values().all(|n| *n <= 2), "{counts:?}");
    // Starting the same id again is the same instance, and runs nothing.
    let again = site.start(&server, "steps", "run-1", input);
    assert_eq!(again["status"], "done");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(counter.counts(), counts);
    let (_, list) = site.call(&server, "GET", "/flows", Value::Null);
    let ids: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].clone())
        .collect();
    assert_eq!(ids, [json!("run-1")]);
}

#[test]
fn failing_nodes_retry_with_backoff_then_fail_with_the_error_shown() {
    let counter = Counter::start();
    let mut site = Site::new();
    let server = site.serve();
    site.start(&server, "flaky", "f", json!({"counter": counter.url}));
    let failed = site.until(&server, "f", "failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("the mail server said no"),
        "{failed}"
    );
    assert_eq!(failed["node"], "boom");
    // :retry 2 is three tries, all with the same key.
    assert_eq!(counter.counts().values().collect::<Vec<_>>(), [&3]);
}

#[test]
fn suspends_resume_across_restarts_time_out_and_cancel() {
    let mut site = Site::new();
    let server = site.serve();
    site.start(&server, "approve", "a", Value::Null);
    site.until(&server, "a", "suspended");
    site.start(&server, "approve", "b", Value::Null);
    site.until(&server, "b", "suspended");
    site.start(&server, "waits", "w", Value::Null);
    server.stop();

    let server = site.serve();
    let (status, resumed) = site.call(
        &server,
        "POST",
        "/flow/a/resume",
        json!({"payload": {"ok": true}}),
    );
    assert_eq!(status, 200, "{resumed}");
    let done = site.until(&server, "a", "done");
    assert_eq!(done["steps"][1]["result"], json!({"ok": true}));
    // Only a suspended instance resumes; only an unfinished one cancels.
    let (status, _) = site.call(&server, "POST", "/flow/a/resume", json!({}));
    assert_eq!(status, 409);
    let (status, _) = site.call(&server, "POST", "/flow/a/cancel", Value::Null);
    assert_eq!(status, 409);
    let (status, cancelled) = site.call(&server, "POST", "/flow/b/cancel", Value::Null);
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    let (status, _) = site.call(&server, "POST", "/flow/b/resume", json!({}));
    assert_eq!(status, 409);
    // The timeout fell due (during or after the restart): its branch ran.
    let timed_out = site.until(&server, "w", "done");
    assert_eq!(step_nodes(&timed_out), ["approval", "expired", "after"]);
    assert_eq!(timed_out["steps"][0]["timed_out"], true);
    // Unknown flows and instances, unreadable bodies.
    let (status, _) = site.call(&server, "POST", "/flow/start/nope", json!({}));
    assert_eq!(status, 404);
    let (status, _) = site.call(&server, "GET", "/flow/nope", Value::Null);
    assert_eq!(status, 404);
    let auth = format!("Bearer {}", site.token.as_ref().unwrap());
    let (status, _) = request(
        server.port,
        "POST",
        "/flow/start/approve",
        &[("Authorization", &auth)],
        "{not json",
    )
    .unwrap();
    assert_eq!(status, 400);
    let (status, _) = request(server.port, "GET", "/flow/a", &[], "").unwrap();
    assert_eq!(status, 401);
}

#[test]
fn a_sleep_that_fell_due_while_the_server_was_down_fires_at_the_next_start() {
    let mut site = Site::new();
    let server = site.serve();
    site.start(&server, "nap", "n", Value::Null);
    site.until(&server, "n", "sleeping");
    server.kill();
    std::thread::sleep(Duration::from_millis(1600));
    let server = site.serve();
    let done = site.until(&server, "n", "done");
    assert_eq!(step_nodes(&done), ["nap", "woke"]);
}

#[test]
fn a_post_scheduled_for_when_the_server_was_down_publishes_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&["serve"], &data, &[]);
    let auth = format!("Bearer {}", admin_token(&data));
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Whole seconds: the time is written to the second.
    let at = (now / 1000 + 2) * 1000;
    let body = format!("title=Gig+night+two&body=Soon&publish_at={}", iso(at));
    let (status, _) = request(
        server.port,
        "POST",
        "/new",
        &[("Authorization", &auth), form],
        &body,
    )
    .unwrap();
    assert_eq!(status, 303);
    let page = |port| request(port, "GET", "/gig-night-two/", &[], "").unwrap().0;
    assert_eq!(
        page(server.port),
        404,
        "a scheduled post is a draft until its time"
    );
    let (_, draft) = request(
        server.port,
        "GET",
        "/gig-night-two/",
        &[("Authorization", &auth)],
        "",
    )
    .unwrap();
    assert!(
        draft.contains(&iso(at)),
        "the author sees when it will publish"
    );
    server.kill();
    // Down past the publish time.
    let late = (at - now + 500).max(0) as u64;
    std::thread::sleep(Duration::from_millis(late));
    let server = Server::start(&["serve"], &data, &[]);
    wait_for(Duration::from_secs(10), || page(server.port) == 200);
    // The flow shows what it did (its step is recorded just after the publish).
    let list = || {
        let (_, list) = request(
            server.port,
            "GET",
            "/flows",
            &[("Authorization", &auth), ("Accept", "application/json")],
            "",
        )
        .unwrap();
        serde_json::from_str::<Value>(&list).unwrap()
    };
    wait_for(Duration::from_secs(10), || list()[0]["status"] == "done");
    let run = &list()[0];
    assert_eq!(run["flow"], "blog-scheduled-publish");
    assert_eq!(run["steps"][1]["result"], "published");
}

#[test]
fn iso_times_are_written_like_the_blog_reads_them() {
    assert_eq!(iso(0), "1970-01-01T00:00:00Z");
    assert_eq!(iso(1_796_115_600_000), "2026-12-01T09:00:00Z");
}

#[test]
fn with_sx_kernel_as_a_second_process_the_newsletter_digest_waits_for_approval_and_survives_its_outage(
) {
    let dir = tempfile::tempdir().unwrap();
    let token = ("SX_KERNEL_TOKEN", "a-shared-kernel-token");
    let kernel_data = dir.path().join("kernel");
    let kernel = Server::start(&["kernel"], &kernel_data, &[token]);
    let kernel_port = kernel.port;
    let kernel_url = format!("http://127.0.0.1:{kernel_port}");
    let host_data = dir.path().join("host");
    let host = Server::start(
        &["serve"],
        &host_data,
        &[token, ("SX_KERNEL_URL", &kernel_url)],
    );
    let auth = format!("Bearer {}", admin_token(&host_data));
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let post = |port: u16, path: &str, body: &str| {
        request(port, "POST", path, &[("Authorization", &auth), form], body)
            .unwrap()
            .0
    };
    let flows = |port: u16, auth: &str| -> Value {
        let (status, list) = request(
            port,
            "GET",
            "/flows",
            &[("Authorization", auth), ("Accept", "application/json")],
            "",
        )
        .unwrap();
        assert_eq!(status, 200, "{list}");
        serde_json::from_str(&list).unwrap()
    };
    assert_eq!(
        post(
            host.port,
            "/new",
            "title=Weekly&body=One&category=newsletter"
        ),
        303
    );
    assert_eq!(post(host.port, "/weekly/publish", ""), 303);
    assert_eq!(
        post(
            host.port,
            "/weekly/edit",
            "title=Weekly&body=Two&category=newsletter"
        ),
        303
    );
    // The instance lives on the kernel; the host's /flows shows the kernel's.
    let kernel_auth = format!("Bearer {}", token.1);
    wait_for(Duration::from_secs(10), || {
        flows(kernel_port, &kernel_auth)[0]["status"] == "suspended"
    });
    let on_host = flows(host.port, &auth);
    assert_eq!(on_host[0]["flow"], "blog-digest");
    assert_eq!(on_host[0]["node"], "approval");
    let id = on_host[0]["id"].as_str().unwrap().to_string();
    let (status, _) = request(
        host.port,
        "POST",
        &format!("/flow/{id}/resume"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        "{}",
    )
    .unwrap();
    assert_eq!(status, 200);
    wait_for(Duration::from_secs(10), || {
        flows(host.port, &auth)[0]["status"] == "done"
    });
    let done = &flows(host.port, &auth)[0];
    assert_eq!(step_nodes(done), ["urgent?", "approval", "digest-sent"]);
    assert_eq!(done["steps"][2]["result"], "digest of weekly sent");
    // Without the token the kernel answers nothing.
    let (status, _) = request(
        kernel_port,
        "GET",
        "/flows",
        &[("Accept", "application/json")],
        "",
    )
    .unwrap();
    assert_eq!(status, 401);
    let (status, _) = request(
        kernel_port,
        "GET",
        "/",
        &[("Authorization", &kernel_auth)],
        "",
    )
    .unwrap();
    assert_eq!(status, 404, "the kernel serves only its flow API");

    // The kernel down: the edit still succeeds, /flows says so (no 500), and the start is
    // handed over once the kernel is back.
    kernel.kill();
    assert_eq!(
        post(
            host.port,
            "/weekly/edit",
            "title=Weekly&body=Three&category=newsletter&urgent=on"
        ),
        303
    );
    let (status, _) = request(
        host.port,
        "GET",
        "/flows",
        &[("Authorization", &auth), ("Accept", "application/json")],
        "",
    )
    .unwrap();
    assert_eq!(status, 503);
    let _kernel = Server::start_on(kernel_port, &["kernel"], &kernel_data, &[token]);
    wait_for(Duration::from_secs(15), || {
        let list = flows(host.port, &auth);
        list.as_array().unwrap().len() == 2 && list[0]["status"] == "done"
    });
    assert_eq!(
        step_nodes(&flows(host.port, &auth)[0]),
        ["urgent?", "digest-sent"]
    );
}
