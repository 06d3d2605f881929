//! Production serving over real HTTP: compressed responses (br, gzip) for text-like bodies
//! and never for small ones or images, the browser bundle's content-hashed files with their
//! immutable caching and precompressed variants, the embedded stylesheet and icon without
//! any static directory, and files in `SX_STATIC_DIR` overriding them.

mod common;

use std::io::Read;
use std::path::Path;

use common::{config, header, static_dir, text, Server};
use sx_server::client_bundle::{IMMUTABLE, MANIFEST};

/// A body as sent: chunked transfer decoded.
fn body_of(headers: &[(String, String)], body: Vec<u8>) -> Vec<u8> {
    if header(headers, "transfer-encoding") != Some("chunked") {
        return body;
    }
    let mut out = Vec::new();
    let mut rest = body.as_slice();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a size line");
        let size_text = std::str::from_utf8(&rest[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn decode(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "br" => brotli::Decompressor::new(bytes, 4096)
            .read_to_end(&mut out)
            .unwrap(),
        "gzip" => flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap(),
        other => panic!("unexpected encoding {other}"),
    };
    out
}

/// GET with extra headers; status, headers and the (de-chunked, still encoded) body.
fn get(
    server: &Server,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let (status, headers, body) = server.send("GET", path, extra, "");
    let body = body_of(&headers, body);
    (status, headers, body)
}

fn vary_names(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .filter(|(k, _)| k == "vary")
        .map(|(_, v)| v.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn text_like_responses_are_compressed_and_decompress_to_the_plain_body() {
    let none = tempfile::tempdir().unwrap();
    let server = Server::start(&none.path().join("missing"));
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("/", &[], "text/html"),
        (
            "/welcome/",
            &[("SX-Request", "true"), ("Accept", "text/sx")],
            "text/sx",
        ),
        ("/feed", &[], "application/feed+json"),
        ("/static/style.css", &[], "text/css"),
    ];
    for &(path, extra, kind) in cases {
        let (status, headers, plain) = get(&server, path, extra);
        assert_eq!(status, 200, "{path}");
        assert!(
            header(&headers, "content-type").unwrap().starts_with(kind),
            "{path}: {headers:?}"
        );
        assert_eq!(header(&headers, "content-encoding"), None, "{path}");
        assert!(vary_names(&headers).contains("accept-encoding"), "{path}");
        assert!(plain.len() > 256, "{path} is large enough to compress");
        for encoding in ["br", "gzip"] {
            let mut with = extra.to_vec();
            with.push(("Accept-Encoding", encoding));
            let (status, headers, encoded) = get(&server, path, &with);
            assert_eq!(status, 200, "{path} {encoding}");
            assert_eq!(
                header(&headers, "content-encoding"),
                Some(encoding),
                "{path}"
            );
            assert!(vary_names(&headers).contains("accept-encoding"), "{path}");
            assert!(encoded.len() < plain.len(), "{path} {encoding} is smaller");
            assert_eq!(decode(encoding, &encoded), plain, "{path} {encoding}");
            if let Some(tag) = header(&headers, "etag") {
                assert!(
                    tag.starts_with("W/"),
                    "{path}: an encoded body's ETag is weak"
                );
            }
        }
    }
}

#[test]
fn small_bodies_and_images_are_sent_as_they_are() {
    let statics = static_dir();
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n"
        .iter()
        .copied()
        .chain((0..4000u32).map(|i| (i % 7) as u8))
        .collect();
    std::fs::write(statics.path().join("picture.png"), &png).unwrap();
    let server = Server::start(statics.path());
    for path in ["/health", "/static/style.css", "/static/favicon.svg"] {
        let (status, headers, _) = get(&server, path, &[("Accept-Encoding", "br, gzip")]);
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&headers, "content-encoding"),
            None,
            "{path} is small"
        );
    }
    let (status, headers, body) = get(
        &server,
        "/static/picture.png",
        &[("Accept-Encoding", "br, gzip")],
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("image/png"));
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(body, png);
}

/// A wasm module carrying `stamp` in its `sx-stamp` section, padded to `pad` bytes more.
fn stamped_module(stamp: &str, pad: usize) -> Vec<u8> {
    let mut section = vec![8u8];
    section.extend_from_slice(b"sx-stamp");
    section.extend_from_slice(stamp.as_bytes());
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.push(0);
    wasm.push(section.len() as u8);
    wasm.extend(section);
    // Another custom section, so the module is large enough to compress.
    let filler = vec![b'x'; pad];
    let mut body = vec![3u8];
    body.extend_from_slice(b"pad");
    body.extend_from_slice(&filler);
    wasm.push(0);
    let mut size = body.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            wasm.push(byte);
            break;
        }
        wasm.push(byte | 0x80);
    }
    wasm.extend(body);
    wasm
}

const SCRIPT: &str = "sx-client-00112233aabbccdd.js";
const WASM: &str = "sx-client-00112233aabbccdd_bg.wasm";

/// A bundle as the post-build step leaves it, with stand-ins for the compressed files
/// (their bytes are what must come back).
fn write_bundle(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(MANIFEST),
        format!(r#"{{"script": "{SCRIPT}", "wasm": "{WASM}"}}"#),
    )
    .unwrap();
    let script = format!("const url = new URL('{WASM}', import.meta.url);\n").repeat(20);
    std::fs::write(dir.join(SCRIPT), script).unwrap();
    std::fs::write(
        dir.join(WASM),
        stamped_module(&sx_kernel::sxbc::stamp(), 2000),
    )
    .unwrap();
    for name in [SCRIPT, WASM] {
        std::fs::write(dir.join(format!("{name}.br")), format!("br of {name}")).unwrap();
        std::fs::write(dir.join(format!("{name}.gz")), format!("gz of {name}")).unwrap();
    }
}

#[test]
fn the_bundle_beside_the_binary_is_hashed_immutable_and_precompressed() {
    let statics = static_dir();
    let beside = tempfile::tempdir().unwrap();
    write_bundle(&beside.path().join("client"));
    let data = tempfile::tempdir().unwrap();
    let server = Server::launch(sx_server::Config {
        bundle_dirs: vec![
            beside.path().join("nothing-here"),
            beside.path().join("client"),
        ],
        ..config(data.path(), statics.path())
    });
    // The shell loads the hashed module and preloads its wasm; the loader imports it.
    let (_, _, page) = get(&server, "/", &[]);
    let page = text(&page);
    assert!(
        page.contains(&format!("href=\"/static/client/{SCRIPT}\"")),
        "{page}"
    );
    assert!(
        page.contains(&format!("href=\"/static/client/{WASM}\"")),
        "{page}"
    );
    let (status, _, boot) = get(&server, "/__sx/boot.js", &[]);
    assert_eq!(status, 200);
    assert!(text(&boot).contains(&format!("\"/static/client/{SCRIPT}\"")));

    for name in [SCRIPT, WASM] {
        let path = format!("/static/client/{name}");
        let (status, headers, plain) = get(&server, &path, &[]);
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "cache-control"), Some(IMMUTABLE), "{path}");
        assert_eq!(
            plain,
            std::fs::read(beside.path().join("client").join(name)).unwrap()
        );
        for (encoding, suffix) in [("br", "br"), ("gzip", "gz")] {
            let (status, headers, body) = get(&server, &path, &[("Accept-Encoding", encoding)]);
            assert_eq!(status, 200, "{path} {encoding}");
            assert_eq!(
                header(&headers, "content-encoding"),
                Some(encoding),
                "{path}"
            );
            assert_eq!(header(&headers, "cache-control"), Some(IMMUTABLE), "{path}");
            assert!(vary_names(&headers).contains("accept-encoding"), "{path}");
            assert_eq!(text(&body), format!("{suffix} of {name}"), "{path}");
        }
        // Revalidation still works.
        let etag = header(&headers, "etag")
            .or(header(&headers, "last-modified"))
            .map(str::to_string);
        assert!(etag.is_some(), "{path} can be revalidated");
    }
    let wasm = get(&server, &format!("/static/client/{WASM}"), &[]).1;
    assert_eq!(header(&wasm, "content-type"), Some("application/wasm"));
    // The manifest and other files are not immutable; the static directory still serves.
    let (status, headers, _) = get(&server, &format!("/static/client/{MANIFEST}"), &[]);
    assert_eq!(status, 200);
    assert_ne!(header(&headers, "cache-control"), Some(IMMUTABLE));
    let (status, headers, _) = get(&server, "/static/style.css", &[]);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "cache-control"), None);
    for missing in [
        "/static/client/nothing.js",
        "/static/client/.hidden",
        "/static/client/../client/x",
    ] {
        assert_eq!(get(&server, missing, &[]).0, 404, "{missing}");
    }
}

#[test]
fn a_bundle_in_the_static_directory_wins_and_is_immutable_too() {
    let statics = static_dir();
    write_bundle(&statics.path().join("client"));
    let server = Server::start(statics.path());
    let (status, headers, body) = get(
        &server,
        &format!("/static/client/{WASM}"),
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "cache-control"), Some(IMMUTABLE));
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(text(&body), format!("gz of {WASM}"));
}

#[test]
fn the_embedded_stylesheet_and_icon_need_no_static_directory() {
    let none = tempfile::tempdir().unwrap();
    let server = Server::start(&none.path().join("missing"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../static");
    for (path, file, kind) in [
        ("/static/style.css", "style.css", "text/css; charset=utf-8"),
        ("/static/favicon.svg", "favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = get(&server, path, &[]);
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "content-type"), Some(kind));
        assert_eq!(body, std::fs::read(root.join(file)).unwrap(), "{path}");
        let etag = header(&headers, "etag").expect("an ETag").to_string();
        let (status, headers, body) = get(&server, path, &[("If-None-Match", &etag)]);
        assert_eq!(status, 304, "{path}");
        assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
        assert!(body.is_empty());
        let (status, _, _) = get(&server, path, &[("If-None-Match", "\"other\"")]);
        assert_eq!(status, 200);
    }
    assert_eq!(server.send("POST", "/static/style.css", &[], "x=1").0, 405);
    assert_eq!(get(&server, "/static/other.css", &[]).0, 404);
    assert_eq!(get(&server, "/static/client/sx-client.js", &[]).0, 404);
    // No bundle: pages have no script.
    let (_, _, page) = get(&server, "/", &[]);
    assert!(!text(&page).contains("/__sx/boot.js"));
}

#[test]
fn a_file_in_the_static_directory_overrides_the_embedded_one() {
    let statics = static_dir();
    let server = Server::start(statics.path());
    let (status, _, body) = get(&server, "/static/style.css", &[]);
    assert_eq!(status, 200);
    assert_eq!(body, b"body { color: black; }\n");
    // The icon is not in that directory: the embedded one is served.
    let (status, _, body) = get(&server, "/static/favicon.svg", &[]);
    assert_eq!(status, 200);
    assert!(text(&body).contains("<svg"));
}
