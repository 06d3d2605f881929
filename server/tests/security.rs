//! The attacks SECURITY.md promises to stop, tried over real HTTP against real servers:
//! redirects to other sites, cross-site posts (login included), slow and stalled clients,
//! login floods and lockouts, draft probing, forged request ids and Host headers, static
//! files outside their directory, missing security headers, and a full store.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    admin_config, config, form, header, session_cookie, static_dir, text, Server, ADMIN, PASSWORD,
};
use sx_server::config::Limits;
use sx_server::store::{Store, User};
use sx_server::Config;

fn login_as(
    server: &Server,
    headers: &[(&str, &str)],
    pairs: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    server.send("POST", "/login", headers, &form(pairs))
}

/// Every way of writing "another site" we know of, raw and as the form decodes it.
const FOREIGN_TARGETS: &[&str] = &[
    "/\t/evil.example/x",
    "/\n/evil.example/x",
    "/\r/evil.example/x",
    "/\r\n/evil.example/x",
    "/ /evil.example/x",
    "/\u{0}/evil.example",
    "/\u{7f}/evil.example",
    "/\u{b}/evil.example",
    "/\u{c}/evil.example",
    "//evil.example/x",
    "///evil.example/x",
    "/\\evil.example/x",
    "\\\\evil.example/x",
    "\\/evil.example/x",
    "https://evil.example/x",
    "http:evil.example",
    "javascript:alert(1)",
    " /x",
    "\t/x",
    "evil.example",
    "",
];

#[test]
fn after_login_no_spelling_of_another_site_is_followed() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    for next in FOREIGN_TARGETS {
        let (status, headers, _) = login_as(
            &server,
            &[],
            &[("username", ADMIN), ("password", PASSWORD), ("next", next)],
        );
        assert_eq!(status, 303, "{next:?}");
        assert_eq!(header(&headers, "location"), Some("/"), "{next:?}");
        // The login page's form carries only a safe `next` too (percent-encoded in the query).
        let query = form(&[("next", next)]);
        let (status, _, body) = server.get(&format!("/login?{query}"));
        assert_eq!(status, 200, "{next:?}");
        assert!(
            text(&body).contains("name=\"next\" value=\"/\""),
            "{next:?}: {}",
            text(&body)
        );
    }
    // Paths on this site are kept, query and encoded characters included.
    for next in ["/welcome/", "/hello/?a=1&b=%2F%2F", "/%09x", "/a//b"] {
        let (_, headers, _) = login_as(
            &server,
            &[],
            &[("username", ADMIN), ("password", PASSWORD), ("next", next)],
        );
        assert_eq!(header(&headers, "location"), Some(next));
    }
}

#[test]
fn no_app_can_redirect_to_another_site() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    for to in FOREIGN_TARGETS {
        let query = form(&[("to", to)]);
        let (status, headers, _) = server.get(&format!("/bounce?{query}"));
        assert_eq!(status, 302, "{to:?}");
        assert_eq!(header(&headers, "location"), Some("/"), "{to:?}");
    }
    let (_, headers, _) = server.get("/bounce?to=%2Fwelcome%2F");
    assert_eq!(header(&headers, "location"), Some("/welcome/"));
}

#[test]
fn cross_site_posts_are_refused_login_included() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    let creds = [("username", ADMIN), ("password", PASSWORD)];
    for headers in [
        vec![("Origin", "http://evil.example")],
        vec![("Origin", "null")],
        vec![("Origin", "http://localhost.evil.example")],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![
            ("Origin", "http://localhost"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
    ] {
        let (status, response_headers, body) = login_as(&server, &headers, &creds);
        assert_eq!(status, 403, "{headers:?}");
        assert!(header(&response_headers, "set-cookie").is_none());
        assert!(text(&body).contains("another site"), "{}", text(&body));
    }
    // This site's own pages, and clients that say nothing (scripts), may log in.
    for headers in [
        vec![],
        vec![
            ("Origin", "http://localhost"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        vec![("Sec-Fetch-Site", "none")],
    ] {
        let (status, _, _) = login_as(&server, &headers, &creds);
        assert_eq!(status, 303, "{headers:?}");
    }
}

#[test]
fn the_configured_public_url_is_an_accepted_origin() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(Config {
        public_url: Some("https://blog.example".into()),
        ..admin_config(data.path(), statics.path())
    });
    let creds = [("username", ADMIN), ("password", PASSWORD)];
    let (status, _, _) = login_as(&server, &[("Origin", "https://blog.example")], &creds);
    assert_eq!(status, 303);
    let (status, _, _) = login_as(&server, &[("Origin", "https://evil.example")], &creds);
    assert_eq!(status, 403);
}

#[test]
fn a_login_with_a_session_cookie_needs_the_csrf_token() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    let creds = [("username", ADMIN), ("password", PASSWORD)];
    let (_, headers, _) = login_as(&server, &[], &creds);
    let cookie = session_cookie(&headers);
    let (status, headers, _) = login_as(&server, &[("Cookie", &cookie)], &creds);
    assert_eq!(status, 403);
    assert!(header(&headers, "set-cookie").is_none());
}

/// Reads until the server closes the connection (or `limit` passes); returns what arrived
/// and whether it closed.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

fn quick_limits() -> Limits {
    Limits {
        header: Duration::from_millis(400),
        body: Duration::from_millis(400),
        keepalive: Duration::from_millis(300),
        request: Duration::from_secs(5),
        connections: 1024,
    }
}

#[test]
fn unfinished_headers_and_stalled_bodies_are_cut_off() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(Config {
        limits: quick_limits(),
        ..config(data.path(), statics.path())
    });

    // Headers that never finish.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5));
    assert!(closed, "a connection with unfinished headers stays open");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A body that stops arriving: 408, and the connection ends.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=a",
        )
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stalled, Duration::from_secs(5));
    assert!(closed);
    assert!(
        text(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        text(&answer)
    );

    // The server still answers.
    assert_eq!(server.get("/health").0, 200);
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(Config {
        limits: Limits {
            header: Duration::from_secs(10),
            ..quick_limits()
        },
        ..config(data.path(), statics.path())
    });
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(5));
    assert!(text(&answer).starts_with("HTTP/1.1 200"));
    assert!(closed, "an idle keep-alive connection stays open");
    assert_eq!(server.get("/health").0, 200);
}

#[test]
fn a_request_past_its_deadline_gets_503() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(Config {
        limits: Limits {
            request: Duration::from_millis(100),
            ..quick_limits()
        },
        ..config(data.path(), statics.path())
    });
    let (status, headers, body) = server.get("/nap");
    assert_eq!(status, 503);
    assert!(text(&body).contains("took too long"));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(server.get("/health").0, 200);
}

#[test]
fn connections_beyond_the_cap_wait_their_turn() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(Config {
        limits: Limits {
            connections: 2,
            header: Duration::from_millis(600),
            keepalive: Duration::from_secs(10),
            ..quick_limits()
        },
        ..config(data.path(), statics.path())
    });
    // Two clients that connect and say nothing hold both places...
    let _a = TcpStream::connect(server.addr).unwrap();
    let _b = TcpStream::connect(server.addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // ...so a third is answered only once the header timeout has closed one of them.
    let started = Instant::now();
    assert_eq!(server.get("/health").0, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered after {:?}: the cap did not hold",
        started.elapsed()
    );
}

#[test]
fn names_past_64_bytes_are_refused_before_any_work() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    let long = "n".repeat(65);
    let (status, _, body) = login_as(&server, &[], &[("username", &long), ("password", "x")]);
    assert_eq!(status, 422);
    assert!(text(&body).contains("at most 64 characters"));
    // A name that fits in characters but not in bytes is a failed login.
    let wide = "é".repeat(40);
    let (status, _, _) = login_as(&server, &[], &[("username", &wide), ("password", "x")]);
    assert_eq!(status, 401);
    // Neither counted against anyone: the admin logs in.
    let (status, _, _) = login_as(&server, &[], &[("username", ADMIN), ("password", PASSWORD)]);
    assert_eq!(status, 303);
}

#[test]
fn failures_from_another_address_do_not_lock_the_owner_out() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(Config {
        trust_proxy: true,
        ..admin_config(data.path(), statics.path())
    });
    let from = |address: &'static str| [("X-Forwarded-For", address)];
    for _ in 0..sx_server::auth::MAX_FAILURES + 2 {
        let (status, _, _) = login_as(
            &server,
            &from("203.0.113.9"),
            &[("username", ADMIN), ("password", "wrong")],
        );
        assert!(status == 401 || status == 429, "{status}");
    }
    // The attacker's address is locked out, even with the right password...
    let (status, _, _) = login_as(
        &server,
        &from("203.0.113.9"),
        &[("username", ADMIN), ("password", PASSWORD)],
    );
    assert_eq!(status, 429);
    // ...the owner, elsewhere, is not.
    let (status, _, _) = login_as(
        &server,
        &from("198.51.100.7, 203.0.113.9"),
        &[("username", ADMIN), ("password", PASSWORD)],
    );
    assert_eq!(status, 303);
}

#[test]
fn without_a_trusted_proxy_forwarded_for_is_ignored() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    for i in 0..sx_server::auth::MAX_FAILURES {
        let address = format!("198.51.100.{i}");
        login_as(
            &server,
            &[("X-Forwarded-For", &address)],
            &[("username", ADMIN), ("password", "wrong")],
        );
    }
    // All five came from this socket's address, whatever the header said.
    let (status, _, _) = login_as(
        &server,
        &[("X-Forwarded-For", "192.0.2.1")],
        &[("username", ADMIN), ("password", PASSWORD)],
    );
    assert_eq!(status, 429);
}

#[test]
fn another_authors_draft_cannot_be_detected() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let token = |name: &str| {
        let store = Store::open(data.path()).unwrap();
        store
            .put_user(&User {
                name: name.into(),
                password_hash: sx_server::auth::hash_password("unused password").unwrap(),
                grants: vec!["write".into(), "publish".into()],
            })
            .unwrap();
        let (token, hash) = sx_server::auth::new_token();
        assert!(store.add_token(&hash, name).unwrap());
        format!("Bearer {token}")
    };
    let (bea, cid) = (token("bea"), token("cid"));
    let server = Server::launch(config(data.path(), statics.path()));
    let (status, headers, _) = server.send(
        "POST",
        "/new",
        &[("Authorization", &bea)],
        &form(&[("title", "Secret plans"), ("body", "Hush.")]),
    );
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/secret-plans/"));
    for (method, path) in [
        ("GET", "/secret-plans/edit"),
        ("POST", "/secret-plans/edit"),
        ("POST", "/secret-plans/publish"),
    ] {
        let (draft, _, _) = server.send(method, path, &[("Authorization", &cid)], "");
        let nothing_path = path.replace("secret-plans", "no-such-post");
        let (nothing, _, _) = server.send(method, &nothing_path, &[("Authorization", &cid)], "");
        assert_eq!(draft, 404, "{method} {path}");
        assert_eq!(nothing, 404, "{method} {nothing_path}");
    }
    // A published post that is not theirs: visible, so "not allowed" says nothing new.
    let (status, _, _) = server.send(
        "POST",
        "/welcome/edit",
        &[("Authorization", &cid)],
        &form(&[("title", "Mine"), ("body", "")]),
    );
    assert_eq!(status, 403);
}

#[test]
fn absolute_urls_use_the_public_url_never_the_host_header() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(Config {
        public_url: Some("https://blog.example/".into()),
        ..config(data.path(), statics.path())
    });
    let raw = "GET /feed HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    let (_, _, body) = server.request(raw);
    let feed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(feed["home_page_url"], "https://blog.example/");
    assert_eq!(
        feed["items"][0]["url"].as_str().unwrap().split('/').nth(2),
        Some("blog.example")
    );
    drop(server);

    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(config(data.path(), statics.path()));
    let raw = "GET /feed HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    let (_, _, body) = server.request(raw);
    let feed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        feed["home_page_url"],
        format!("http://{}/", server.addr).as_str()
    );
}

#[test]
fn only_plain_short_request_ids_are_kept() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let sent_id = |id: &str| {
        let raw = format!(
            "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\n"
        );
        let (_, headers, _) = server.request(&raw);
        header(&headers, "x-request-id").unwrap().to_string()
    };
    assert_eq!(sent_id("abc-123.X_y"), "abc-123.X_y");
    let max = "a".repeat(64);
    assert_eq!(sent_id(&max), max);
    for bad in [
        "a".repeat(65),
        "a b".into(),
        "a\"b".into(),
        "<script>".into(),
        "ü".into(),
    ] {
        let given = sent_id(&bad);
        assert_ne!(given, bad);
        assert!(given.parse::<u64>().is_ok(), "{given}");
    }
}

#[test]
fn static_files_never_include_dotfiles_or_paths_outside_the_directory() {
    let statics = static_dir();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "outside").unwrap();
    std::fs::write(statics.path().join(".env"), "SECRET=1").unwrap();
    std::fs::create_dir(statics.path().join(".git")).unwrap();
    std::fs::write(statics.path().join(".git").join("config"), "x").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            statics.path().join("leak.txt"),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), statics.path().join("out")).unwrap();
        std::fs::write(statics.path().join("inside.txt"), "inside").unwrap();
        std::os::unix::fs::symlink(
            statics.path().join("inside.txt"),
            statics.path().join("alias.txt"),
        )
        .unwrap();
    }
    let server = Server::start(statics.path());
    for path in [
        "/static/.env",
        "/static/%2eenv",
        "/static/.git/config",
        "/static/leak.txt",
        "/static/out/secret.txt",
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/style.css%00",
    ] {
        let (status, _, body) = server.get(path);
        assert_eq!(status, 404, "{path}");
        assert!(!text(&body).contains("outside") && !text(&body).contains("SECRET"));
    }
    assert_eq!(server.get("/static/style.css").0, 200);
    #[cfg(unix)]
    {
        // A link that stays inside the directory is fine.
        let (status, _, body) = server.get("/static/alias.txt");
        assert_eq!(status, 200);
        assert_eq!(text(&body), "inside");
    }
}

#[test]
fn every_response_carries_the_security_headers() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    for path in [
        "/",
        "/welcome/",
        "/no-such-page",
        "/login",
        "/static/style.css",
        "/health",
    ] {
        let (_, headers, _) = server.get(path);
        assert_eq!(
            header(&headers, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            header(&headers, "referrer-policy"),
            Some("strict-origin-when-cross-origin"),
            "{path}"
        );
        let csp = header(&headers, "content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
    // No inline script in a page: the client loads from a file.
    let (_, _, body) = server.get("/");
    let page = text(&body);
    let scripts: Vec<&str> = page.split("<script").skip(1).collect();
    assert!(scripts.iter().all(|s| s.contains("src=")), "{page}");
}

#[test]
fn a_full_store_answers_writes_with_507_and_keeps_what_it_had() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let store = Store::open_with(
        data.path(),
        sx_server::store::Options {
            max_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    store
        .put_user(&User {
            name: "bea".into(),
            password_hash: sx_server::auth::hash_password("unused password").unwrap(),
            grants: vec!["*".into()],
        })
        .unwrap();
    let (token, hash) = sx_server::auth::new_token();
    assert!(store.add_token(&hash, "bea").unwrap());
    drop(store);
    let server = Server::launch(Config {
        store_max_mb: 1,
        ..config(data.path(), statics.path())
    });
    let bearer = format!("Bearer {token}");
    let body = "x".repeat(90_000);
    let mut written = Vec::new();
    let mut full = None;
    for i in 0..40 {
        let title = format!("Post {i}");
        let (status, headers, page) = server.send(
            "POST",
            "/new",
            &[("Authorization", &bearer)],
            &form(&[("title", &title), ("body", &body)]),
        );
        match status {
            303 => written.push(header(&headers, "location").unwrap().to_string()),
            507 => {
                full = Some(text(&page));
                break;
            }
            other => panic!("{other}: {}", text(&page)),
        }
    }
    let page = full.expect("the store filled up");
    assert!(page.contains("nothing was saved"), "{page}");
    assert!(!written.is_empty());
    // Everything acknowledged before is still there, and reads still work.
    for location in &written {
        let (status, _, _) = server.send("GET", location, &[("Authorization", &bearer)], "");
        assert_eq!(status, 200, "{location}");
    }
    assert_eq!(server.get("/").0, 200);
}
