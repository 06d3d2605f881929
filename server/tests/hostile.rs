//! Hostile input over real HTTP: thousands of random requests — methods, paths, cookies,
//! tokens, headers, bodies, with and without a valid session — and never a 500, never a
//! hang, never a redirect off the site, and the server still answers afterwards — also
//! while stalled connections (unfinished headers) pile up. Seeded, so a failure can be
//! replayed (`SX_HOSTILE_SEED`).

mod common;

use std::io::Write;
use std::time::Duration;

use common::{config, header, session_cookie, static_dir, text, Server};
use sx_server::config::Limits;
use sx_server::Config;

/// xorshift64*: enough randomness for inputs, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    /// Text that tends to break things: escapes, percent-encodings, odd characters.
    fn text(&mut self) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "9",
            "-",
            " ",
            "/",
            "\\",
            "..",
            "%2e",
            "%2f",
            "%00",
            "%",
            "%zz",
            "+",
            "&",
            "=",
            "?",
            "#",
            ";",
            "\"",
            "'",
            "<script>",
            "é",
            "😀",
            "\u{7f}",
            "(",
            ")",
            "{",
            ":x",
            "nil",
            "welcome",
            "csrf",
            "sx_session",
            "Bearer",
            ".",
            "~",
            "\t",
            "\n",
            "\r",
            "//",
            "evil.example",
            "https:",
            "%09",
            "%5c",
            "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
        ];
        let n = self.below(12);
        (0..n).map(|_| self.pick(PIECES)).collect()
    }
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[test]
fn random_requests_never_get_a_500() {
    let seed = std::env::var("SX_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001u64);
    let mut rng = Rng(seed);
    let (data, statics) = (tempfile::tempdir().unwrap(), static_dir());
    let server = Server::launch(Config {
        admin_user: Some("ann".into()),
        admin_password: Some("correct horse battery".into()),
        limits: Limits {
            header: Duration::from_millis(500),
            ..Limits::default()
        },
        ..config(data.path(), statics.path())
    });
    let mut stalled = Vec::new();

    // A real session, so that the write paths see hostile input too.
    let (_, headers, _) = server.send(
        "POST",
        "/login",
        &[],
        "username=ann&password=correct+horse+battery",
    );
    let cookie = session_cookie(&headers);
    let (_, _, page) = server.send("GET", "/new", &[("Cookie", &cookie)], "");
    let page = text(&page);
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = page[at..].split('"').next().unwrap().to_string();

    let paths = [
        "/",
        "/new",
        "/login",
        "/logout",
        "/feed",
        "/health",
        "/welcome/",
        "/welcome/edit",
        "/welcome/publish",
        "/static/style.css",
        "/static/",
    ];
    for i in 0..1500 {
        let method = rng.pick(&["GET", "POST", "POST", "PUT", "DELETE", "HEAD", "PATCH"]);
        let path = match rng.below(4) {
            0 => rng.pick(&paths).to_string(),
            1 => format!("/{}/", encode(&rng.text())),
            2 => format!(
                "/{}/{}",
                encode(&rng.text()),
                rng.pick(&["edit", "publish", ""])
            ),
            _ => format!(
                "{}?{}={}",
                rng.pick(&paths),
                encode(&rng.text()),
                encode(&rng.text())
            ),
        };
        let mut headers: Vec<(&str, String)> = Vec::new();
        match rng.below(5) {
            0 => headers.push(("Cookie", cookie.clone())),
            1 => headers.push(("Cookie", format!("sx_session={}", rng.text()))),
            2 => headers.push(("Authorization", format!("Bearer {}", rng.text()))),
            _ => {}
        }
        match rng.below(6) {
            0 => headers.push(("Origin", format!("http://{}", rng.text()))),
            1 => headers.push(("Origin", "http://localhost".into())),
            2 => headers.push((
                "Sec-Fetch-Site",
                rng.pick(&["cross-site", "same-origin", "none"]).into(),
            )),
            _ => {}
        }
        if rng.below(50) == 0 {
            // A client that starts a request and never finishes its headers.
            let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
            let _ = slow.write_all(format!("{method} {path} HTTP/1.1\r\nHost: local").as_bytes());
            stalled.push(slow);
        }
        if rng.below(2) == 0 {
            headers.push(("SX-Request", "true".into()));
            headers.push(("Accept", rng.pick(&["text/sx", "text/html", "*/*"]).into()));
        }
        let mut fields = vec![];
        for name in ["csrf", "title", "body", "username", "password", "next"] {
            match rng.below(3) {
                0 => {}
                1 => fields.push((name, rng.text())),
                _ => fields.push((
                    name,
                    if name == "csrf" {
                        csrf.clone()
                    } else {
                        rng.text()
                    },
                )),
            }
        }
        let mut body: String = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        if rng.below(10) == 0 {
            body = rng.text(); // not a form at all
        }
        let header_refs: Vec<(&str, &str)> =
            headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, response_headers, answer) = server.send(method, &path, &header_refs, &body);
        assert!(
            status != 0 && status != 500,
            "request {i} (seed {seed}): {method} {path} {headers:?} {body:?} → {status}: {}",
            text(&answer)
        );
        if let Some(location) = header(&response_headers, "location") {
            assert!(
                sx_server::render::is_local_path(location),
                "request {i} (seed {seed}): {method} {path} {body:?} → Location {location:?}"
            );
        }
    }
    assert!(!stalled.is_empty());
    assert_eq!(server.get("/health").0, 200);
}
