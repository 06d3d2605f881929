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
    /// Starts `sx ARGS --port P --data DATA` with `env` on a free port, and waits for
    /// `/health`. A port another test took meanwhile (it was free a moment ago) is retried
    /// with another.
    pub fn start(args: &[&str], data: &Path, env: &[(&str, &str)]) -> Server {
        for _ in 0..4 {
            if let Ok(server) = Server::try_start(free_port(), args, data, env) {
                return server;
            }
        }
        Server::start_on(free_port(), args, data, env)
    }

    /// `start` on a given port (a restart keeps its address).
    pub fn start_on(port: u16, args: &[&str], data: &Path, env: &[(&str, &str)]) -> Server {
        Server::try_start(port, args, data, env).unwrap_or_else(|log| panic!("{log}"))
    }

    /// Starts the server and waits until it says it listens on `port` (so that `/health`
    /// answers from this process, not from another test's on a port both picked) and
    /// `/health` answers; else its log.
    fn try_start(
        port: u16,
        args: &[&str],
        data: &Path,
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sx"))
            .args(args)
            .args(["--port", &port.to_string(), "--data"])
            .arg(data)
            .env(
                "SX_STATIC_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/static"),
            )
            .env("SX_ADMIN_USER", "admin")
            .env("SX_ADMIN_PASSWORD", "admin-password-1")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sx starts");
        // Read the log on a thread (to its end, so the server never blocks writing it).
        let stderr = child.stderr.take().expect("piped");
        let (listening, told) = std::sync::mpsc::channel();
        let mark = format!(" on http://127.0.0.1:{port}");
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut log = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains(&mark) {
                    let _ = listening.send(Ok(()));
                }
                log.push_str(&line);
                log.push('\n');
            }
            let _ = listening.send(Err(log));
        });
        match told.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => {
                let _ = child.wait();
                return Err(format!("sx {args:?} on port {port} stopped:\n{log}"));
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("sx {args:?} on port {port} did not start in 20 s"));
            }
        }
        let server = Server { port, child };
        wait_for(Duration::from_secs(20), || {
            matches!(request(port, "GET", "/health", &[], ""), Some((200, _)))
        });
        Ok(server)
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
    exchange(port, method, path, headers, body).map(|(status, _, body)| (status, body))
}

/// `request`, with the response's head (status line and headers) as well.
pub fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String, String)> {
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
    Some((status, head.to_string(), body))
}

/// The first value of header `name` in a response head.
pub fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
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

/// Milliseconds → "2026-12-01T09:00:00Z" (Hinnant's days → civil), as the blog's forms read
/// a time.
pub fn iso(ms: i64) -> String {
    let (days, secs) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000) / 1000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
