//! Federation for handlers (`crate::federation` is the protocol). Rows are string-keyed dicts,
//! ready for `json-encode`.
//!
//! - `{:op "fed/info"}` → `{:enabled bool :actor URL :events-url URL-or-nil}`.
//! - `{:op "fed/followers"}` → the followers' base URLs.
//! - `{:op "fed/activities" [:limit n]}` → one row per delivery of a sent activity and per
//!   received one, newest first: `{"id" "type" "actor" "direction" "peer" "status" "object"
//!   "at" ["error"] ["result"]}` (status: received, pending, delivered, failed).
//! - `{:op "fed/peers"}` → `{"peer" "available" "pending" ["error"]}` per known peer.
//! - `{:op "fed/emit" :type t :object o [:to URL]}` → the queued activity's id (sent to the
//!   followers and `:to`); `fed-error` when federation is not configured.
//! - `{:op "fed/flush"}` → how many deliveries were made now.

use sx_kernel::error::ErrorValue;
use sx_kernel::value::{kw_dict, kw_get, Dict, Key};
use sx_kernel::Value;

use super::{blocking, store_error, text, Context};

fn row(pairs: Vec<(&str, Value)>) -> Value {
    let mut d = Dict::new();
    for (k, v) in pairs {
        d.insert(Key(Value::str(k)), v);
    }
    Value::Dict(d)
}

fn field(d: &Value, name: &str) -> Value {
    match d {
        Value::Dict(d) => kw_get(d, name).cloned().unwrap_or(Value::Nil),
        _ => Value::Nil,
    }
}

pub async fn info(_: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let fed = &cx.services.federation;
    Ok(kw_dict([
        ("enabled", Value::Bool(fed.enabled())),
        ("actor", Value::str(&fed.actor)),
        (
            "events-url",
            fed.config
                .events_url
                .as_deref()
                .map_or(Value::Nil, Value::str),
        ),
    ]))
}

pub async fn followers(_: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let followers = cx.services.store.followers().map_err(store_error)?;
    Ok(Value::list(
        followers.iter().map(|f| Value::str(f)).collect(),
    ))
}

pub async fn activities(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let limit = match kw_get(d, "limit") {
        Some(Value::Int(n)) if *n > 0 => (*n as usize).min(10_000),
        _ => 200,
    };
    let activities = cx.services.store.activities(limit).map_err(store_error)?;
    let mut rows = Vec::new();
    for (activity, deliveries) in activities {
        let base = |peer: Value, status: Value| {
            vec![
                ("id", field(&activity, "id")),
                ("type", field(&activity, "type")),
                ("actor", field(&activity, "actor")),
                ("direction", field(&activity, "direction")),
                ("peer", peer),
                ("status", status),
                ("object", field(&activity, "object")),
                ("at", field(&activity, "at")),
            ]
        };
        if matches!(field(&activity, "direction"), Value::Str(s) if &*s == "in") {
            let mut r = base(field(&activity, "actor"), Value::str("received"));
            r.push(("result", field(&activity, "result")));
            rows.push(row(r));
            continue;
        }
        for delivery in deliveries {
            let mut r = base(field(&delivery, "peer"), field(&delivery, "status"));
            r.push(("attempts", field(&delivery, "attempts")));
            r.push(("error", field(&delivery, "error")));
            rows.push(row(r));
        }
    }
    Ok(Value::list(rows))
}

pub async fn peers(_: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let store = &cx.services.store;
    let peers = store.peers().map_err(store_error)?;
    let depth = store.outbox_depth().map_err(store_error)?;
    let mut names: Vec<String> = peers.iter().map(|(p, _)| p.clone()).collect();
    for (peer, _) in &depth {
        if !names.contains(peer) {
            names.push(peer.clone());
        }
    }
    Ok(Value::list(
        names
            .iter()
            .map(|peer| {
                let known = peers.iter().find(|(p, _)| p == peer).map(|(_, v)| v);
                let pending = depth.iter().find(|(p, _)| p == peer).map_or(0, |(_, n)| *n);
                row(vec![
                    ("peer", Value::str(peer)),
                    (
                        "available",
                        known.map_or(Value::Bool(true), |k| match field(k, "available") {
                            Value::Nil => Value::Bool(true),
                            v => v,
                        }),
                    ),
                    ("pending", Value::Int(pending as i64)),
                    ("error", known.map_or(Value::Nil, |k| field(k, "error"))),
                ])
            })
            .collect(),
    ))
}

pub async fn emit(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let fed = cx.services.federation.clone();
    if !fed.enabled() {
        return Err(ErrorValue::value(
            "fed-error",
            "federation is not configured (set SX_FED_SECRET)",
            vec![],
        ));
    }
    let kind = text(d, "fed/emit", "type")?;
    let to = match kw_get(d, "to") {
        None | Some(Value::Nil) => None,
        Some(Value::Str(s)) => Some(s.to_string()),
        Some(_) => {
            return Err(sx_kernel::error::type_error(
                "fed/emit :to must be a URL string",
                vec![],
            ))
        }
    };
    let object = match kw_get(d, "object") {
        Some(o @ Value::Dict(_)) => sx_kernel::printer::repr(o),
        _ => {
            return Err(sx_kernel::error::type_error(
                "fed/emit needs an :object dict",
                vec![],
            ))
        }
    };
    let id = blocking(&cx.services.store, move |store| {
        let object = sx_kernel::reader::read_one(&object).unwrap_or(Value::Nil);
        let activity = crate::federation::activity(&fed, &kind, object, to.as_deref());
        let id = sx_kernel::printer::display(&field(&activity, "id"));
        let to: Vec<String> = to.into_iter().collect();
        store.emit(&activity, &to, crate::effects::now_ms())?;
        Ok(id)
    })
    .await?;
    cx.services.federation.wake.notify_one();
    Ok(Value::str(&id))
}

pub async fn flush(_: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let delivered = crate::federation::deliver_due(cx.services).await;
    Ok(Value::Int(delivered as i64))
}
