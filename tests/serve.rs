//! `sx serve` as a process: it serves the blog from a fresh store, and a server killed with
//! SIGKILL and started again still has everything it acknowledged.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
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

#[test]
fn sigkill_and_restart_lose_nothing_acknowledged() {
    let data = std::env::temp_dir().join(format!("sx-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port();
    let mut server = start(port, &data);
    wait_until_up(port);
    let before = posts(port);
    assert!(before >= 3, "a fresh store is seeded");
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
    let (status, css) = get(port, "/static/style.css").unwrap();
    assert_eq!(status, 200);
    assert!(css.contains("--accent"));
    server.kill().ok();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);
}
