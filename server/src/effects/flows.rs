//! Flow instances (`crate::flows` keeps and runs them). Every answer is an instance's
//! public view (string keys, ready for `json-encode`); errors are typed `flow-not-found`,
//! `flow-conflict` (resuming what is not suspended, cancelling what has finished) or
//! `flow-error` (a bad id).
//!
//! - `{:op "flow/start" :flow NAME :id ID-or-nil :input V}` → the instance (an existing id
//!   keeps its instance).
//! - `{:op "flow/get" :id ID}`, `{:op "flow/resume" :id ID :payload V}`,
//!   `{:op "flow/cancel" :id ID}` → the instance.
//! - `{:op "flow/list" :limit N}` → instances, newest first (at most N, default 100).
//! - `{:op "flow/graph" :flow NAME :version V}` → the flow's drawing (`Flow::graph`).
//!
//! Writes run on the blocking pool; values cross to it as SX text (they are not `Send`).
//! With `SX_KERNEL_URL` every op is the kernel's JSON API instead (`flows::remote`); a start
//! the kernel cannot take now is kept and handed over when it can (answered `pending`).

use sx_kernel::error::ErrorValue;
use sx_kernel::value::{kw_get, Dict};
use sx_kernel::Value;

use super::{store_error, text, Context};
use crate::flows::{self, remote};
use crate::store::Store;

/// A dict with string keys (JSON objects as SX sees them).
fn json_object(pairs: Vec<(&str, Value)>) -> Value {
    let mut d = Dict::new();
    for (k, v) in pairs {
        d.insert(sx_kernel::value::Key(Value::str(k)), v);
    }
    Value::Dict(d)
}

/// Percent-encodes an id for a path segment.
fn segment(id: &str) -> String {
    form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

fn optional_text(d: &Dict, op: &str, name: &str) -> Result<Option<String>, Value> {
    match kw_get(d, name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.to_string())),
        Some(other) => Err(sx_kernel::error::type_error(
            format!("{op}: :{name} must be a string, not {}", other.type_name()),
            vec![],
        )),
    }
}

/// Runs `work` on the blocking pool with `arg` (sent as text), answering its result.
async fn on_store(
    cx: &Context<'_>,
    arg: &Value,
    work: impl FnOnce(&Store, Value) -> Result<Value, Value> + Send + 'static,
) -> Result<Value, Value> {
    let store = cx.services.store.clone();
    let arg = sx_kernel::printer::repr(arg);
    let answer = tokio::task::spawn_blocking(move || {
        let arg = sx_kernel::reader::read_one(&arg).unwrap_or(Value::Nil);
        match work(&store, arg) {
            Ok(v) => Ok(sx_kernel::printer::repr(&v)),
            Err(Value::Error(e)) => Err((e.error_type.to_string(), e.message.to_string())),
            Err(other) => Err(("flow-error".into(), sx_kernel::printer::display(&other))),
        }
    })
    .await
    .map_err(|e| ErrorValue::value("store-error", format!("a store task failed: {e}"), vec![]))?;
    match answer {
        Ok(text) => sx_kernel::reader::read_one(&text)
            .map_err(|e| ErrorValue::value("store-error", e.to_string(), vec![])),
        Err((kind, message)) => Err(ErrorValue::value(&kind, message, vec![])),
    }
}

/// The definition a start means: the app's own, or on `sx kernel` the latest one a host
/// registered.
fn definition(cx: &Context<'_>, name: &str) -> Result<crate::apps::FlowDef, Value> {
    if let Some(def) = cx.request.app.flows.iter().find(|f| f.name == name) {
        return Ok(def.clone());
    }
    let registered = if cx.services.flows.kernel {
        cx.services.store.flow_latest(name).map_err(store_error)?
    } else {
        None
    };
    match registered {
        Some((version, nodes)) => Ok(crate::apps::FlowDef {
            name: name.to_string(),
            version,
            nodes: sx_kernel::printer::repr(&nodes),
        }),
        None => Err(ErrorValue::value(
            "flow-not-found",
            format!("no flow named {name}"),
            vec![],
        )),
    }
}

pub async fn start(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let op = "flow/start";
    let name = text(d, op, "flow")?;
    let id = optional_text(d, op, "id")?;
    let input = kw_get(d, "input").cloned().unwrap_or(Value::Nil);
    if cx.services.flows.remote.is_some() {
        return start_remote(cx, &name, id, input).await;
    }
    let def = definition(cx, &name)?;
    let instance = on_store(cx, &input, move |store, input| {
        flows::start(store, &def, id, input).map(|i| flows::public(&i))
    })
    .await?;
    cx.services.flows.wake();
    Ok(instance)
}

/// A start on the kernel, under an id chosen here (so handing it over later is the same
/// start); kept for later when the kernel does not answer.
async fn start_remote(
    cx: &Context<'_>,
    name: &str,
    id: Option<String>,
    input: Value,
) -> Result<Value, Value> {
    if !cx.request.app.flows.iter().any(|f| f.name == name) {
        return Err(ErrorValue::value(
            "flow-not-found",
            format!("no flow named {name}"),
            vec![],
        ));
    }
    let id = id.unwrap_or_else(|| format!("{name}-{}", crate::auth::random_hex(6)));
    let body = json_object(vec![("id", Value::str(&id)), ("input", input.clone())]);
    let path = format!("/flow/start/{}", segment(name));
    match remote::forward(cx.services, "POST", &path, Some(&body)).await {
        Err(Value::Error(e)) if &*e.error_type == "flow-unavailable" => {
            tracing::warn!(
                "flow {name} {id}: {}; the start is kept and retried",
                e.message
            );
            let start =
                sx_kernel::value::kw_dict([("flow", Value::str(name)), ("input", input.clone())]);
            let id2 = id.clone();
            on_store(cx, &start, move |store, start| {
                store.flow_outbox_put(&id2, &start).map_err(store_error)?;
                Ok(Value::Nil)
            })
            .await?;
            Ok(json_object(vec![
                ("id", Value::str(&id)),
                ("flow", Value::str(name)),
                ("status", Value::str("pending")),
                ("node", Value::Nil),
                ("input", input),
                ("steps", Value::list(Vec::new())),
                (
                    "error",
                    Value::str("the flow kernel does not answer; the start will be retried"),
                ),
            ]))
        }
        other => other,
    }
}

pub async fn get(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let id = text(d, "flow/get", "id")?;
    if cx.services.flows.remote.is_some() {
        return remote::forward(cx.services, "GET", &format!("/flow/{}", segment(&id)), None).await;
    }
    flows::instance(&cx.services.store, &id).map(|i| flows::public(&i))
}

pub async fn resume(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let id = text(d, "flow/resume", "id")?;
    let payload = kw_get(d, "payload").cloned().unwrap_or(Value::Nil);
    if cx.services.flows.remote.is_some() {
        let body = json_object(vec![("payload", payload)]);
        let path = format!("/flow/{}/resume", segment(&id));
        return remote::forward(cx.services, "POST", &path, Some(&body)).await;
    }
    let instance = on_store(cx, &payload, move |store, payload| {
        flows::resume(store, &id, payload).map(|i| flows::public(&i))
    })
    .await?;
    cx.services.flows.wake();
    Ok(instance)
}

pub async fn cancel(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let id = text(d, "flow/cancel", "id")?;
    if cx.services.flows.remote.is_some() {
        let path = format!("/flow/{}/cancel", segment(&id));
        return remote::forward(cx.services, "POST", &path, None).await;
    }
    on_store(cx, &Value::Nil, move |store, _| {
        flows::cancel(store, &id).map(|i| flows::public(&i))
    })
    .await
}

pub async fn list(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let limit = match kw_get(d, "limit") {
        Some(Value::Int(n)) if *n > 0 => (*n as usize).min(10_000),
        _ => 100,
    };
    if cx.services.flows.remote.is_some() {
        return remote::forward(cx.services, "GET", &format!("/flows?limit={limit}"), None).await;
    }
    let all = cx.services.store.flow_list(limit).map_err(store_error)?;
    Ok(Value::list(all.iter().map(flows::public).collect()))
}

pub async fn graph(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let name = text(d, "flow/graph", "flow")?;
    let version = text(d, "flow/graph", "version")?;
    Ok(flows::load(&cx.services.store, &name, &version)?.graph())
}
