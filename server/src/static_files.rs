//! `/static/**`: files from the static directory through tower-http's `ServeDir` (content
//! types, ETag / Last-Modified / 304; `..` never leaves the directory), never a dotfile and
//! never anything that resolves outside the directory (a symlink out of it included): 404.
//! Several directories may be given: the first that has a file serves it.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use tower_http::services::ServeDir;

use crate::http::AppState;

/// `/static/**`: files under `dir`, never a dotfile and never anything that resolves
/// outside it (a symlink out of the directory included). ServeDir already refuses `..`.
pub fn router(dirs: &[PathBuf]) -> Router<Arc<AppState>> {
    let roots = dirs.to_vec();
    // The first directory that has the file serves it.
    let mut files = Router::new();
    for dir in dirs.iter().rev() {
        files = Router::new().fallback_service(ServeDir::new(dir).fallback(files));
    }
    Router::new()
        .fallback_service(files)
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let allowed = allowed(&roots, request.uri().path());
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

/// Whether `path` may be served: no dotfile anywhere in it, and in the first directory that
/// has it, it resolves inside that directory.
fn allowed(roots: &[PathBuf], path: &str) -> bool {
    let Some(decoded) = percent_decode(path) else {
        return false;
    };
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    if segments
        .iter()
        .any(|s| s.starts_with('.') || s.contains('\\') || s.contains('\0'))
    {
        return false;
    }
    for root in roots {
        let resolved: PathBuf = segments.iter().fold(root.clone(), |p, s| p.join(s));
        if let (Ok(root), Ok(resolved)) = (root.canonicalize(), resolved.canonicalize()) {
            return resolved.starts_with(root);
        }
    }
    // Nowhere: ServeDir answers 404.
    true
}

fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
