//! The HTTP surface: the axum router, and errors turned into responses at the edge.
//! So far: `/health`, `/static/**` (tower-http's `ServeDir`: content types, ETag /
//! Last-Modified / 304, and no path can leave the directory) and the 404 page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;

use crate::config::Config;
use crate::store::Store;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 1 << 20;

pub struct AppState {
    pub config: Config,
    pub store: Store,
}

pub fn router(state: Arc<AppState>) -> Router {
    let static_files = ServeDir::new(&state.config.static_dir);
    Router::new()
        .route("/health", get(health))
        .nest_service("/static", static_files)
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
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

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!DOCTYPE html><html><head><title>Not found</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><main id=\"content\"><h1>Not found</h1><p>There is no page here. <a href=\"/\">Back to the start</a>.</p></main></body></html>"),
    )
        .into_response()
}
