//! Dev mode in the browser (`sx serve --app DIR --dev`): pages load `/__sx/dev.js`, which
//! listens to `/__sx/reload` (server-sent events) and reloads the page when the app has been
//! recompiled. Without `--dev` neither route answers and the shell does not load the script.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use crate::http::AppState;

const SCRIPT: &str = "// sx dev mode: reload this page when the app has been recompiled.\n\
new EventSource('/__sx/reload').addEventListener('reload', () => location.reload());\n";

pub async fn script(State(state): State<Arc<AppState>>) -> Response {
    if !state.apps.dev {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// One `reload` event per successful recompile, for as long as the page listens.
pub async fn reloads(State(state): State<Arc<AppState>>) -> Response {
    if !state.apps.dev {
        return StatusCode::NOT_FOUND.into_response();
    }
    let receiver = state.apps.reloaded.subscribe();
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(generation) => {
                    let event = Event::default()
                        .event("reload")
                        .data(generation.to_string());
                    return Some((Ok::<_, Infallible>(event), receiver));
                }
                // Missed some: one reload covers them all.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
