//! Authors over real HTTP with temporary stores: logging in and out, sessions, Bearer
//! tokens, grants, CSRF, throttling, and writing posts.

mod common;

use common::{
    admin_config, csrf_of, form, header, static_dir, text, user_with_token, Server, ADMIN, PASSWORD,
};
use sx_server::store::Store;
use sx_server::Config;

type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// Logs in; returns the `Cookie` header value to send.
fn login(server: &Server, user: &str, password: &str) -> String {
    let (status, headers, body) = server.send(
        "POST",
        "/login",
        &[],
        &form(&[("username", user), ("password", password), ("next", "/new")]),
    );
    assert_eq!(status, 303, "{}", text(&body));
    assert_eq!(header(&headers, "location"), Some("/new"));
    let cookie = header(&headers, "set-cookie").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    cookie.split(';').next().unwrap().to_string()
}

/// The session's CSRF token, read from the editor page.
fn csrf(server: &Server, cookie: &str) -> String {
    let (status, _, body) = server.send("GET", "/new", &[("Cookie", cookie)], "");
    assert_eq!(status, 200);
    csrf_of(&body)
}

fn post_as(server: &Server, cookie: &str, path: &str, pairs: &[(&str, &str)]) -> Response {
    server.send("POST", path, &[("Cookie", cookie)], &form(pairs))
}

#[test]
fn an_author_logs_in_writes_a_draft_publishes_edits_and_logs_out() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));

    // Without a session: a browser is sent to log in and back, anything else gets 401.
    let (status, headers, _) = server.send("GET", "/new", &[("Accept", "text/html")], "");
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/login?next=%2Fnew"));
    let (status, headers, _) = server.get("/new");
    assert_eq!(status, 401);
    assert!(header(&headers, "www-authenticate").is_some());
    let (status, _, body) = server.get("/login?next=%2Fnew");
    assert_eq!(status, 200);
    assert!(text(&body).contains("name=\"password\""));

    let cookie = login(&server, ADMIN, PASSWORD);
    let token = csrf(&server, &cookie);
    let (_, headers, body) = server.send("GET", "/", &[("Cookie", &cookie)], "");
    assert!(
        text(&body).contains("action=\"/logout\""),
        "a Log out button"
    );
    assert_eq!(header(&headers, "cache-control"), Some("private, no-cache"));

    // Invalid input keeps the text and says what is wrong.
    let kept = "My <first> draft\n\nwith two paragraphs";
    let (status, _, body) = post_as(
        &server,
        &cookie,
        "/new",
        &[("csrf", &token), ("title", "  "), ("body", kept)],
    );
    assert_eq!(status, 422);
    let page = text(&body);
    assert!(page.contains("The title is empty."), "{page}");
    assert!(
        page.contains("My &lt;first&gt; draft\n\nwith two paragraphs"),
        "{page}"
    );

    let (status, headers, _) = post_as(
        &server,
        &cookie,
        "/new",
        &[("csrf", &token), ("title", "Hello, World!"), ("body", kept)],
    );
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/hello-world/"));

    // A draft: its author sees it (with a Publish button), nobody else does.
    let (status, _, body) = server.send("GET", "/hello-world/", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    assert!(text(&body).contains("action=\"/hello-world/publish\""));
    assert_eq!(server.get("/hello-world/").0, 404);
    assert!(!text(&server.get("/").2).contains("Hello, World!"));
    let (_, _, edit_page) = server.send("GET", "/hello-world/edit", &[("Cookie", &cookie)], "");
    assert!(text(&edit_page).contains("action=\"/hello-world/publish\""));

    // A second post with the same title gets its own slug.
    let (_, headers, _) = post_as(
        &server,
        &cookie,
        "/new",
        &[
            ("csrf", &token),
            ("title", "Hello World"),
            ("body", "again"),
        ],
    );
    assert_eq!(header(&headers, "location"), Some("/hello-world-2/"));

    let (status, headers, _) = post_as(
        &server,
        &cookie,
        "/hello-world/publish",
        &[("csrf", &token)],
    );
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/hello-world/"));
    assert_eq!(server.get("/hello-world/").0, 200);

    let (status, _, _) = post_as(
        &server,
        &cookie,
        "/hello-world/edit",
        &[
            ("csrf", &token),
            ("title", "Hello, World!"),
            ("body", "Edited text."),
        ],
    );
    assert_eq!(status, 303);
    let (_, _, body) = server.get("/hello-world/");
    assert!(text(&body).contains("Edited text."));

    // Logging out deletes the session: the old cookie is worth nothing now.
    let (status, headers, _) = post_as(&server, &cookie, "/logout", &[("csrf", &token)]);
    assert_eq!(status, 303);
    assert!(header(&headers, "set-cookie")
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        server.send("GET", "/new", &[("Cookie", &cookie)], "").0,
        401
    );
    server.stop().unwrap();

    // The post's whole stream is kept: create, publish, edit.
    let store = Store::open(data.path()).unwrap();
    let kinds: Vec<String> = store
        .history("hello-world")
        .unwrap()
        .iter()
        .map(|op| match op {
            sx_kernel::Value::Dict(d) => sx_kernel::printer::display(
                d.get(&sx_kernel::value::Key(sx_kernel::Value::kw("op")))
                    .unwrap(),
            ),
            _ => String::new(),
        })
        .collect();
    assert_eq!(kinds, ["create", "publish", "edit"]);
}

#[test]
fn no_forged_or_foreign_cookie_is_a_session() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    let cookie = login(&server, ADMIN, PASSWORD);
    let (id, signature) = cookie.rsplit_once('.').unwrap();
    let mut flipped = signature.to_string();
    flipped.replace_range(0..1, if signature.starts_with('0') { "1" } else { "0" });
    for forged in [
        format!("{id}.{flipped}"),
        format!("{id}x.{signature}"),
        id.to_string(),
        "sx_session=".to_string(),
        "sx_session=abc.def".to_string(),
    ] {
        let (status, _, _) = server.send("GET", "/new", &[("Cookie", &forged)], "");
        assert_eq!(status, 401, "{forged}");
    }
    // The same session id signed by another server's key is refused too.
    let other = sx_server::auth::Auth::new(b"another key", false, 60_000);
    let foreign = format!(
        "sx_session={}",
        other.sign(id.trim_start_matches("sx_session="))
    );
    assert_eq!(
        server.send("GET", "/new", &[("Cookie", &foreign)], "").0,
        401
    );
    assert_eq!(
        server.send("GET", "/new", &[("Cookie", &cookie)], "").0,
        200
    );
}

#[test]
fn an_expired_session_is_no_session() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(Config {
        session_ttl: 1,
        ..admin_config(data.path(), statics.path())
    });
    let cookie = login(&server, ADMIN, PASSWORD);
    assert_eq!(
        server.send("GET", "/new", &[("Cookie", &cookie)], "").0,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        server.send("GET", "/new", &[("Cookie", &cookie)], "").0,
        401
    );
}

#[test]
fn a_cookie_post_without_its_csrf_token_is_refused_and_writes_nothing() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    let cookie = login(&server, ADMIN, PASSWORD);
    let posts_before = text(&server.get("/health").2);
    for pairs in [
        vec![("title", "Sneaky")],
        vec![("title", "Sneaky"), ("csrf", "0000")],
        vec![("title", "Sneaky"), ("csrf", "")],
    ] {
        let (status, _, body) = post_as(&server, &cookie, "/new", &pairs);
        assert_eq!(status, 403, "{pairs:?}");
        assert!(text(&body).contains("<h1>"), "a readable page");
    }
    // Logging out is a state change too.
    assert_eq!(post_as(&server, &cookie, "/logout", &[]).0, 403);
    assert_eq!(
        server.send("GET", "/new", &[("Cookie", &cookie)], "").0,
        200
    );
    assert_eq!(text(&server.get("/health").2), posts_before);
    // The token may also come as a header (for scripts in the page).
    let token = csrf(&server, &cookie);
    let (status, _, _) = server.send(
        "POST",
        "/new",
        &[("Cookie", &cookie), ("X-CSRF-Token", &token)],
        &form(&[("title", "By header"), ("body", "")]),
    );
    assert_eq!(status, 303);
}

#[test]
fn bearer_tokens_work_on_the_same_routes_and_grants_are_checked() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let writer = user_with_token(data.path(), "wes", &["write"]);
    let reader = user_with_token(data.path(), "rita", &[]);
    let server = Server::launch(admin_config(data.path(), statics.path()));
    let bearer = |token: &str| format!("Bearer {token}");

    // No CSRF token needed: a Bearer request carries no ambient credential.
    let (status, headers, _) = server.send(
        "POST",
        "/new",
        &[("Authorization", &bearer(&writer))],
        &form(&[("title", "From a script"), ("body", "Hello.")]),
    );
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/from-a-script/"));
    let (status, _, _) = server.send(
        "GET",
        "/from-a-script/",
        &[("Authorization", &bearer(&writer))],
        "",
    );
    assert_eq!(status, 200);

    // Writing is granted, publishing is not.
    let (status, _, body) = server.send(
        "POST",
        "/from-a-script/publish",
        &[("Authorization", &bearer(&writer))],
        "",
    );
    assert_eq!(status, 403);
    assert!(text(&body).contains("<h1>Not allowed</h1>"));
    let (status, _, _) = server.send(
        "POST",
        "/new",
        &[("Authorization", &bearer(&reader))],
        &form(&[("title", "Nope"), ("body", "")]),
    );
    assert_eq!(status, 403);
    // Another author's post is not theirs to change.
    let (status, _, _) = server.send(
        "POST",
        "/welcome/edit",
        &[("Authorization", &bearer(&writer))],
        &form(&[("title", "Mine now"), ("body", "")]),
    );
    assert_eq!(status, 403);

    for wrong in ["Bearer sxt_0000", "Bearer ", "Basic abc"] {
        let (status, _, _) = server.send(
            "POST",
            "/new",
            &[("Authorization", wrong)],
            &form(&[("title", "Nope"), ("body", "")]),
        );
        assert_eq!(status, 401, "{wrong}");
    }
}

#[test]
fn repeated_failed_logins_are_throttled() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    let attempt = |password: &str| {
        server.send(
            "POST",
            "/login",
            &[],
            &form(&[("username", ADMIN), ("password", password)]),
        )
    };
    for _ in 0..sx_server::auth::MAX_FAILURES {
        let (status, headers, body) = attempt("wrong");
        assert_eq!(status, 401);
        assert!(header(&headers, "set-cookie").is_none());
        assert!(text(&body).contains("Wrong name or password."));
        // The name typed stays in the form.
        assert!(text(&body).contains(&format!("value=\"{ADMIN}\"")));
    }
    // Locked out now, even with the right password.
    let (status, headers, body) = attempt(PASSWORD);
    assert_eq!(status, 429);
    let retry: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert!(text(&body).contains("Too many failed attempts"));
    assert!(header(&headers, "set-cookie").is_none());
}

#[test]
fn a_login_with_an_impossible_name_is_just_a_failed_login() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    for body in [
        String::new(),
        form(&[("username", ""), ("password", "x")]),
        form(&[("username", "a\u{0}b"), ("password", "x")]),
        "%%%=&&&".to_string(),
    ] {
        let (status, _, page) = server.send("POST", "/login", &[], &body);
        assert_eq!(status, 401, "{body:?}");
        assert!(text(&page).contains("Wrong name or password."));
    }
}

#[test]
fn sessions_and_posts_survive_a_restart() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    let cookie = login(&server, ADMIN, PASSWORD);
    let token = csrf(&server, &cookie);
    let (status, _, _) = post_as(
        &server,
        &cookie,
        "/new",
        &[
            ("csrf", &token),
            ("title", "Kept"),
            ("body", "Across restarts."),
        ],
    );
    assert_eq!(status, 303);
    server.stop().unwrap();

    // The generated session key was kept in the store, so the cookie still verifies.
    let server = Server::launch(admin_config(data.path(), statics.path()));
    let (status, _, body) = server.send("GET", "/kept/", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    assert!(text(&body).contains("Across restarts."));
    assert_eq!(csrf_of(&body), token);
}

#[test]
fn a_response_can_set_several_cookies() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let (status, headers, _) = server.get("/cookies");
    assert_eq!(status, 200);
    let cookies: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/; HttpOnly"]);
}

#[test]
fn cookies_are_secure_when_served_over_https() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(Config {
        https: true,
        ..admin_config(data.path(), statics.path())
    });
    let (_, headers, _) = server.send(
        "POST",
        "/login",
        &[],
        &form(&[("username", ADMIN), ("password", PASSWORD)]),
    );
    assert!(header(&headers, "set-cookie").unwrap().contains("; Secure"));
}

#[test]
fn after_login_only_paths_on_this_site_are_followed() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    for (next, expected) in [
        ("/hello/?a=1", "/hello/?a=1"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ] {
        let (status, headers, _) = server.send(
            "POST",
            "/login",
            &[],
            &form(&[("username", ADMIN), ("password", PASSWORD), ("next", next)]),
        );
        assert_eq!(status, 303);
        assert_eq!(header(&headers, "location"), Some(expected), "{next}");
    }
}

/// The editor island's autosave over HTTP: a draft is created from /new, saved at its
/// revision, refused (409, with the stored text) at a stale one, refused for a published post,
/// and refused without CSRF or with a bad text; the post page renders the body as Markdown
/// with HTML as text.
#[test]
fn autosave_saves_at_the_revision_and_answers_conflicts_with_the_stored_text() {
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(admin_config(data.path(), statics.path()));
    let cookie = login(&server, ADMIN, PASSWORD);
    let token = csrf(&server, &cookie);
    let json = |r: &Response| -> serde_json::Value {
        serde_json::from_slice(&r.2).unwrap_or_else(|_| panic!("JSON: {}", text(&r.2)))
    };

    let created = post_as(
        &server,
        &cookie,
        "/new/autosave",
        &[
            ("csrf", &token),
            ("title", "Auto draft"),
            ("body", "One."),
            ("rev", "0"),
        ],
    );
    assert_eq!(created.0, 200, "{}", text(&created.2));
    let answer = json(&created);
    assert_eq!(answer["slug"], "auto-draft");
    assert_eq!(answer["edit"], "/auto-draft/edit");
    let rev = answer["rev"].as_i64().unwrap();

    let save = |rev: i64, body: &str| {
        post_as(
            &server,
            &cookie,
            "/auto-draft/autosave",
            &[
                ("csrf", &token),
                ("title", "Auto draft"),
                ("body", body),
                ("rev", &rev.to_string()),
            ],
        )
    };
    let saved = save(rev, "# Two\n\n<script>x()</script> [bad](javascript:x)");
    assert_eq!(saved.0, 200, "{}", text(&saved.2));
    let next = json(&saved)["rev"].as_i64().unwrap();
    assert_eq!(next, rev + 1);

    // Another editor still at `rev`: nothing written, the stored text comes back.
    let stale = save(rev, "Text of the other tab.");
    assert_eq!(stale.0, 409);
    let conflict = json(&stale);
    assert_eq!(conflict["rev"], next);
    assert_eq!(
        conflict["body"],
        "# Two\n\n<script>x()</script> [bad](javascript:x)"
    );
    assert_eq!(conflict["status"], "draft");

    // The post page renders it: Markdown, HTML as text, no javascript: link.
    let (_, _, page) = server.send("GET", "/auto-draft/", &[("Cookie", &cookie)], "");
    let page = text(&page);
    assert!(
        page.contains("<div class=\"post-body\"><h1>Two</h1>"),
        "{page}"
    );
    assert!(page.contains("&lt;script&gt;x()&lt;/script&gt;"), "{page}");
    assert!(!page.contains("javascript:x\""), "{page}");

    // Bad input, no CSRF, no revision: refused, nothing written.
    let empty_title = post_as(
        &server,
        &cookie,
        "/auto-draft/autosave",
        &[
            ("csrf", &token),
            ("title", " "),
            ("body", "x"),
            ("rev", &next.to_string()),
        ],
    );
    assert_eq!(empty_title.0, 422);
    assert_eq!(json(&empty_title)["error"], "The title is empty.");
    let no_rev = post_as(
        &server,
        &cookie,
        "/auto-draft/autosave",
        &[
            ("csrf", &token),
            ("title", "T"),
            ("body", "x"),
            ("rev", "soon"),
        ],
    );
    assert_eq!(no_rev.0, 422);
    let no_csrf = post_as(
        &server,
        &cookie,
        "/auto-draft/autosave",
        &[("title", "T"), ("body", "x"), ("rev", &next.to_string())],
    );
    assert_eq!(no_csrf.0, 403);
    assert_eq!(
        post_as(
            &server,
            &cookie,
            "/nothing-here/autosave",
            &[("csrf", &token)]
        )
        .0,
        404
    );

    // Published: autosave writes drafts only.
    let (status, _, _) = post_as(&server, &cookie, "/auto-draft/publish", &[("csrf", &token)]);
    assert_eq!(status, 303);
    let published = save(next + 1, "Sneaky live edit.");
    assert_eq!(published.0, 409);
    assert_eq!(json(&published)["status"], "published");
    let (_, _, page) = server.send("GET", "/auto-draft/", &[("Cookie", &cookie)], "");
    assert!(!text(&page).contains("Sneaky"));

    // The plain form with a stale revision: 409, the text kept, nothing written.
    let (status, _, body) = post_as(
        &server,
        &cookie,
        "/auto-draft/edit",
        &[
            ("csrf", &token),
            ("title", "Auto draft"),
            ("body", "Old tab."),
            ("rev", "1"),
        ],
    );
    assert_eq!(status, 409);
    assert!(text(&body).contains("changed elsewhere"));
    assert!(text(&body).contains("Old tab."));
}
