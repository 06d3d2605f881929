//! The HTTP surface: the axum router, and errors turned into responses at the edge.
//! The routes the SX apps declare (`defroute`) are mounted here and run on this thread's image;
//! beside them `/health`, `/static/**` (tower-http's `ServeDir`: content types, ETag /
//! Last-Modified / 304, and no path can leave the directory) and the 404 page.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodFilter, MethodRouter};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::services::ServeDir;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::auth::{same_secret, Auth, Identity};
use crate::config::Config;
use crate::handler::{Principal, Request};
use crate::render::Want;
use crate::store::Store;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 1 << 20;

pub struct AppState {
    pub config: Config,
    pub store: Arc<Store>,
    pub auth: Arc<Auth>,
    /// The last request id given out; shared by every worker's router.
    pub request_ids: Arc<std::sync::atomic::AtomicU64>,
}

/// `/:slug/` (SX routes) → `/{slug}/` (axum's syntax).
fn axum_path(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn method_filter(method: &str) -> Option<MethodFilter> {
    Some(match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        "PATCH" => MethodFilter::PATCH,
        _ => return None,
    })
}

#[allow(clippy::too_many_arguments)]
async fn sx_route(
    state: Arc<AppState>,
    route: usize,
    method: Method,
    uri: Uri,
    params: RawPathParams,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
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
    let identity = match state.auth.identify(
        &state.store,
        header_text("authorization"),
        header_text("cookie"),
        crate::handler::now_ms(),
    ) {
        Ok(identity) => identity,
        Err(e) => {
            tracing::error!("resolving the session: {e}");
            return into_response(crate::render::error_page(503, "The store is unavailable."));
        }
    };
    // A cookie is an ambient credential: every state-changing request made with one must
    // carry the session's CSRF token (form field `csrf` or header `X-CSRF-Token`). Logging in
    // uses no credential, so it is exempt.
    if let Identity::Session { session, .. } = &identity {
        let safe = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && uri.path() != "/login" {
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
        route,
        method: method.to_string(),
        path: uri.path().to_string(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
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
    into_response(crate::handler::dispatch(request, want).await)
}

fn into_response(reply: crate::handler::Reply) -> Response {
    let mut response = Response::new(axum::body::Body::from(reply.body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in reply.headers {
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

pub fn router(state: Arc<AppState>, routes: &[(String, String)]) -> Router {
    let static_files = ServeDir::new(&state.config.static_dir);
    let mut by_path: BTreeMap<String, MethodRouter<Arc<AppState>>> = BTreeMap::new();
    for (index, (method, path)) in routes.iter().enumerate() {
        let Some(filter) = method_filter(method) else {
            tracing::warn!("skipping route {method} {path}: unknown method");
            continue;
        };
        let handler = move |State(state): State<Arc<AppState>>,
                            method: Method,
                            uri: Uri,
                            params: RawPathParams,
                            query: RawQuery,
                            headers: HeaderMap,
                            body: Bytes| {
            sx_route(state, index, method, uri, params, query, headers, body)
        };
        let entry = by_path.remove(path).unwrap_or_default();
        by_path.insert(path.clone(), entry.on(filter, handler));
    }
    let mut app = Router::new();
    for (path, methods) in by_path {
        app = app.route(&axum_path(&path), methods);
    }
    app.route("/health", get(health))
        .nest_service("/static", static_files)
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(PropagateRequestIdLayer::x_request_id())
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
        .layer(SetRequestIdLayer::x_request_id(Counter(
            state.request_ids.clone(),
        )))
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let posts = match state.store.posts() {
        Ok(posts) => posts.len(),
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

/// Paths no route matches: the apps' 404 page (`host/not-found`), full or as a fragment.
#[allow(clippy::too_many_arguments)]
async fn not_found(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    params: RawPathParams,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = crate::handler::NOT_FOUND;
    sx_route(state, route, method, uri, params, query, headers, body).await
}
