//! Flows on a separate `sx kernel` (docs/apps.md, "Flows"). The kernel keeps the instances
//! and timers and decides what runs next; the host keeps the app's code. So:
//!
//! - at start and every few seconds until it succeeds, `sx serve` (with `SX_KERNEL_URL`)
//!   registers its flow definitions and its callback URL: `PUT /flow/definitions`;
//! - the host's flow effects (`flow/start`, `flow/get`, ...) call the kernel's JSON API, so
//!   its `/flow/...` routes and `/flows` page show and drive the kernel's instances; a start
//!   the kernel cannot take yet is kept in the host's store and handed over later;
//! - when a node's function must run, the kernel calls back `POST /__sx/flow-call` with the
//!   function's text and its context (SX text); the host evaluates it in its app image with
//!   its own effects (so effects reach the host's store) and answers `{:ok v}` or
//!   `{:error {:type t :message m}}`.
//!
//! Both directions carry `Authorization: Bearer SX_KERNEL_TOKEN`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sx_kernel::builtins::json::{from_json, to_json};
use sx_kernel::error::ErrorValue;
use sx_kernel::value::{kw_dict, kw_get};
use sx_kernel::Value;

use crate::http::AppState;
use crate::services::Services;

/// The error type of a host that does not answer the kernel: the node waits, spending no try.
pub const HOST_UNAVAILABLE: &str = "flow-host-unavailable";
/// How long a node waits for its host before asking again.
pub const HOST_RETRY_MS: i64 = 2000;
/// The longest a node's function may take on the host.
const CALL_LIMIT: Duration = Duration::from_secs(60);
/// The longest an API call to the kernel may take.
const API_LIMIT: Duration = Duration::from_secs(10);

/// The kernel a host hands its flows to.
#[derive(Clone, Debug)]
pub struct Remote {
    pub url: String,
    pub token: String,
}

/// A kernel's call back, handed to the runner thread (plain text: it crosses threads).
pub struct Call {
    pub id: String,
    pub expr: String,
    pub context: String,
    pub reply: tokio::sync::oneshot::Sender<String>,
}

/// `{:ok v}` or `{:error {:type t :message m}}` as SX text.
pub fn answer_text(result: Result<Value, Value>) -> String {
    let answer = match result {
        Ok(v) => kw_dict([("ok", v)]),
        Err(e) => {
            let (kind, message) = match &e {
                Value::Error(e) => (e.error_type.to_string(), e.message.to_string()),
                other => ("error".into(), sx_kernel::printer::repr(other)),
            };
            kw_dict([(
                "error",
                kw_dict([
                    ("type", Value::str(&kind)),
                    ("message", Value::str(&message)),
                ]),
            )])
        }
    };
    sx_kernel::printer::repr(&answer)
}

fn error(kind: &str, message: impl Into<String>) -> Value {
    ErrorValue::value(kind, message, vec![])
}

/// Whether a request carries the shared kernel token (never, when none is configured).
pub fn authorized(token: Option<&str>, headers: &HeaderMap) -> bool {
    let sent = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (token, sent) {
        (Some(token), Some(sent)) if !token.is_empty() => {
            crate::auth::same_secret(sent.trim(), token)
        }
        _ => false,
    }
}

fn text_response(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "text/sx; charset=utf-8")], body).into_response()
}

/// The host's `POST /__sx/flow-call`: evaluates a node's function for the kernel.
pub async fn flow_call(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(state.config.kernel_token.as_deref(), &headers) {
        return text_response(StatusCode::FORBIDDEN, "\"a kernel token is needed\"".into());
    }
    let Some(call) = read_call(&body) else {
        return text_response(StatusCode::BAD_REQUEST, "\"not a flow call\"".into());
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let (id, expr, context) = call;
    if state
        .flows
        .evaluate(Call {
            id,
            expr,
            context,
            reply,
        })
        .is_none()
    {
        return text_response(StatusCode::SERVICE_UNAVAILABLE, "\"starting\"".into());
    }
    match answer.await {
        Ok(text) => text_response(StatusCode::OK, text),
        Err(_) => text_response(StatusCode::SERVICE_UNAVAILABLE, "\"stopping\"".into()),
    }
}

/// `{:id :expr :context}` of a call, as texts.
fn read_call(body: &[u8]) -> Option<(String, String, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let Value::Dict(d) = sx_kernel::reader::read_one(text).ok()? else {
        return None;
    };
    let field = |name: &str| match kw_get(&d, name) {
        Some(Value::Str(s)) => Some(s.to_string()),
        _ => None,
    };
    let context = sx_kernel::printer::repr(kw_get(&d, "context")?);
    Some((field("id")?, field("expr")?, context))
}

/// The kernel's side of a call: asks the registered host to run a node's function.
pub async fn call_host(
    services: &Services,
    id: &str,
    expr: &str,
    context: &Value,
) -> Result<Value, Value> {
    let unavailable = |why: String| error(HOST_UNAVAILABLE, why);
    let callback = services
        .store
        .flow_callback()
        .map_err(|e| error("store-error", e.to_string()))?
        .ok_or_else(|| unavailable("no host has registered its flows yet".into()))?;
    let body = sx_kernel::printer::repr(&kw_dict([
        ("id", Value::str(id)),
        ("expr", Value::str(expr)),
        ("context", context.clone()),
    ]));
    let token = services.flows.token.clone().unwrap_or_default();
    let auth = format!("Bearer {token}");
    let (status, bytes) = crate::effects::http::exchange(
        &services.client,
        "POST",
        &format!("{callback}/__sx/flow-call"),
        &[("authorization", &auth), ("content-type", "text/sx")],
        body,
        CALL_LIMIT,
    )
    .await
    .map_err(unavailable)?;
    if status != 200 {
        return Err(unavailable(format!(
            "the host at {callback} answered {status}"
        )));
    }
    let text = String::from_utf8_lossy(&bytes);
    let Ok(Value::Dict(answer)) = sx_kernel::reader::read_one(&text) else {
        return Err(unavailable(format!(
            "the host at {callback} sent no answer"
        )));
    };
    if let Some(v) = kw_get(&answer, "ok") {
        return Ok(v.clone());
    }
    let failure = match kw_get(&answer, "error") {
        Some(Value::Dict(e)) => e.clone(),
        _ => {
            return Err(unavailable(format!(
                "the host at {callback} sent no answer"
            )))
        }
    };
    let text = |name: &str| match kw_get(&failure, name) {
        Some(Value::Str(s)) => s.to_string(),
        _ => String::new(),
    };
    Err(error(&text("type"), text("message")))
}

/// The kernel's `PUT /flow/definitions`: `{"callback": URL, "flows": [{"name", "version",
/// "nodes"}]}` (nodes as SX text, checked by reading them as a flow).
pub async fn definitions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json = |status: StatusCode, value: serde_json::Value| {
        (
            status,
            [("content-type", "application/json")],
            value.to_string(),
        )
            .into_response()
    };
    if !state.config.kernel_mode {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not a flow kernel"}),
        );
    }
    if !authorized(state.config.kernel_token.as_deref(), &headers) {
        return json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "the kernel token is needed"}),
        );
    }
    let parsed = (|| {
        let request: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let callback = request["callback"]
            .as_str()
            .filter(|c| c.starts_with("http://") || c.starts_with("https://"))
            .ok_or("a callback URL is needed")?
            .trim_end_matches('/')
            .to_string();
        let mut flows = Vec::new();
        for flow in request["flows"].as_array().ok_or("flows must be a list")? {
            let name = flow["name"].as_str().ok_or("a flow needs a name")?;
            let nodes_text = flow["nodes"].as_str().ok_or("a flow needs its nodes")?;
            let nodes = sx_kernel::reader::read_one(nodes_text).map_err(|e| e.to_string())?;
            let read = sx_kernel::flow::Flow::read(name, &nodes)
                .map_err(|e| sx_kernel::error::describe(&e))?;
            flows.push((name.to_string(), read.version, nodes_text.to_string()));
        }
        Ok::<_, String>((callback, flows))
    })();
    let (callback, flows) = match parsed {
        Ok(parsed) => parsed,
        Err(why) => return json(StatusCode::BAD_REQUEST, serde_json::json!({"error": why})),
    };
    let store = state.store.clone();
    let count = flows.len();
    let saved = tokio::task::spawn_blocking(move || {
        let flows: Vec<(String, String, Value)> = flows
            .into_iter()
            .map(|(name, version, text)| {
                let nodes = sx_kernel::reader::read_one(&text).unwrap_or(Value::Nil);
                (name, version, nodes)
            })
            .collect();
        store.flow_register(&callback, &flows)
    })
    .await;
    match saved {
        Ok(Ok(())) => json(StatusCode::OK, serde_json::json!({"registered": count})),
        Ok(Err(e)) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": e.to_string()}),
        ),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": e.to_string()}),
        ),
    }
}

/// A host's call to the kernel's JSON API: the answer as SX data, or a typed error
/// (`flow-not-found` 404, `flow-conflict` 409, `flow-error` 400, else `flow-unavailable`).
pub async fn forward(
    services: &Services,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Value> {
    let Some(remote) = &services.flows.remote else {
        return Err(error("flow-unavailable", "no flow kernel is configured"));
    };
    let body = match body {
        Some(v) => to_json(v)?,
        None => String::new(),
    };
    let auth = format!("Bearer {}", remote.token);
    let url = format!("{}{path}", remote.url);
    let (status, bytes) = crate::effects::http::exchange(
        &services.client,
        method,
        &url,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ],
        body,
        API_LIMIT,
    )
    .await
    .map_err(|why| error("flow-unavailable", format!("the flow kernel: {why}")))?;
    let text = String::from_utf8_lossy(&bytes);
    let answer = from_json(&text);
    let message = || match &answer {
        Ok(Value::Dict(d)) => match kw_get(d, "error")
            .or_else(|| d.get(&sx_kernel::value::Key(Value::str("error"))))
        {
            Some(Value::Str(m)) => m.to_string(),
            _ => format!("the flow kernel answered {status}"),
        },
        _ => format!("the flow kernel answered {status}"),
    };
    match status {
        200 => answer.map_err(|why| error("flow-unavailable", format!("the flow kernel: {why}"))),
        404 => Err(error("flow-not-found", message())),
        409 => Err(error("flow-conflict", message())),
        400 => Err(error("flow-error", message())),
        _ => Err(error("flow-unavailable", message())),
    }
}

/// The host's side, while it runs with `SX_KERNEL_URL`: registers the app's flows (again
/// after every recompile), then hands over the starts the kernel could not take, every two
/// seconds until `stopping`.
pub async fn keep_in_touch(
    services: Arc<Services>,
    apps: Arc<crate::apps::Apps>,
    callback: String,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut registered = 0;
    loop {
        if let Ok(app) = apps.current() {
            if registered != app.generation {
                match register(&services, &app, &callback).await {
                    Ok(()) => registered = app.generation,
                    Err(why) => tracing::warn!("registering the flows with the kernel: {why}"),
                }
            }
            if registered == app.generation {
                hand_over(&services).await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(2000)) => {}
            _ = stopping.changed() => {}
        }
        if *stopping.borrow() {
            return;
        }
    }
}

async fn register(
    services: &Services,
    app: &crate::apps::App,
    callback: &str,
) -> Result<(), String> {
    let Some(remote) = &services.flows.remote else {
        return Ok(());
    };
    let flows: Vec<serde_json::Value> = app
        .flows
        .iter()
        .map(|f| serde_json::json!({"name": f.name, "version": f.version, "nodes": f.nodes}))
        .collect();
    let body = serde_json::json!({"callback": callback, "flows": flows}).to_string();
    let auth = format!("Bearer {}", remote.token);
    let (status, bytes) = crate::effects::http::exchange(
        &services.client,
        "PUT",
        &format!("{}/flow/definitions", remote.url),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body,
        API_LIMIT,
    )
    .await?;
    if status == 200 {
        tracing::info!(
            "registered {} flows with the kernel at {}",
            flows.len(),
            remote.url
        );
        Ok(())
    } else {
        Err(format!(
            "the kernel answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        ))
    }
}

/// Starts the kernel could not take when asked (kept in the store), oldest first.
async fn hand_over(services: &Services) {
    let pending = match services.store.flow_outbox(100) {
        Ok(pending) => pending,
        Err(e) => {
            tracing::error!("reading the pending flow starts: {e}");
            return;
        }
    };
    for (id, start) in pending {
        let Value::Dict(d) = &start else { continue };
        let flow = match kw_get(d, "flow") {
            Some(Value::Str(f)) => f.to_string(),
            _ => continue,
        };
        let mut body = sx_kernel::value::Dict::new();
        body.insert(sx_kernel::value::Key(Value::str("id")), Value::str(&id));
        body.insert(
            sx_kernel::value::Key(Value::str("input")),
            kw_get(d, "input").cloned().unwrap_or(Value::Nil),
        );
        let path = format!("/flow/start/{flow}");
        match forward(services, "POST", &path, Some(&Value::Dict(body))).await {
            Ok(_) => {}
            Err(Value::Error(e)) if &*e.error_type == "flow-unavailable" => return,
            Err(e) => tracing::error!(
                "the kernel refused the start of {flow} {id}: {}",
                sx_kernel::error::describe(&e)
            ),
        }
        if let Err(e) = services.store.flow_outbox_delete(&id) {
            tracing::error!("forgetting the handed-over start {id}: {e}");
        }
    }
}
