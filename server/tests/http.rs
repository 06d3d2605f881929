//! The server over real HTTP on 127.0.0.1 ephemeral ports, with temporary LMDB stores.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use sx_server::Config;

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    _data: tempfile::TempDir,
}

/// The apps as the build compiles them (`sx/host`, `sx/blog`), plus routes that fail on
/// purpose.
fn bundle() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["sx/host", "sx/blog"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sx"))
            .collect();
        paths.sort();
        for path in paths {
            files.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    files.push((
        "failing.sx".to_string(),
        r#"(defroute "GET" "/boom" (fn (req) (error "secret internals" 42)))
           (defroute "GET" "/spin" (fn (req) (let loop ((i 0)) (loop (+ i 1)))))
           (defroute "GET" "/fetch" (fn (req)
             (let ((r (perform {:op "http/request"
                                :url (str "http://127.0.0.1:" (get (get req :query) "port") "/health")})))
               {:status (get r :status)
                :headers {"content-type" (get (get r :headers) "content-type")}
                :body (get r :body)})))
           (defroute "GET" "/unreachable" (fn (req)
             (guard (e (else {:status 502 :body (str (error-type e) ": " (error-message e))}))
               (perform {:op "http/request" :url "http://127.0.0.1:1/"}))))
           (defroute "GET" "/nap" (fn (req) (perform {:op "sleep" :ms 300}) "rested"))"#
            .to_string(),
    ));
    sx_kernel::sxbc::compile_bundle(&files).unwrap()
}

impl Server {
    fn start(static_dir: &Path) -> Server {
        Server::with_workers(static_dir, 2)
    }

    fn with_workers(static_dir: &Path, workers: usize) -> Server {
        let data = tempfile::tempdir().unwrap();
        let config = Config {
            persist_dir: data.path().to_path_buf(),
            static_dir: static_dir.to_path_buf(),
            workers,
            ..Config::default()
        };
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                sx_server::serve_on(listener, config, std::sync::Arc::new(bundle()), async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
            _data: data,
        }
    }

    /// Sends a raw request; returns status, headers (lower-cased names) and body bytes.
    fn request(&self, raw: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response");
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let body = response[split + 4..].to_vec();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers, body)
    }

    fn get(&self, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn static_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("style.css"), "body { color: black; }\n").unwrap();
    std::fs::write(dir.path().join("app.wasm"), [0u8, 97, 115, 109, 1, 0, 0, 0]).unwrap();
    dir
}

#[test]
fn health_reports_status_kernel_domain_and_posts() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let (status, headers, body) = server.get("/health");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["kernel"], sx_kernel::KERNEL_VERSION);
    assert_eq!(json["domain"], "blog");
    assert!(
        json["posts"].as_u64().unwrap() >= 3,
        "the fresh store is seeded"
    );
}

#[test]
fn static_files_are_byte_exact_typed_and_cacheable() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let (status, headers, body) = server.get("/static/app.wasm");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/wasm"));
    assert_eq!(body, vec![0u8, 97, 115, 109, 1, 0, 0, 0]);
    let (status, headers, body) = server.get("/static/style.css");
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("text/css"));
    assert_eq!(body, b"body { color: black; }\n");
    let modified = header(&headers, "last-modified")
        .expect("last-modified")
        .to_string();
    let (status, _, body) = server.request(&format!(
        "GET /static/style.css HTTP/1.1\r\nHost: localhost\r\nIf-Modified-Since: {modified}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(status, 304);
    assert!(body.is_empty());
}

#[test]
fn traversal_in_every_spelling_is_a_404() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    for path in [
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/%2e%2e%2fCargo.toml",
        "/static/..%2fCargo.toml",
        "/static/..%5cCargo.toml",
        "/static/..\\Cargo.toml",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/style.css%00.png",
        "/static/../../../../etc/passwd",
    ] {
        let (status, _, body) = server.get(path);
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert!(
            !String::from_utf8_lossy(&body).contains("root:"),
            "{path} leaked a file"
        );
    }
}

#[test]
fn unknown_routes_get_the_404_page() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let (status, headers, body) = server.get("/no/such/page");
    assert_eq!(status, 404);
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&body).contains("Not found"));
}

#[test]
fn oversized_bodies_are_refused_with_413() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let body = "x".repeat(sx_server::http::BODY_LIMIT + 10);
    let (status, _, _) = server.request(&format!(
        "POST /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(status, 413);
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[test]
fn the_index_lists_published_posts_in_the_shell() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let (status, headers, body) = server.get("/");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "vary"), Some("SX-Request, Accept"));
    let page = text(&body);
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.contains("<main id=\"content\" sx-boost>"), "{page}");
    assert!(page.contains("<title>Posts · SX blog</title>"), "{page}");
    assert!(page.contains("href=\"/welcome/\""), "{page}");
}

#[test]
fn a_page_answers_as_full_html_html_fragment_and_sx_fragment() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let (status, headers, full) = server.get("/welcome/");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "vary"), Some("SX-Request, Accept"));
    let full = text(&full);
    assert!(full.contains("<h1>Welcome to SX</h1>"));

    let (status, headers, fragment) = server.request(
        "GET /welcome/ HTTP/1.1\r\nHost: localhost\r\nSX-Request: true\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "vary"), Some("SX-Request, Accept"));
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(header(&headers, "sx-title"), Some("Welcome to SX"));
    let fragment = text(&fragment);
    assert!(
        fragment.starts_with("<article class=\"post\">"),
        "{fragment}"
    );
    assert!(!fragment.contains("<html"), "a fragment is not a page");
    assert!(
        full.contains(&fragment),
        "the fragment is exactly the page's #content"
    );

    let (status, headers, wire) = server.request(
        "GET /welcome/ HTTP/1.1\r\nHost: localhost\r\nSX-Request: true\r\nAccept: text/sx\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("text/sx"));
    assert_eq!(header(&headers, "vary"), Some("SX-Request, Accept"));
    let wire = text(&wire);
    let tree = sx_kernel::reader::read_one(&wire).expect("the wire form reads back");
    assert_eq!(
        sx_kernel::html::render(&tree).unwrap(),
        fragment,
        "wire and HTML agree"
    );
}

#[test]
fn an_unknown_slug_is_a_404_page() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let (status, _, body) = server.get("/no-such-post/");
    assert_eq!(status, 404);
    let page = text(&body);
    assert!(page.contains("Not found"), "{page}");
    assert!(
        page.contains("<main id=\"content\" sx-boost>"),
        "the 404 page is a real page"
    );
}

#[test]
fn the_feed_is_json_feed_1_1() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let (status, headers, body) = server.get("/feed");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/feed+json")
    );
    let feed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(feed["version"], "https://jsonfeed.org/version/1.1");
    assert!(feed["title"].is_string());
    let items = feed["items"].as_array().unwrap();
    assert!(items.len() >= 3);
    for item in items {
        assert!(item["id"].is_string());
        assert!(item["url"].as_str().unwrap().starts_with("http://"));
        assert!(item["content_text"].is_string() || item["content_html"].is_string());
    }
}

#[test]
fn a_failing_handler_is_a_500_page_without_internals() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let (status, _, body) = server.get("/boom");
    assert_eq!(status, 500);
    let page = text(&body);
    assert!(!page.contains("secret internals"), "{page}");
    assert!(!page.contains("failing.sx"), "{page}");
}

#[test]
fn a_handler_out_of_fuel_is_a_503() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let (status, _, _) = server.get("/spin");
    assert_eq!(status, 503);
}

#[test]
fn a_handler_awaits_outgoing_http_without_blocking_its_thread() {
    // One worker thread: the handler's request to this same server can only be answered if
    // the worker serves it while the handler waits.
    let dir = static_dir();
    let server = Server::with_workers(dir.path(), 1);
    let (status, headers, body) = server.get(&format!("/fetch?port={}", server.addr.port()));
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "ok");
}

#[test]
fn a_failed_outgoing_request_is_an_error_the_handler_can_catch() {
    let dir = static_dir();
    let server = Server::start(dir.path());
    let (status, _, body) = server.get("/unreachable");
    assert_eq!(status, 502);
    let body = text(&body);
    assert!(body.starts_with("http-error: request failed"), "{body}");
}

#[test]
fn a_handler_can_sleep() {
    let dir = static_dir();
    let server = Server::start(dir.path());
    let (status, _, body) = server.get("/nap");
    assert_eq!(status, 200);
    assert!(text(&body).contains("rested"));
}
