//! `sx serve` as a process: it serves the blog from a fresh store, the account commands
//! (`sx user add`, `sx grant`, `sx token create`) set up an author, and a server killed with
//! SIGKILL and started again still has everything it acknowledged.

mod common;

use common::free_port;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(port: u16, data: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(["serve", "--port", &port.to_string(), "--data"])
        .arg(data)
        .env(
            "SX_STATIC_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/static"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sx serve starts")
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    exchange(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
}

fn exchange(port: u16, raw: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(raw.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn wait_until_up(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some((200, _)) = get(port, "/health") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("sx serve did not come up on port {port}");
}

fn posts(port: u16) -> u64 {
    let (_, body) = get(port, "/health").expect("health answers");
    let json: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    json["posts"].as_u64().expect("a post count")
}

/// Runs an `sx` account command on the store in `data`; returns its standard output.
fn sx(data: &std::path::Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(args)
        .env("SX_PERSIST_DIR", data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sx starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sx {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn sigkill_and_restart_lose_nothing_acknowledged() {
    let data = std::env::temp_dir().join(format!("sx-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    // An author with a token, made with the account commands (password from stdin).
    assert_eq!(
        sx(&data, &["user", "add", "bo"], "a long password\n"),
        "added user bo\n"
    );
    sx(&data, &["grant", "bo", "write"], "");
    sx(&data, &["grant", "bo", "publish"], "");
    let token = sx(&data, &["token", "create", "bo"], "").trim().to_string();
    assert!(token.starts_with("sxt_"), "{token}");

    let port = free_port();
    let mut server = start(port, &data);
    wait_until_up(port);
    let seeded = posts(port);
    assert!(seeded >= 3, "a fresh store is seeded");
    let body = "title=Acknowledged&body=Written+before+the+crash.";
    let request = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, _) = exchange(port, &request("/new", body)).unwrap();
    assert_eq!(status, 303, "the post is acknowledged");
    let (status, _) = exchange(port, &request("/acknowledged/publish", "")).unwrap();
    assert_eq!(status, 303);
    let before = posts(port);
    assert_eq!(before, seeded + 1);
    let (status, page) = get(port, "/welcome/").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("Welcome to SX"));
    server.kill().expect("SIGKILL");
    let _ = server.wait();

    let port = free_port();
    let mut server = start(port, &data);
    wait_until_up(port);
    assert_eq!(posts(port), before, "every acknowledged post survived");
    let (status, page) = get(port, "/welcome/").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("Welcome to SX"));
    let (status, page) = get(port, "/acknowledged/").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("Written before the crash."));
    let (status, css) = get(port, "/static/style.css").unwrap();
    assert_eq!(status, 200);
    assert!(css.contains("--accent"));
    server.kill().ok();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_browser_bundle_from_another_kernel_is_refused_at_start() {
    let root = std::env::temp_dir().join(format!("sx-stale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let client = root.join("static").join("client");
    std::fs::create_dir_all(&client).unwrap();
    // A wasm module whose stamp names another kernel.
    let stamp = b"sx-kernel 0.0.1 opcodes 0000000000000000";
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    let mut section = vec![8u8];
    section.extend_from_slice(b"sx-stamp");
    section.extend_from_slice(stamp);
    wasm.push(0);
    wasm.push(section.len() as u8);
    wasm.extend(section);
    std::fs::write(client.join("sx-client-0011_bg.wasm"), wasm).unwrap();
    std::fs::write(client.join("sx-client-0011.js"), "").unwrap();
    std::fs::write(
        client.join("manifest.json"),
        r#"{"script": "sx-client-0011.js", "wasm": "sx-client-0011_bg.wasm"}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(["serve", "--port", &free_port().to_string(), "--data"])
        .arg(root.join("data"))
        .env("SX_STATIC_DIR", root.join("static"))
        .output()
        .expect("sx serve runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sx-kernel 0.0.1"), "{stderr}");
    assert!(stderr.contains(&sx_kernel::sxbc::stamp()), "{stderr}");
    assert!(stderr.contains("rebuild"), "{stderr}");
    assert!(!root.join("data").exists(), "nothing was written");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn serve_from_any_directory_has_the_stylesheet_and_icon() {
    let cwd = std::env::temp_dir().join(format!("sx-anywhere-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cwd);
    std::fs::create_dir_all(&cwd).unwrap();
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(["serve", "--port", &port.to_string()])
        .current_dir(&cwd)
        .env_remove("SX_STATIC_DIR")
        .env_remove("SX_PERSIST_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sx serve starts");
    wait_until_up(port);
    let (status, css) = get(port, "/static/style.css").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        css,
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/static/style.css")).unwrap()
    );
    let (status, icon) = get(port, "/static/favicon.svg").unwrap();
    assert_eq!(status, 200);
    assert!(icon.contains("<svg"));
    let (status, page) = get(port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("/static/style.css"));
    let months = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    assert!(
        months.iter().any(|m| page.contains(&format!(" {m} 20"))),
        "dates are dates: {page}"
    );
    server.kill().ok();
    let _ = server.wait();
    assert!(
        cwd.join("data").exists(),
        "the store is ./data of the working directory"
    );
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let data = std::env::temp_dir().join(format!("sx-term-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(["serve", "--port", &port.to_string(), "--data"])
        .arg(&data)
        .env(
            "SX_STATIC_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/static"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sx serve starts");
    wait_until_up(port);
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "sx serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    let mut log = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("shutting down"), "{log}");
    let _ = std::fs::remove_dir_all(&data);
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// SECURITY.md: 500 logins at once (argon2 takes 19 MiB each) keep the server's memory
/// bounded and never make it fail; some are told to come back (503 + Retry-After).
#[test]
fn a_login_flood_keeps_memory_bounded_and_never_fails() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(["serve", "--port", &port.to_string(), "--data"])
        .arg(data.path())
        .env("SX_ADMIN_USER", "ann")
        .env("SX_ADMIN_PASSWORD", "correct horse battery")
        .env("SX_WORKERS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sx serve starts");
    wait_until_up(port);
    let body = "username=ann&password=wrong+password";
    let raw = format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let threads: Vec<_> = (0..500)
        .map(|_| {
            let raw = raw.clone();
            std::thread::spawn(move || exchange(port, &raw).map(|(status, _)| status))
        })
        .collect();
    let statuses: Vec<Option<u16>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let peak_mb = peak_rss_kib(server.id()) / 1024;
    server.kill().unwrap();
    let _ = server.wait();
    for status in &statuses {
        // Wrong password, locked out, or come back later; never a failure.
        assert!(matches!(status, Some(401 | 429 | 503)), "{status:?}");
    }
    assert!(peak_mb < 300, "peak RSS {peak_mb} MB");
}
