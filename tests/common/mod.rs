//! What the process tests share: `sx serve` (or `sx kernel`) as a child process on an
//! ephemeral port, and plain HTTP/1.1 over a socket.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `sx` server; killed when dropped.
pub struct Server {
    pub port: u16,
    child: Child,
}

impl Server {
    /// Starts `sx ARGS --port P --data DATA` with `env`, and waits for `/health`.
    pub fn start(args: &[&str], data: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_on(free_port(), args, data, env)
    }

    /// `start` on a given port (a restart keeps its address).
    pub fn start_on(port: u16, args: &[&str], data: &Path, env: &[(&str, &str)]) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_sx"))
            .args(args)
            .args(["--port", &port.to_string(), "--data"])
            .arg(data)
            .env(
                "SX_STATIC_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/static"),
            )
            .env("SX_ADMIN_USER", "admin")
            .env("SX_ADMIN_PASSWORD", "admin-password-1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sx starts");
        let server = Server { port, child };
        wait_for(Duration::from_secs(20), || {
            matches!(request(port, "GET", "/health", &[], ""), Some((200, _)))
        });
        server
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` every 25 ms until it holds; panics after `limit`.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting after {limit:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// One HTTP/1.1 exchange: the status and the body (`None` when the server is not there).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    // A server may answer (413) and close before reading a large body: read the answer even
    // when the write could not finish.
    let _ = stream.write_all(raw.as_bytes());
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Runs `sx ARGS` on the store in `data`; returns its standard output.
pub fn sx(data: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(args)
        .env("SX_PERSIST_DIR", data)
        .output()
        .expect("sx runs");
    assert!(
        out.status.success(),
        "sx {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new API token for the admin (whose grants are `*`).
pub fn admin_token(data: &Path) -> String {
    let out = sx(data, &["token", "create", "admin"]);
    out.lines().last().unwrap_or_default().trim().to_string()
}
