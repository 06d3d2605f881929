//! The HTTP surface: the axum router, and errors turned into responses at the edge.
//! The routes the SX apps declare (`defroute`) are mounted here and run on this thread's image;
//! beside them `/health`, `/static/**` (`static_files.rs`: content types, ETag /
//! Last-Modified / 304; dotfiles and paths that resolve outside the directory, symlinks
//! included, are 404) and the 404 page.
//!
//! What every request passes here, before any SX runs: a body read within
//! `SX_BODY_TIMEOUT_S` and under [`BODY_LIMIT`], a deadline for the whole answer
//! (`SX_REQUEST_TIMEOUT_S`, then 503), a same-origin check for every state-changing request
//! (`Origin`, `Sec-Fetch-Site`), the session's CSRF token for one made with a session cookie,
//! and the security headers on every response.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::apps::{Apps, Found};
use crate::auth::{same_secret, Auth, Identity};
use crate::config::Config;
use crate::connections::ClientAddr;
use crate::exchange::{Principal, Request, Want};
use crate::store::Store;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 1 << 20;

pub struct AppState {
    pub config: Config,
    pub store: Arc<Store>,
    pub auth: Arc<Auth>,
    /// The last request id given out; shared by every worker's router.
    pub request_ids: Arc<std::sync::atomic::AtomicU64>,
    /// Where flows run (the kernel's calls back reach the runner through it).
    pub flows: Arc<crate::flows::Flows>,
    pub federation: Arc<crate::federation::Federation>,
    /// Permits for open connections, shared by every worker (`SX_MAX_CONNECTIONS`).
    pub open_connections: Arc<tokio::sync::Semaphore>,
    /// The site's base URL (`SX_PUBLIC_URL`, else `http://HOST:PORT` of the listener).
    pub base_url: String,
    /// The browser bundle's directory and file names (`static_files.rs` serves them;
    /// `/__sx/boot.js` imports its module).
    pub client_bundle: Option<crate::client_bundle::Bundle>,
    /// The apps and their current version.
    pub apps: Arc<Apps>,
    /// Answers kept for `{:cache true}` routes.
    pub pages: crate::pages::Pages,
}

impl AppState {
    /// Where `/static/` files come from, first match wins: the app folder's `static/`, then
    /// the static directory.
    pub fn static_dirs(&self) -> Vec<std::path::PathBuf> {
        let mut dirs = Vec::new();
        if let Some(folder) = self.apps.folder() {
            dirs.push(folder.join("static"));
        }
        dirs.push(self.config.static_dir.clone());
        dirs
    }
}

/// The security headers every response carries. Scripts come only from this origin (the
/// client bundle and its loader are files; no inline script), the wasm client may compile,
/// and no other site may frame a page.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' https: data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'",
    ),
];

/// Whether a state-changing request comes from this site. A browser says where a request
/// comes from (`Origin`, `Sec-Fetch-Site`); a request that says nothing (an API client,
/// curl) is not a browser's cross-site request and passes. A present `Origin` must be the
/// site's own: `SX_PUBLIC_URL`'s, or the origin of the `Host` the request was sent to.
fn same_origin(headers: &HeaderMap, base_url: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site").is_some_and(|site| site.eq_ignore_ascii_case("cross-site")) {
        return false;
    }
    let Some(origin) = header("origin") else {
        return true;
    };
    let base_origin = origin_of(base_url);
    if origin.eq_ignore_ascii_case(base_origin) {
        return true;
    }
    let Some(host) = header("host") else {
        return false;
    };
    ["http://", "https://"].iter().any(|scheme| {
        origin
            .strip_prefix(scheme)
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
    })
}

/// `scheme://host[:port]` of a URL (without its path).
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// The client's address: the socket's, or behind a trusted proxy (`SX_TRUST_PROXY=1`) the
/// first `X-Forwarded-For` hop.
fn client_address(headers: &HeaderMap, peer: Option<ClientAddr>, trust_proxy: bool) -> String {
    if trust_proxy {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .and_then(|hop| hop.parse::<std::net::IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ip.to_string();
        }
    }
    peer.map_or_else(|| "-".to_string(), |ClientAddr(addr)| addr.ip().to_string())
}

/// Reads a request body within the body timeout and the size limit.
async fn read_body(body: Body, state: &AppState) -> Result<Bytes, crate::exchange::Reply> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, BODY_LIMIT);
    match tokio::time::timeout(state.config.limits.body, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(crate::render::error_page(413, "That request is too large."))
        }
        Ok(Err(e)) => {
            tracing::debug!("reading a request body: {e}");
            Err(crate::render::error_page(
                400,
                "The request body did not arrive whole.",
            ))
        }
        Err(_) => Err(crate::render::error_page(
            408,
            "The request body took too long to arrive.",
        )),
    }
}

/// Every path the host does not serve itself: the routes of the current version of the apps
/// (`defroute`), else the apps' 404 page. A kept answer for a visitor without credentials is
/// found first, without the work (and the large future) of making one.
async fn sx_route(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    peer: Option<Extension<ClientAddr>>,
    body: Body,
) -> Response {
    if let Some(kept) = kept_for_anyone(&state, &method, &uri, &headers).await {
        return kept;
    }
    Box::pin(answer(state, method, uri, query, headers, peer, body)).await
}

/// The kept answer of a `{:cache true}` route for a GET that carries no credentials, when
/// there is one for the posts as they are now.
async fn kept_for_anyone(
    state: &Arc<AppState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<Response> {
    let anyone =
        headers.get(header::COOKIE).is_none() && headers.get(header::AUTHORIZATION).is_none();
    if method != Method::GET || !anyone || !state.config.page_cache || state.config.kernel_mode {
        return None;
    }
    let app = state.apps.current().ok()?;
    let Found::Route { cache: true, .. } = app.find(method.as_str(), uri.path()) else {
        return None;
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let want = Want::from_headers(text("sx-request"), text("accept"));
    kept(state, app.generation, want, uri).await.ok()
}

/// For a `{:cache true}` route: the answer kept for this target and the posts as they are
/// now, else where the answer made now may be kept (`None` when the store cannot say: the
/// handler meets the same store and answers for it).
async fn kept(
    state: &AppState,
    generation: u64,
    want: Want,
    uri: &Uri,
) -> Result<Response, Option<(crate::pages::Target, u64)>> {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let target = crate::pages::Target::new(generation, want, path);
    let seq = state
        .store
        .call_from_async(|store| store.change_seq())
        .await
        .map_err(|_| None)?;
    match state.pages.get(&target, seq) {
        Some(kept) => Ok(kept_response(&kept)),
        None => Err(Some((target, seq))),
    }
}

async fn answer(
    state: Arc<AppState>,
    method: Method,
    uri: Uri,
    query: Option<String>,
    headers: HeaderMap,
    peer: Option<Extension<ClientAddr>>,
    body: Body,
) -> Response {
    // `sx kernel` serves only its flow API.
    if state.config.kernel_mode && !(uri.path().starts_with("/flow/") || uri.path() == "/flows") {
        return into_response(crate::render::error_page(
            404,
            "This is a flow kernel: it serves /flow/ and /flows.",
        ));
    }
    let app = match state.apps.current() {
        Ok(app) => app,
        // Dev mode, and the app does not compile: every page says why.
        Err(error) => return into_response(crate::render::compile_error_page(&error)),
    };
    let (route, params, csrf, cache) = match app.find(method.as_str(), uri.path()) {
        Found::Route {
            index,
            params,
            csrf,
            cache,
        } => (index, params, csrf, cache),
        Found::NotFound => (crate::handler::NOT_FOUND, Vec::new(), true, false),
        Found::OtherMethods(allowed) => {
            let mut response = into_response(crate::render::error_page(
                405,
                "This page cannot be asked for that way.",
            ));
            if let Ok(allow) = HeaderValue::try_from(allowed.join(", ")) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            return response;
        }
    };
    let peer = peer.map(|Extension(p)| p);
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let safe = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    // Another site's page may not make a visitor's browser change anything here (login
    // included: logging a visitor into the attacker's account is an attack too).
    if !safe && !same_origin(&headers, &state.base_url) {
        return into_response(crate::render::forbidden(
            "This request came from another site.",
        ));
    }
    let body = match read_body(body, &state).await {
        Ok(body) => body,
        Err(reply) => return into_response(reply),
    };
    let want = Want::from_headers(header_text("sx-request"), header_text("accept"));
    let form: Vec<(String, String)> = if header_text("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
    {
        form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    } else {
        Vec::new()
    };
    let credentials = (
        header_text("authorization").map(str::to_string),
        header_text("cookie").map(str::to_string),
    );
    let identity = match identify(&state, credentials).await {
        Ok(identity) => identity,
        Err(e) => {
            tracing::error!("resolving the session: {e}");
            return into_response(crate::render::error_page(503, "The store is unavailable."));
        }
    };
    // A cookie is an ambient credential: every state-changing request made with one must
    // carry the session's CSRF token (form field `csrf` or header `X-CSRF-Token`), unless
    // its route says it authenticates otherwise (`{:csrf false}`).
    if let Identity::Session { session, .. } = &identity {
        if !safe && csrf {
            let sent = form
                .iter()
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.as_str())
                .or(header_text("x-csrf-token"));
            if !sent.is_some_and(|t| same_secret(t, &session.csrf)) {
                return into_response(crate::render::forbidden(
                    "This form has expired or did not come from this site. Reload the page and try again.",
                ));
            }
        }
    }
    // A `{:cache true}` route asked by a visitor who is not signed in: a kept answer made
    // from the posts as they are now, else one made now and kept.
    let keep = match (
        cache && state.config.page_cache && method == Method::GET,
        &identity,
    ) {
        (true, Identity::Anonymous) => match kept(&state, app.generation, want, &uri).await {
            Ok(kept) => return kept,
            Err(keep) => keep,
        },
        _ => None,
    };
    let user = match identity {
        Identity::Anonymous => None,
        Identity::Session { id, session, user } => Some(Principal {
            name: user.name,
            via: "session",
            grants: user.grants,
            csrf: Some(session.csrf),
            session: Some(id),
        }),
        Identity::Bearer { user } => Some(Principal {
            name: user.name,
            via: "bearer",
            grants: user.grants,
            csrf: None,
            session: None,
        }),
    };
    let request = Request {
        id: header_text("x-request-id").unwrap_or("-").to_string(),
        app,
        client: client_address(&headers, peer, state.config.trust_proxy),
        base_url: state.base_url.clone(),
        route,
        method: method.to_string(),
        path: uri.path().to_string(),
        params,
        query: form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        form,
        body: String::from_utf8_lossy(&body).into_owned(),
        user,
    };
    let answered = crate::handler::dispatch(request, want).await;
    let Some((target, seq)) = keep else {
        return into_response(answered.reply);
    };
    if answered.read_posts_only {
        state.pages.keep(target, seq, &answered.reply);
    }
    let mut response = into_response(answered.reply);
    response
        .headers_mut()
        .insert("x-sx-cache", HeaderValue::from_static("miss"));
    response
}

fn kept_response(kept: &crate::pages::Kept) -> Response {
    let mut response = response(kept.status, &kept.headers, Body::from(kept.body.clone()));
    response
        .headers_mut()
        .insert("x-sx-cache", HeaderValue::from_static("hit"));
    response
}

fn into_response(reply: crate::exchange::Reply) -> Response {
    response(reply.status, &reply.headers, Body::from(reply.body))
}

/// A response with this status, these headers (names and values that HTTP cannot carry are
/// dropped) and body.
fn response(status: u16, headers: &[(String, String)], body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            // `append`: several `Set-Cookie` headers must all be sent.
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Request ids: a process-wide counter, sent back as `x-request-id` and carried by every log
/// line of the request.
#[derive(Clone)]
struct Counter(Arc<std::sync::atomic::AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        HeaderValue::from_str(&n.to_string())
            .ok()
            .map(RequestId::new)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let static_files = crate::static_files::router(&state);
    let limit = state.config.limits.request;
    // Every request passes these, outermost first: one stack of plain services applied once
    // (each layer added to the router on its own wraps every route in another boxed service,
    // and each async middleware boxes the futures of all the layers inside it).
    let stack = tower::ServiceBuilder::new()
        .map_request(plain_request_id_only)
        .layer(SetRequestIdLayer::x_request_id(Counter(
            state.request_ids.clone(),
        )))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path())
        })
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)))
        .layer(PropagateRequestIdLayer::x_request_id())
        .map_response(|response| security_headers(crate::compression::vary(response)))
        .layer(crate::compression::layer())
        .layer(tower::layer::layer_fn(move |inner| Deadline { inner, limit }))
        .map_response(IntoResponse::into_response)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT));
    Router::new()
        .route("/health", get(health))
        .route("/__sx/boot.js", get(boot_script))
        .route("/__sx/dev.js", get(crate::dev::script))
        .route("/__sx/reload", get(crate::dev::reloads))
        .route("/__sx/flow-call", post(crate::flows::remote::flow_call))
        .route("/flow/definitions", put(crate::flows::remote::definitions))
        .route("/inbox", post(crate::federation::inbox))
        .nest("/static", static_files)
        .fallback(sx_route)
        .layer(stack)
        .with_state(state)
}

/// A client's own request id is kept only when it is short and plain, so it can neither
/// flood nor forge log lines.
fn plain_request_id_only(mut request: axum::extract::Request) -> axum::extract::Request {
    let plain = request
        .headers()
        .get("x-request-id")
        .is_none_or(|id| plain_request_id(id.as_bytes()));
    if !plain {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// [`SECURITY_HEADERS`] on every response that does not set them itself.
fn security_headers<B>(mut response: axum::http::Response<B>) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(*name) {
            headers.insert(*name, HeaderValue::from_static(value));
        }
    }
    response
}

/// The whole answer within `SX_REQUEST_TIMEOUT_S`, else a 503 page.
#[derive(Clone)]
struct Deadline<S> {
    inner: S,
    limit: std::time::Duration,
}

type Late = Result<Result<Response, std::convert::Infallible>, tokio::time::error::Elapsed>;

impl<S> tower::Service<axum::extract::Request> for Deadline<S>
where
    S: tower::Service<
        axum::extract::Request,
        Response = Response,
        Error = std::convert::Infallible,
    >,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Map<
        tokio::time::Timeout<S::Future>,
        fn(Late) -> Result<Response, std::convert::Infallible>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        use futures_util::FutureExt;
        tokio::time::timeout(self.limit, self.inner.call(request)).map(answer_in_time)
    }
}

fn answer_in_time(answer: Late) -> Result<Response, std::convert::Infallible> {
    answer.unwrap_or_else(|_| {
        tracing::warn!("no answer within SX_REQUEST_TIMEOUT_S: 503");
        Ok(into_response(crate::render::error_page(
            503,
            "This page took too long to make.",
        )))
    })
}

/// Who is asking (from a bearer token or a session cookie), looked up off the worker on a
/// database store.
async fn identify(
    state: &Arc<AppState>,
    (authorization, cookie): (Option<String>, Option<String>),
) -> Result<Identity, crate::store::StoreError> {
    let now = crate::effects::now_ms();
    let asking = state.clone();
    state
        .store
        .call_from_async(move |store| {
            let (authorization, cookie) = (authorization.as_deref(), cookie.as_deref());
            asking.auth.identify(store, authorization, cookie, now)
        })
        .await
}

/// A client's `X-Request-Id` is kept when it is 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn plain_request_id(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(b))
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let posts = match state
        .store
        .call_from_async(|store| store.post_count())
        .await
    {
        Ok(posts) => posts,
        Err(e) => {
            tracing::error!("health: {e}");
            return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response();
        }
    };
    let body = serde_json::json!({
        "status": "ok",
        "kernel": sx_kernel::KERNEL_VERSION,
        "domain": state.config.domain,
        "posts": posts,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The loader of the browser bundle, a file because the content-security policy allows no
/// inline script. When the bundle has the editor island, the loader also imports it, only
/// when the page has an element with `data-island` (at start, or once one arrives in
/// swapped content: a boosted navigation to /new), and mounts it: pages without one never
/// download it.
async fn boot_script(State(state): State<Arc<AppState>>) -> Response {
    let Some(bundle) = state.client_bundle.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut script = format!(
        "import init from {};\ninit();\n",
        serde_json::Value::from(bundle.module_path())
    );
    if let Some(island) = bundle.island_path() {
        script.push_str(&format!(
            "const island = {};\n{ISLAND_LOADER}",
            serde_json::Value::from(island)
        ));
    }
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        script,
    )
        .into_response()
}

/// Imports the island module (`island`) once a page has `[data-island]` not yet mounted,
/// then calls its `mount`; watches the document for content swapped in later. The
/// performance marks `sx-island-load` and `sx-island-ready` time its boot (bench/browser).
const ISLAND_LOADER: &str = r#"let loading = null;
function islands() {
  if (!document.querySelector("[data-island]:not([data-island-ready])")) return;
  if (!loading) {
    performance.mark("sx-island-load");
    loading = import(island).then(async (m) => { await m.default(); return m; });
  }
  loading.then((m) => {
    m.mount();
    if (!performance.getEntriesByName("sx-island-ready").length) performance.mark("sx-island-ready");
  }).catch((e) => console.error("sx: the editor island failed to load", e));
}
islands();
new MutationObserver(islands).observe(document, { childList: true, subtree: true });
"#;
