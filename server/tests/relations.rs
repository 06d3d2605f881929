//! Tags and related posts over real HTTP with temporary stores: the `tags` field, /tags and
//! /tags/:tag, the Related list of a post page, the relate picker and its POSTs, and the
//! Datalog facts each worker keeps current (after writes, across workers, after a restart).

mod common;

use common::{
    admin_config, csrf_of, form, header, session_cookie, static_dir, text, user_with_token, Server,
    ADMIN, PASSWORD,
};

type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// A store with two authors who may write and publish (`wes`, `ola`) and the admin `ann`;
/// returns the store's directory and the authors' tokens.
fn authors() -> (tempfile::TempDir, String, String) {
    let data = tempfile::tempdir().unwrap();
    let wes = user_with_token(data.path(), "wes", &["write", "publish"]);
    let ola = user_with_token(data.path(), "ola", &["write", "publish"]);
    (data, wes, ola)
}

fn start(data: &tempfile::TempDir, statics: &tempfile::TempDir) -> Server {
    Server::launch(admin_config(data.path(), statics.path()))
}

fn as_user(server: &Server, token: &str, method: &str, path: &str, body: &str) -> Response {
    let bearer = format!("Bearer {token}");
    server.send(method, path, &[("Authorization", &bearer)], body)
}

fn page(server: &Server, token: Option<&str>, path: &str) -> (u16, String) {
    let (status, _, body) = match token {
        Some(token) => as_user(server, token, "GET", path, ""),
        None => server.get(path),
    };
    (status, text(&body))
}

/// Waits until the clock has moved on a millisecond, so that the next write is strictly
/// newer than the last (the pages rank by time).
fn next_millisecond() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    let start = now();
    while now() == start {
        std::thread::yield_now();
    }
}

/// Writes a post as `token` and returns its slug; published unless `draft`.
fn write(server: &Server, token: &str, title: &str, tags: &str, draft: bool) -> String {
    next_millisecond();
    let body = form(&[("title", title), ("body", "Text."), ("tags", tags)]);
    let (status, headers, body) = as_user(server, token, "POST", "/new", &body);
    assert_eq!(status, 303, "{}", text(&body));
    let slug = header(&headers, "location")
        .unwrap()
        .trim_matches('/')
        .to_string();
    if !draft {
        let (status, _, _) = as_user(server, token, "POST", &format!("/{slug}/publish"), "");
        assert_eq!(status, 303);
    }
    slug
}

/// The slugs a section of a page links to, in order (`class` names the section).
fn links_in(page: &str, class: &str) -> Vec<String> {
    let Some(start) = page.find(&format!("<section class=\"{class}\">")) else {
        return Vec::new();
    };
    let section = &page[start..start + page[start..].find("</section>").unwrap()];
    section
        .split("href=\"/")
        .skip(1)
        .map(|rest| rest.split('/').next().unwrap().to_string())
        .collect()
}

/// The count /tags shows for `tag`, if it is listed.
fn tag_count(page: &str, tag: &str) -> Option<u32> {
    let link = format!("<a href=\"/tags/{tag}\">{tag}</a> <span class=\"meta\">");
    let at = page.find(&link)? + link.len();
    page[at..].split('<').next()?.parse().ok()
}

/// The slugs of the posts a /tags/:tag page lists, in order.
fn listed(page: &str) -> Vec<String> {
    page.split("<article class=\"summary\"><h2><a href=\"/")
        .skip(1)
        .map(|rest| rest.split('/').next().unwrap().to_string())
        .collect()
}

fn of(slugs: &[&String]) -> Vec<String> {
    slugs.iter().map(|s| s.to_string()).collect()
}

fn relate(server: &Server, token: &str, slug: &str, action: &str, other: &str) -> Response {
    let body = form(&[("other", other)]);
    as_user(server, token, "POST", &format!("/{slug}/{action}"), &body)
}

#[test]
fn tags_are_parsed_listed_by_count_and_drafts_stay_their_authors() {
    let ((data, wes, ola), statics) = (authors(), static_dir());
    let server = start(&data, &statics);

    // Comma-separated, trimmed, lower-cased, each once; shown as links on the post page.
    let alpha = write(&server, &wes, "Alpha", " Music, JAZZ ,, music ", false);
    let (_, body) = page(&server, None, &format!("/{alpha}/"));
    let tags = "<span class=\"tags\"><a href=\"/tags/music\">music</a><a href=\"/tags/jazz\">jazz</a></span>";
    assert!(body.contains(tags), "{body}");
    // The editor shows them back.
    let (_, body) = page(&server, Some(&wes), &format!("/{alpha}/edit"));
    assert!(
        body.contains("name=\"tags\" value=\"music, jazz\""),
        "{body}"
    );

    // /tags counts published posts only (the samples tag gig-night `music`).
    let draft = write(&server, &wes, "Beta", "jazz, secret", true);
    for reader in [None, Some(wes.as_str()), Some(ola.as_str())] {
        let (status, body) = page(&server, reader, "/tags");
        assert_eq!(status, 200);
        assert_eq!(tag_count(&body, "music"), Some(2), "{body}");
        assert_eq!(tag_count(&body, "jazz"), Some(1));
        assert_eq!(tag_count(&body, "sx"), Some(2));
        assert_eq!(tag_count(&body, "secret"), None);
    }

    // /tags/:tag, newest first; a draft only for its author; 404 for a tag with nothing.
    assert_eq!(
        listed(&page(&server, None, "/tags/music").1),
        [alpha.as_str(), "gig-night"]
    );
    assert_eq!(
        listed(&page(&server, Some(&ola), "/tags/jazz").1),
        [alpha.as_str()]
    );
    // Any case finds the lower-cased tag.
    assert_eq!(
        listed(&page(&server, None, "/tags/JaZz").1),
        [alpha.as_str()]
    );
    let (_, body) = page(&server, Some(&wes), "/tags/jazz");
    assert!(
        body.contains(&format!("href=\"/{draft}/\">Beta</a>")),
        "{body}"
    );
    assert_eq!(page(&server, None, "/tags/secret").0, 404);
    assert_eq!(page(&server, Some(&ola), "/tags/secret").0, 404);
    assert_eq!(page(&server, Some(&wes), "/tags/secret").0, 200);
    assert_eq!(page(&server, None, "/tags/no-such-tag").0, 404);

    // An edit without a `tags` field (a script's) keeps them.
    let body = form(&[("title", "Alpha"), ("body", "Edited.")]);
    let (status, _, _) = as_user(&server, &wes, "POST", &format!("/{alpha}/edit"), &body);
    assert_eq!(status, 303);
    assert!(page(&server, None, &format!("/{alpha}/")).1.contains(tags));

    // Facts follow edits and publications without a restart, on every worker.
    let body = form(&[("title", "Alpha"), ("body", "Text."), ("tags", "jazz")]);
    let (status, _, _) = as_user(&server, &wes, "POST", &format!("/{alpha}/edit"), &body);
    assert_eq!(status, 303);
    let (status, _, _) = as_user(&server, &wes, "POST", &format!("/{draft}/publish"), "");
    assert_eq!(status, 303);
    for _ in 0..4 {
        assert_eq!(listed(&page(&server, None, "/tags/music").1), ["gig-night"]);
        let (_, body) = page(&server, None, "/tags");
        assert_eq!(tag_count(&body, "jazz"), Some(2));
        assert_eq!(tag_count(&body, "secret"), Some(1));
    }

    // Tags that cannot be a path segment, or too many, are refused with the text kept.
    for (tags, problem) in [
        ("a/b", "may not contain"),
        ("x, ..", "nor be . or .."),
        ("1,2,3,4,5,6,7,8,9,10,11", "At most 10"),
    ] {
        let body = form(&[("title", "Gamma"), ("body", ""), ("tags", tags)]);
        let (status, _, body) = as_user(&server, &wes, "POST", "/new", &body);
        assert_eq!(status, 422);
        assert!(text(&body).contains(problem), "{}", text(&body));
        let kept: Vec<&str> = tags.split(',').map(str::trim).collect();
        let kept = format!("name=\"tags\" value=\"{}\"", kept.join(", "));
        assert!(text(&body).contains(&kept), "{kept}");
    }
}

/// Posts around a pivot: `x` shares two of its tags, `y` and then `z` (newer) one each, `w`
/// none but is related to it explicitly; a draft of the pivot's author shares all three,
/// and a draft of another author too.
struct Around {
    pivot: String,
    x: String,
    y: String,
    z: String,
    w: String,
    own_draft: String,
    other_draft: String,
}

fn around(server: &Server, wes: &str, ola: &str) -> Around {
    let posts = Around {
        x: write(server, wes, "Ex", "a, b", false),
        y: write(server, wes, "Why", "a", false),
        z: write(server, ola, "Zed", "a", false),
        w: write(server, ola, "Double-u", "", false),
        own_draft: write(server, wes, "Mine", "a, b, c", true),
        other_draft: write(server, ola, "Hers", "a, b, c", true),
        pivot: write(server, wes, "Pivot", "a, b, c", false),
    };
    let (status, headers, _) = relate(server, wes, &posts.pivot, "relate", &posts.w);
    assert_eq!(status, 303);
    assert_eq!(
        header(&headers, "location"),
        Some(&*format!("/{}/", posts.pivot))
    );
    posts
}

#[test]
fn related_posts_are_explicit_ones_then_by_shared_tags_then_newest() {
    let ((data, wes, ola), statics) = (authors(), static_dir());
    let server = start(&data, &statics);
    let p = around(&server, &wes, &ola);
    let pivot = format!("/{}/", p.pivot);

    // Never itself, never a draft the reader cannot see: each author sees their own.
    let related = |reader| links_in(&page(&server, reader, &pivot).1, "related");
    assert_eq!(related(None), of(&[&p.w, &p.x, &p.z, &p.y]));
    assert_eq!(
        related(Some(&wes)),
        of(&[&p.w, &p.own_draft, &p.x, &p.z, &p.y])
    );
    assert_eq!(
        related(Some(&ola)),
        of(&[&p.w, &p.other_draft, &p.x, &p.z, &p.y])
    );
    // Both directions: the explicit relation shows on the other post too.
    assert_eq!(
        links_in(&page(&server, None, &format!("/{}/", p.w)).1, "related"),
        of(&[&p.pivot])
    );
    // A post with no tags and no relation has no Related section.
    let lone = write(&server, &wes, "Lone", "", false);
    assert!(!page(&server, None, &format!("/{lone}/"))
        .1
        .contains("Related"));
}

#[test]
fn the_relate_picker_relates_and_unrelates_both_ways() {
    let ((data, wes, ola), statics) = (authors(), static_dir());
    let server = start(&data, &statics);
    let p = around(&server, &wes, &ola);
    let picker = format!("/{}/relate", p.pivot);

    // Ranked like Related, without the posts related already; the author's own draft is a
    // candidate, another author's is not.
    let (status, body) = page(&server, Some(&wes), &picker);
    assert_eq!(status, 200);
    assert_eq!(links_in(&body, "related"), of(&[&p.w]));
    let candidates = links_in(&body, "candidates");
    assert_eq!(candidates[..4], of(&[&p.own_draft, &p.x, &p.z, &p.y]));
    assert!(!candidates.contains(&p.other_draft) && !candidates.contains(&p.w));
    assert!(!candidates.contains(&p.pivot));
    // Filtered by a query (title or slug, any case).
    let (_, body) = page(&server, Some(&wes), &format!("{picker}?q=ZE"));
    assert_eq!(links_in(&body, "candidates"), of(&[&p.z]));

    // Relating records both directions and goes back to the post. Explicitly related posts
    // come first, ranked among themselves like the rest (`y` shares a tag, `w` none).
    let (status, headers, _) = relate(&server, &wes, &p.pivot, "relate", &p.y);
    assert_eq!(status, 303);
    assert_eq!(
        header(&headers, "location"),
        Some(&*format!("/{}/", p.pivot))
    );
    let related = |slug: &str| links_in(&page(&server, None, &format!("/{slug}/")).1, "related");
    assert_eq!(related(&p.pivot), of(&[&p.y, &p.w, &p.x, &p.z]));
    assert_eq!(related(&p.y)[0], p.pivot);

    // Unrelating undoes both.
    let (status, _, _) = relate(&server, &wes, &p.pivot, "unrelate", &p.w);
    assert_eq!(status, 303);
    assert_eq!(related(&p.pivot), of(&[&p.y, &p.x, &p.z]));
    assert!(related(&p.w).is_empty());

    // Bad input is a clear 4xx, never a 500: itself, missing, invisible, not related.
    for (action, other) in [
        ("relate", p.pivot.as_str()),
        ("relate", "no-such-post"),
        ("relate", p.other_draft.as_str()),
        ("relate", ""),
        ("unrelate", p.x.as_str()),
    ] {
        let (status, _, body) = relate(&server, &wes, &p.pivot, action, other);
        assert_eq!(status, 422, "{action} {other}");
        assert!(
            text(&body).contains("class=\"problems\""),
            "{}",
            text(&body)
        );
    }
    assert_eq!(relate(&server, &wes, "no-such-post", "relate", &p.x).0, 404);
    assert_eq!(page(&server, Some(&wes), "/no-such-post/relate").0, 404);
    // Only someone who may change the post: nobody is 401, another author 403.
    assert_eq!(page(&server, None, &picker).0, 401);
    assert_eq!(
        server
            .send(
                "POST",
                &format!("/{}/relate", p.pivot),
                &[],
                &form(&[("other", &p.x)])
            )
            .0,
        401
    );
    assert_eq!(page(&server, Some(&ola), &picker).0, 403);
    assert_eq!(relate(&server, &ola, &p.pivot, "relate", &p.z).0, 403);
}

#[test]
fn a_session_relates_with_its_csrf_token_only() {
    let ((data, wes, ola), statics) = (authors(), static_dir());
    let server = start(&data, &statics);
    let p = around(&server, &wes, &ola);
    let (status, headers, _) = server.send(
        "POST",
        "/login",
        &[],
        &form(&[("username", ADMIN), ("password", PASSWORD)]),
    );
    assert_eq!(status, 303);
    let cookie = session_cookie(&headers);
    let (status, _, body) = server.send(
        "GET",
        &format!("/{}/relate", p.pivot),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(status, 200);
    let token = csrf_of(&body);
    let post = |pairs: &[(&str, &str)]| {
        let path = format!("/{}/relate", p.pivot);
        server
            .send("POST", &path, &[("Cookie", &cookie)], &form(pairs))
            .0
    };
    let related = || links_in(&page(&server, None, &format!("/{}/", p.pivot)).1, "related");
    assert_eq!(post(&[("other", &p.x)]), 403);
    assert_eq!(post(&[("other", &p.x), ("csrf", "0000")]), 403);
    assert_eq!(related(), of(&[&p.w, &p.x, &p.z, &p.y]));
    // The admin may change any post.
    assert_eq!(post(&[("other", &p.x), ("csrf", &token)]), 303);
    assert_eq!(related(), of(&[&p.x, &p.w, &p.z, &p.y]));
}

#[test]
fn facts_are_loaded_from_the_store_at_start() {
    let ((data, wes, ola), statics) = (authors(), static_dir());
    let server = start(&data, &statics);
    let p = around(&server, &wes, &ola);
    let before = (
        page(&server, None, "/tags").1,
        page(&server, None, &format!("/{}/", p.pivot)).1,
    );
    server.stop().unwrap();

    let server = start(&data, &statics);
    assert_eq!(page(&server, None, "/tags").1, before.0);
    let after = page(&server, None, &format!("/{}/", p.pivot)).1;
    assert_eq!(links_in(&after, "related"), links_in(&before.1, "related"));
    assert_eq!(links_in(&after, "related"), of(&[&p.w, &p.x, &p.z, &p.y]));
}
