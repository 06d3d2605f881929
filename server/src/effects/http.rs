//! The `http/request` effect: outgoing HTTP for handlers, served by hyper's pooled client.
//! `{:op "http/request" :url "http://…" [:method "GET"] [:headers {…}] [:body "…"]}` answers
//! `{:status n :headers {name value} :body text}`; a failure raises `http-error`. `http://`
//! and `https://` (rustls, with the Mozilla root certificates of webpki-roots), with a time
//! limit and a response size limit.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use sx_kernel::error::ErrorValue;
use sx_kernel::value::{kw_get, Dict, Key};
use sx_kernel::Value;

/// The longest an outgoing request may take, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Larger responses are refused.
pub const MAX_RESPONSE: usize = 8 << 20;

fn failed(message: String, url: &str) -> Value {
    ErrorValue::value("http-error", message, vec![Value::str(url)])
}

fn text_field(d: &Dict, name: &str) -> Result<Option<String>, Value> {
    match kw_get(d, name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.to_string())),
        Some(other) => Err(sx_kernel::error::type_error(
            format!("http/request :{name} must be a string"),
            vec![other.clone()],
        )),
    }
}

/// The pooled client every worker shares: http, and https verified against webpki's roots.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A new pooled client (both schemes).
pub fn client() -> HttpClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

pub async fn request(d: &Dict, cx: &super::Context<'_>) -> Result<Value, Value> {
    let client = &cx.services.client;
    let url = text_field(d, "url")?
        .ok_or_else(|| sx_kernel::error::type_error("http/request needs a :url string", vec![]))?;
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| failed(format!("bad url: {e}"), &url))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(failed(
                "the url must start with http:// or https://".into(),
                &url,
            ))
        }
    }
    let method = text_field(d, "method")?.unwrap_or_else(|| "GET".into());
    let method = hyper::Method::from_bytes(method.to_uppercase().as_bytes())
        .map_err(|_| failed(format!("bad method {method:?}"), &url))?;
    let mut builder = hyper::Request::builder().method(method).uri(uri);
    if let Some(Value::Dict(headers)) = d.get(&Key(Value::kw("headers"))) {
        for (name, value) in headers.iter() {
            builder = builder.header(
                sx_kernel::printer::display(&name.0),
                sx_kernel::printer::display(value),
            );
        }
    }
    let body = text_field(d, "body")?.unwrap_or_default();
    let outgoing = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| failed(format!("bad request: {e}"), &url))?;
    let exchange = async {
        let response = client
            .request(outgoing)
            .await
            .map_err(|e| failed(format!("request failed: {}", chain(&e)), &url))?;
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| failed(format!("reading the response: {e}"), &url))?
            .to_bytes();
        Ok::<_, Value>((parts, bytes))
    };
    let (parts, bytes) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| failed(format!("no answer within {} s", TIMEOUT.as_secs()), &url))??;
    let mut headers = Dict::new();
    for (name, value) in &parts.headers {
        headers.insert(
            Key(Value::str(name.as_str())),
            Value::str(&String::from_utf8_lossy(value.as_bytes())),
        );
    }
    let mut out = Dict::new();
    out.insert(
        Key(Value::kw("status")),
        Value::Int(i64::from(parts.status.as_u16())),
    );
    out.insert(Key(Value::kw("headers")), Value::Dict(headers));
    out.insert(
        Key(Value::kw("body")),
        Value::str(&String::from_utf8_lossy(&bytes)),
    );
    Ok(Value::Dict(out))
}

/// An error with its causes ("connection refused" hides under hyper's "client error").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One exchange the host makes for itself (the flow kernel's protocol): the status and the
/// body, or why there is none. Plain data, so it can run on any thread.
pub async fn exchange(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: String,
    limit: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut builder = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let outgoing = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("bad request to {url}: {e}"))?;
    let exchange = async {
        let response = client
            .request(outgoing)
            .await
            .map_err(|e| format!("{url}: {}", chain(&e)))?;
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| format!("{url}: reading the response: {e}"))?
            .to_bytes();
        Ok::<_, String>((parts.status.as_u16(), bytes.to_vec()))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| format!("{url}: no answer within {} s", limit.as_secs()))?
}
