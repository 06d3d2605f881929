//! Response compression: tower-http's `CompressionLayer` (br, gzip) for text-like bodies
//! above [`MIN_SIZE`] — pages, SX wire text, JSON, CSS, JS, wasm, SVG —, never for a
//! response that already has a `Content-Encoding` (the bundle's precompressed files) or a
//! range; and `Vary: Accept-Encoding` on every response whose body may be encoded, so a
//! shared cache never hands a compressed copy to a client that cannot read it; an encoded
//! response's ETag is made weak (it names the content, not these bytes).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::Response;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;

/// Bodies smaller than this are sent as they are (compression would not pay for itself).
pub const MIN_SIZE: u16 = 256;

/// The media types that are compressed (parameters such as `charset` aside).
pub const COMPRESSIBLE: &[&str] = &[
    "text/html",
    "text/sx",
    "application/json",
    "application/feed+json",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/wasm",
    "image/svg+xml",
];

/// Whether a response's `Content-Type` is one of [`COMPRESSIBLE`].
pub fn compressible(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .is_some_and(|media| COMPRESSIBLE.iter().any(|c| media.eq_ignore_ascii_case(c)))
}

fn text_like(_: StatusCode, _: Version, headers: &HeaderMap, _: &axum::http::Extensions) -> bool {
    compressible(headers)
}

/// Compression of text-like bodies above [`MIN_SIZE`] (br, gzip); `vary` goes around it.
pub fn layer() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .br(true)
        .gzip(true)
        .compress_when(SizeAbove::new(MIN_SIZE).and(text_like))
}

/// `Vary: Accept-Encoding` on a response that is or could be encoded, once.
pub fn vary<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    let may_vary = compressible(headers) || headers.contains_key(header::CONTENT_ENCODING);
    let said = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| {
            let name = name.trim();
            name == "*" || name.eq_ignore_ascii_case("accept-encoding")
        });
    if may_vary && !said {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    // An encoded body is another representation: its validator may only be weak.
    if headers.contains_key(header::CONTENT_ENCODING) {
        let weak = headers
            .get(header::ETAG)
            .filter(|tag| tag.as_bytes().starts_with(b"\""))
            .and_then(|tag| HeaderValue::from_bytes(&[b"W/", tag.as_bytes()].concat()).ok());
        if let Some(weak) = weak {
            headers.insert(header::ETAG, weak);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_like_types_are_compressible_whatever_their_parameters() {
        let with = |kind: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(kind).unwrap());
            compressible(&headers)
        };
        for yes in [
            "text/html; charset=utf-8",
            "text/sx",
            "application/json",
            "application/feed+json; charset=utf-8",
            "TEXT/CSS",
            "text/javascript",
            "application/javascript",
            "application/wasm",
            "image/svg+xml",
        ] {
            assert!(with(yes), "{yes}");
        }
        for no in [
            "image/png",
            "application/octet-stream",
            "text/event-stream",
            "text/plain",
        ] {
            assert!(!with(no), "{no}");
        }
        assert!(!compressible(&HeaderMap::new()));
    }
}
