//! Effects that change state: logging in and out, and appending to post streams. LMDB writes
//! (and argon2, slow on purpose) run on tokio's blocking pool, so the worker thread serves
//! other requests meanwhile. Kernel values are not `Send`: only strings cross to the pool.
//!
//! - `{:op "auth/login" :user u :password p}` → `{:ok true :cookie c}`, `{:ok false}`,
//!   `{:ok false :retry-after seconds}` while the name (from this client's address) or the
//!   address is locked out, or `{:ok false :busy true :retry-after seconds}` when too many
//!   logins are waiting for a turn to hash. A name over 64 bytes fails before any work.
//! - `{:op "auth/logout"}` → `{:cookie c}` (the cookie that clears the browser's); the
//!   session record is deleted.
//! - `{:op "post/create" :title t :body b :author a}` → the new post's slug.
//! - `{:op "post/edit" :slug s :title t :body b}`, `{:op "post/publish" :slug s}` → nil.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use sx_kernel::error::{type_error, ErrorValue};
use sx_kernel::value::{kw_dict, kw_get, Dict};
use sx_kernel::Value;

use crate::auth::{random_hex, verify_password};
use crate::handler::{now_ms, Request, Services};
use crate::store::{Session, Store, StoreError};

/// Paths the framework or the apps use at the top level: never a post's slug.
pub const RESERVED_SLUGS: &[&str] = &[
    "new",
    "login",
    "logout",
    "feed",
    "health",
    "static",
    "tags",
    "inbox",
    "activities",
    "followers",
    "flows",
    "flow",
    "outbox",
];

fn text(d: &Dict, op: &str, name: &str) -> Result<String, Value> {
    match kw_get(d, name) {
        Some(Value::Str(s)) => Ok(s.to_string()),
        _ => Err(type_error(format!("{op} needs a :{name} string"), vec![])),
    }
}

/// The error type raised when the store is full; the host answers it with 507.
pub const STORE_FULL: &str = "store-full";

fn store_error(e: StoreError) -> Value {
    let kind = match e {
        StoreError::Full => STORE_FULL,
        _ => "store-error",
    };
    ErrorValue::value(kind, e.to_string(), vec![])
}

/// Runs `work` with the store on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Value> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|e| ErrorValue::value("store-error", format!("a store task failed: {e}"), vec![]))?
        .map_err(store_error)
}

/// A hash to verify against when the user does not exist, so that an unknown name takes
/// as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| crate::auth::hash_password(&random_hex(16)).unwrap_or_default())
}

pub async fn effect(
    op: &str,
    d: &Dict,
    services: &Services,
    asking: &Request,
) -> Result<Value, Value> {
    let store = &services.store;
    let auth = &services.auth;
    let user = asking.user.as_ref();
    match op {
        "auth/login" => {
            let name = text(d, op, "user")?;
            let password = text(d, op, "password")?;
            let failed = || Ok(kw_dict(vec![("ok", Value::Bool(false))]));
            if name.is_empty() || name.len() > crate::auth::MAX_NAME_BYTES {
                return failed();
            }
            let address = asking.client.as_str();
            if let Some(seconds) = auth.throttle.locked_out(&name, address, Instant::now()) {
                return Ok(kw_dict(vec![
                    ("ok", Value::Bool(false)),
                    ("retry-after", Value::Int(seconds as i64)),
                ]));
            }
            let Some(turn) = auth.hashing.enter().await else {
                return Ok(kw_dict(vec![
                    ("ok", Value::Bool(false)),
                    ("busy", Value::Bool(true)),
                    ("retry-after", Value::Int(2)),
                ]));
            };
            let who = name.clone();
            let known = blocking(store, move |store| {
                let _turn = turn;
                // An unknown name (the store answers none for keys LMDB could not hold)
                // costs the same verification as a wrong password.
                let user = store.user(&who)?;
                let hash = user
                    .as_ref()
                    .map_or(decoy_hash(), |u| u.password_hash.as_str());
                Ok(verify_password(&password, hash) && user.is_some())
            })
            .await?;
            if !known {
                auth.throttle.failed(&name, address, Instant::now());
                return failed();
            }
            auth.throttle.succeeded(&name, address);
            let id = random_hex(32);
            let session = Session {
                user: name,
                csrf: random_hex(32),
                expires: now_ms() + auth.ttl_ms,
            };
            let key = id.clone();
            blocking(store, move |store| store.put_session(&key, &session)).await?;
            Ok(kw_dict(vec![
                ("ok", Value::Bool(true)),
                ("cookie", Value::str(&auth.session_cookie(&id))),
            ]))
        }
        "auth/logout" => {
            if let Some(id) = user.and_then(|u| u.session.clone()) {
                blocking(store, move |store| store.delete_session(&id)).await?;
            }
            Ok(kw_dict(vec![("cookie", Value::str(&auth.clear_cookie()))]))
        }
        "post/create" => {
            let title = text(d, op, "title")?;
            let body = text(d, op, "body")?;
            let author = text(d, op, "author")?;
            let at = now_ms();
            let slug = blocking(store, move |store| {
                let create = kw_dict(vec![
                    ("op", Value::str("create")),
                    ("title", Value::str(&title)),
                    ("body", Value::str(&body)),
                    ("author", Value::str(&author)),
                    ("at", Value::Int(at)),
                ]);
                store.create_post(&title, &create, RESERVED_SLUGS)
            })
            .await?;
            Ok(Value::str(&slug))
        }
        "post/edit" | "post/publish" => {
            let slug = text(d, op, "slug")?;
            let fields = if op == "post/edit" {
                Some((text(d, op, "title")?, text(d, op, "body")?))
            } else {
                None
            };
            let at = now_ms();
            blocking(store, move |store| {
                let change = match fields {
                    Some((title, body)) => kw_dict(vec![
                        ("op", Value::str("edit")),
                        ("title", Value::str(&title)),
                        ("body", Value::str(&body)),
                        ("at", Value::Int(at)),
                    ]),
                    None => kw_dict(vec![("op", Value::str("publish")), ("at", Value::Int(at))]),
                };
                store.append(&[(&slug, change)])
            })
            .await?;
            Ok(Value::Nil)
        }
        _ => Err(sx_kernel::engine::unknown_effect(&kw_dict(vec![(
            "op",
            Value::str(op),
        )]))),
    }
}
