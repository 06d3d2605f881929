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

impl Server {
    fn start(static_dir: &Path) -> Server {
        let data = tempfile::tempdir().unwrap();
        let config = Config {
            persist_dir: data.path().to_path_buf(),
            static_dir: static_dir.to_path_buf(),
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
                sx_server::serve_on(listener, config, async {
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
