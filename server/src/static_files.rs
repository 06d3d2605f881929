//! `/static/**`, from these places, first found wins: an app folder's `static/` (with
//! `--app`), the static directory (`SX_STATIC_DIR`, default `./static`, which may be missing), the files the binary embeds (the apps'
//! `static/style.css` and `static/favicon.svg`), and under `/static/client/` the browser
//! bundle wherever `client_bundle::locate` found it. Files come through tower-http's
//! `ServeDir` (content types, Last-Modified / If-Modified-Since / 304, a `.br` or `.gz`
//! sibling for clients that accept it); embedded files carry an ETag of their content.
//! The bundle's content-hashed files are cached as `immutable`. Never a dotfile and never
//! anything that resolves outside its directory (a symlink out of it included): 404.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::services::ServeDir;

use crate::client_bundle::{self, Bundle};
use crate::http::AppState;

/// The files the binary embeds: (name under `/static/`, content type, bytes).
pub const EMBEDDED: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../static/style.css")),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../static/favicon.svg"
        )),
    ),
];

struct Files {
    /// The app folder's `static/` (when serving one), then the static directory.
    dirs: Vec<PathBuf>,
    bundle: Option<Bundle>,
    /// (name, content type, bytes, ETag) of each embedded file.
    embedded: Vec<(&'static str, &'static str, &'static [u8], HeaderValue)>,
}

/// `/static/**` for the router (nested under `/static`).
pub fn router(state: &AppState) -> Router<Arc<AppState>> {
    let files = Arc::new(Files {
        dirs: state.static_dirs(),
        bundle: state.client_bundle.clone(),
        embedded: EMBEDDED
            .iter()
            .map(|&(name, kind, bytes)| (name, kind, bytes, etag(bytes)))
            .collect(),
    });
    Router::new().fallback(move |request: Request| {
        let files = files.clone();
        async move { files.serve(request).await }
    })
}

/// A strong ETag of `bytes`: the start of their SHA-256.
fn etag(bytes: &[u8]) -> HeaderValue {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
}

impl Files {
    async fn serve(&self, request: Request) -> Response {
        let raw = request.uri().path().to_string();
        let Some(segments) = segments(&raw) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let bundle_file = match (&self.bundle, segments.as_slice()) {
            (Some(bundle), [dir, name]) if dir == client_bundle::DIR => Some((bundle, name)),
            _ => None,
        };
        let mut response = if let Some(dir) = self.dirs.iter().find(|d| inside(d, &segments)) {
            from_dir(dir, request).await
        } else if let Some(&(_, kind, bytes, ref tag)) = match segments.as_slice() {
            [name] => self.embedded.iter().find(|e| e.0 == name),
            _ => None,
        } {
            embedded(&request, kind, bytes, tag)
        } else if let Some((bundle, _)) =
            bundle_file.filter(|(bundle, name)| inside(&bundle.dir, std::slice::from_ref(*name)))
        {
            // `/client/NAME` → `/NAME` in the bundle's directory.
            let rest = raw
                .trim_start_matches('/')
                .split_once('/')
                .map_or("", |(_, rest)| rest);
            let Ok(uri) = format!("/{rest}").parse::<Uri>() else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let (mut parts, body) = request.into_parts();
            parts.uri = uri;
            from_dir(&bundle.dir, Request::from_parts(parts, body)).await
        } else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let hashed = bundle_file.is_some_and(|(bundle, name)| bundle.is_hashed(name));
        if hashed
            && (response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED)
        {
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(client_bundle::IMMUTABLE),
            );
        }
        response
    }
}

/// A file from `dir` through `ServeDir`, its `.br` / `.gz` sibling when the client accepts
/// that encoding and one exists.
async fn from_dir(dir: &Path, request: Request) -> Response {
    let mut service = ServeDir::new(dir).precompressed_br().precompressed_gzip();
    match service.try_call(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => {
            tracing::error!("serving a static file from {}: {e}", dir.display());
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// An embedded file: GET or HEAD, 304 when the client has this ETag.
fn embedded(
    request: &Request,
    kind: &'static str,
    bytes: &'static [u8],
    tag: &HeaderValue,
) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET,HEAD")],
        )
            .into_response();
    }
    let matches = request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t.as_bytes() == tag.as_bytes());
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag.clone())]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::ETAG, tag.clone()),
        ],
        bytes,
    )
        .into_response()
}

/// The decoded segments of a path under `/static/`, or `None` when one is a dotfile (`.`
/// and `..` included) or holds a backslash or NUL, or the path is not UTF-8.
fn segments(path: &str) -> Option<Vec<String>> {
    let decoded = crate::apps::percent_decode(path)?;
    let mut out = Vec::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment.starts_with('.') || segment.contains('\\') || segment.contains('\0') {
            return None;
        }
        out.push(segment.to_string());
    }
    Some(out)
}

/// Whether `segments` name something that exists in `root` and resolves inside it.
fn inside(root: &Path, segments: &[String]) -> bool {
    let mut resolved = root.to_path_buf();
    resolved.extend(segments);
    match (root.canonicalize(), resolved.canonicalize()) {
        (Ok(root), Ok(resolved)) => resolved.starts_with(root),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_apps_static_directory_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../static");
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_file() && !name.starts_with('.') {
                assert!(
                    EMBEDDED.iter().any(|e| e.0 == name),
                    "static/{name} is not embedded"
                );
            }
        }
    }

    #[test]
    fn dotfiles_and_odd_segments_are_refused() {
        assert_eq!(segments("/a/b.css"), Some(vec!["a".into(), "b.css".into()]));
        for bad in [
            "/.env",
            "/a/../b",
            "/%2e%2e/x",
            "/a%5cb",
            "/a%00",
            "/%ff",
            "/%zz",
        ] {
            assert_eq!(segments(bad), None, "{bad}");
        }
    }
}
