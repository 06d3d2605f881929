//! An app of one's own, as a newcomer meets it, with the `sx` binary as a process:
//! `sx new` → `sx test` → `sx serve --app --dev` → edit → the change is served (and open pages
//! are told to reload) → a broken file → every page names `file:line:col` → fixed → served
//! again. Also how `sx serve` refuses what it cannot serve.

mod common;

use common::free_port;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sx(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("sx runs")
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let raw = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(raw.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

/// Polls `path` until `done` holds for its answer (the watcher recompiles in the background).
fn eventually(port: u16, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((status, body)) = get(port, path) {
            if done(status, &body) {
                return (status, body);
            }
            if Instant::now() > deadline {
                panic!("{path} never changed as expected; last answer {status}:\n{body}");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[&str], dir: &Path, data: &Path, port: u16) -> Serving {
    let child = Command::new(env!("CARGO_BIN_EXE_sx"))
        .arg("serve")
        .args(args)
        .args(["--port", &port.to_string(), "--data"])
        .arg(data)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sx serve starts");
    let serving = Serving(child);
    eventually(port, "/health", |status, _| status == 200);
    serving
}

#[test]
fn a_new_app_is_tested_served_edited_broken_and_fixed_without_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let made = sx(&["new", "mysite"], work.path());
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let app = work.path().join("mysite");
    for file in [
        "app.sx",
        "static/style.css",
        "tests/app_test.sx",
        "README.md",
    ] {
        assert!(app.join(file).is_file(), "sx new wrote no {file}");
    }

    // An existing folder is refused, and nothing in it changes.
    let before = std::fs::read_to_string(app.join("app.sx")).unwrap();
    std::fs::write(app.join("app.sx"), "(define mine 1)").unwrap();
    let again = sx(&["new", "mysite"], work.path());
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(app.join("app.sx")).unwrap(),
        "(define mine 1)"
    );
    std::fs::write(app.join("app.sx"), &before).unwrap();

    // Its tests pass, with the host library and the app loaded.
    let tested = sx(&["test", "mysite"], work.path());
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "{report}");
    assert!(report.contains("2 passed, 0 failed"), "{report}");

    let data = work.path().join("data");
    let port = free_port();
    let _server = serve(&["--app", ".", "--dev"], &app, &data, port);
    let (status, page) = get(port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<h1>mysite</h1>"), "{page}");
    assert!(page.contains("<title>Home · mysite</title>"), "{page}");
    assert!(
        page.contains("/__sx/dev.js"),
        "dev pages listen for reloads"
    );
    let (status, css) = get(port, "/static/style.css").unwrap();
    assert_eq!(status, 200);
    assert!(css.contains("mysite"), "the app's own stylesheet: {css}");
    assert_eq!(get(port, "/about").unwrap().0, 200);

    // A page listening for reloads.
    let mut events = TcpStream::connect(("127.0.0.1", port)).unwrap();
    events
        .write_all(b"GET /__sx/reload HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    events
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();

    // An edit is served at once, and the page is told.
    let edited = before.replace("Welcome!", "Edited while serving!");
    std::fs::write(app.join("app.sx"), &edited).unwrap();
    eventually(port, "/", |status, page| {
        status == 200 && page.contains("Edited while serving!")
    });
    let mut stream = String::new();
    let mut buf = [0u8; 1024];
    while !stream.contains("event: reload") {
        let n = events.read(&mut buf).expect("a reload event");
        assert!(n > 0, "the event stream ended: {stream}");
        stream.push_str(&String::from_utf8_lossy(&buf[..n]));
    }

    // A broken file: every page says where, until it is fixed.
    std::fs::write(
        app.join("app.sx"),
        format!("{edited}\n(defroute \"GET\" \"/x\"\n"),
    )
    .unwrap();
    let (_, page) = eventually(port, "/", |status, _| status == 500);
    assert!(page.contains("does not compile"), "{page}");
    let at = page.find("app.sx:").expect("the error names the file");
    let location: String = page[at + 7..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':')
        .collect();
    assert!(
        location.contains(':'),
        "line:col after the file name: {page}"
    );
    assert_eq!(get(port, "/about").unwrap().0, 500);
    std::fs::write(app.join("app.sx"), &edited).unwrap();
    eventually(port, "/", |status, page| {
        status == 200 && page.contains("Edited while serving!")
    });
}

#[test]
fn an_app_that_does_not_compile_is_refused_at_start_naming_the_place() {
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("broken");
    std::fs::create_dir_all(app.join("pages")).unwrap();
    std::fs::write(app.join("a.sx"), "(define ok 1)\n").unwrap();
    std::fs::write(app.join("pages/b.sx"), "(define x\n  (+ 1 2)\n  (oops").unwrap();
    let out = sx(
        &["serve", "--app", "broken", "--port", "0", "--data", "data"],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("pages/b.sx:"), "{message}");
    assert!(!work.path().join("data").exists(), "nothing was written");
}

#[test]
fn an_unknown_or_missing_app_is_refused_with_the_apps_there_are() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sx"))
        .args(["serve", "--port", "0", "--data", "data"])
        .env("SX_DOMAIN", "shop")
        .current_dir(work.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("names no app"), "{message}");
    assert!(
        message.contains("blog") && message.contains("events"),
        "names the apps there are: {message}"
    );
    let out = sx(&["serve", "--app", "nowhere", "--port", "0"], work.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// The server renders the shell once per title and login state and splices each page's
/// content in: two pages with one title still show their own content, and an app's own shell
/// (not vouched for with `host/shell-splices`) is called for every page.
#[test]
fn the_shell_is_reused_across_pages_only_when_it_splices_its_content() {
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("shells");
    std::fs::create_dir_all(&app).unwrap();
    let pages = r#"
(defroute "GET" "/a" (fn (req) (host/page "Same" (p :id "which" "page a"))))
(defroute "GET" "/b" (fn (req) (host/page "Same" (p :id "which" "page b"))))
"#;
    std::fs::write(app.join("pages.sx"), pages).unwrap();
    let port = free_port();
    let data = work.path().join("data");
    let serving = serve(&["--app", "shells"], work.path(), &data, port);
    for _ in 0..2 {
        for (path, text) in [("/a", "page a"), ("/b", "page b")] {
            let (status, body) = get(port, path).unwrap();
            assert_eq!(status, 200, "{body}");
            assert!(
                body.contains(&format!("<p id=\"which\">{text}</p>")),
                "{body}"
            );
            assert_eq!(body.matches("<main id=\"content\"").count(), 1, "{body}");
            assert!(body.contains("<title>Same · "), "{body}");
        }
    }
    drop(serving);

    // A shell of the app's own that looks at its children, not vouched for: it must see
    // the real ones.
    let shell = r#"
(defcomp ~host/shell (&key title site user csrf client dev children)
  (html (body (main :id "content" :data-first (type-of (first children)) children))))
"#;
    std::fs::write(app.join("shell.sx"), shell).unwrap();
    let port = free_port();
    let _serving = serve(&["--app", "shells"], work.path(), &data, port);
    let (status, body) = get(port, "/a").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("data-first=\"list\""), "{body}");
    assert!(body.contains("page a"), "{body}");
}
