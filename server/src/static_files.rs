//! `/static/**`: files from the static directory through tower-http's `ServeDir` (content
//! types, ETag / Last-Modified / 304; `..` never leaves the directory), never a dotfile and
//! never anything that resolves outside the directory (a symlink out of it included): 404.

use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use tower_http::services::ServeDir;

use crate::http::AppState;

/// `/static/**`: files under `dir`, never a dotfile and never anything that resolves
/// outside it (a symlink out of the directory included). ServeDir already refuses `..`.
pub fn router(dir: &Path) -> Router<Arc<AppState>> {
    let root = dir.to_path_buf();
    Router::new()
        .fallback_service(ServeDir::new(dir))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let allowed = allowed(&root, request.uri().path());
                async move {
                    if allowed {
                        next.run(request).await
                    } else {
                        StatusCode::NOT_FOUND.into_response()
                    }
                }
            },
        ))
}

fn allowed(root: &Path, path: &str) -> bool {
    let Ok(decoded) = percent_decode(path) else {
        return false;
    };
    let mut resolved = root.to_path_buf();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment.starts_with('.') || segment.contains('\\') || segment.contains('\0') {
            return false;
        }
        resolved.push(segment);
    }
    // Whatever the path names must resolve inside the root (a missing file is ServeDir's
    // 404 either way).
    match (root.canonicalize(), resolved.canonicalize()) {
        (Ok(root), Ok(resolved)) => resolved.starts_with(root),
        _ => false,
    }
}

fn percent_decode(path: &str) -> Result<String, ()> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(())?;
            let hex = std::str::from_utf8(hex).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}
