//! The server over real HTTP on 127.0.0.1 ephemeral ports, with temporary LMDB stores.

mod common;

use common::{admin_config, form, header, static_dir, text, user_with_token, Server};

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
    assert_eq!(
        header(&headers, "sx-title"),
        Some("Welcome to SX %C2%B7 SX blog")
    );
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

#[test]
fn request_ids_are_unique_across_workers() {
    let dir = static_dir();
    let server = Server::with_workers(dir.path(), 2);
    let ids: std::collections::BTreeSet<String> = (0..40)
        .map(|_| {
            let (_, headers, _) = server.get("/health");
            header(&headers, "x-request-id").unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 40);
}

#[test]
fn shutdown_lets_in_flight_requests_finish() {
    let dir = static_dir();
    let server = Server::start(dir.path());
    let addr = server.addr;
    let napper = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /nap HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    });
    // The handler sleeps 300 ms; stop the server while it does.
    std::thread::sleep(std::time::Duration::from_millis(100));
    server.stop().unwrap();
    let response = napper.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("rested"), "{response}");
}

/// `defstart` functions run on every worker's image before it serves a request, in
/// declaration order, and may perform; one that fails is logged and the image serves anyway.
#[test]
fn start_functions_run_on_each_image_before_its_first_request() {
    let mut files = common::app_sources();
    files.push((
        "starting.sx".to_string(),
        r#"(define started ())
           (defstart (fn () (set! started (cons "first" started))))
           (defstart (fn () (error "a start that fails")))
           (defstart (fn () (perform {:op "store/posts"}) (set! started (cons "second" started))))
           (defroute "GET" "/started" (fn (req) {:body (string-join (reverse started) " ")}))"#
            .to_string(),
    ));
    let bundle = sx_kernel::sxbc::compile_bundle(&files).unwrap();
    let dir = static_dir();
    let server = Server::with_bundle(dir.path(), bundle);
    // Two workers: each answers from its own image, started once.
    for _ in 0..8 {
        let (status, _, body) = server.get("/started");
        assert_eq!((status, text(&body)), (200, "first second".to_string()));
    }
}

/// A `{:cache true}` route's answer to a visitor who is not signed in is kept until a post
/// changes (on any path of writing one), per path and query and per page or fragment; a
/// signed-in request, a handler that reads more than the posts, or an answer that sets a
/// cookie is never served from it.
#[test]
fn cached_routes_serve_kept_answers_until_a_post_changes() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let writer = user_with_token(data.path(), "wes", &["write", "publish"]);
    let server = Server::launch(admin_config(data.path(), statics.path()));
    let cache_of = |path: &str, headers: &[(&str, &str)]| {
        let (status, head, body) = server.send("GET", path, headers, "");
        assert_eq!(status, 200, "{path}");
        (header(&head, "x-sx-cache").map(str::to_string), text(&body))
    };
    let (first, before) = cache_of("/cached/count", &[]);
    assert_eq!(first.as_deref(), Some("miss"));
    let (second, again) = cache_of("/cached/count", &[]);
    assert_eq!(second.as_deref(), Some("hit"));
    assert_eq!(again, before);
    // Another query or a fragment is another answer.
    let (other, body) = cache_of("/cached/count?n=twice", &[]);
    assert_eq!(other.as_deref(), Some("miss"));
    assert!(body.contains("asked twice"), "{body}");
    let (fragment, _) = cache_of("/cached/count", &[("SX-Request", "true")]);
    assert_eq!(fragment.as_deref(), Some("miss"));
    // Whoever is signed in gets an answer made for them.
    let bearer = format!("Bearer {writer}");
    let (signed_in, _) = cache_of("/cached/count", &[("Authorization", &bearer)]);
    assert_eq!(signed_in, None);
    // A new post: the kept answer is not served again.
    let (status, _, _) = server.send(
        "POST",
        "/new",
        &[("Authorization", &bearer)],
        &form(&[("title", "Fresh"), ("body", "New.")]),
    );
    assert_eq!(status, 303);
    let (after, now) = cache_of("/cached/count", &[]);
    assert_eq!(after.as_deref(), Some("miss"));
    assert_ne!(now, before, "the count includes the new post");
    assert_eq!(cache_of("/cached/count", &[]).0.as_deref(), Some("hit"));
    // The blog's pages: publishing and an edit show at once.
    let (status, _, _) = server.send("POST", "/fresh/publish", &[("Authorization", &bearer)], "");
    assert_eq!(status, 303);
    assert_eq!(cache_of("/fresh/", &[]).0.as_deref(), Some("miss"));
    assert_eq!(cache_of("/fresh/", &[]).0.as_deref(), Some("hit"));
    let (status, _, _) = server.send(
        "POST",
        "/fresh/edit",
        &[("Authorization", &bearer)],
        &form(&[("title", "Fresher"), ("body", "Edited.")]),
    );
    assert_eq!(status, 303);
    let (fresh, page) = cache_of("/fresh/", &[]);
    assert_eq!(fresh.as_deref(), Some("miss"));
    assert!(page.contains("<h1>Fresher</h1>"), "{page}");
    // Reading the clock, or setting a cookie: made afresh every time.
    for path in ["/cached/clock", "/cached/cookie"] {
        for _ in 0..2 {
            assert_eq!(cache_of(path, &[]).0.as_deref(), Some("miss"), "{path}");
        }
    }
}

#[test]
fn with_the_page_cache_off_every_answer_is_made_afresh() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(sx_server::config::Config {
        page_cache: false,
        ..common::config(data.path(), statics.path())
    });
    for _ in 0..2 {
        let (status, headers, _) = server.get("/cached/count");
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-sx-cache"), None);
    }
}
