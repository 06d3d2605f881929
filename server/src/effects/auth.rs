//! Logging in and out.
//!
//! - `{:op "auth/login" :user u :password p}` → `{:ok true :cookie c}`, `{:ok false}`,
//!   `{:ok false :retry-after seconds}` while the name (from this client's address) or the
//!   address is locked out, or `{:ok false :busy true :retry-after seconds}` when too many
//!   logins are waiting for a turn to hash. A name over 64 bytes fails before any work.
//! - `{:op "auth/logout"}` → `{:cookie c}` (the cookie that clears the browser's); the
//!   session record is deleted.
//!
//! Argon2 (slow on purpose) and LMDB writes run on tokio's blocking pool.

use std::sync::OnceLock;
use std::time::Instant;

use sx_kernel::value::{kw_dict, Dict};
use sx_kernel::Value;

use super::{blocking, text, Context};
use crate::auth::{random_hex, verify_password};
use crate::store::Session;

/// A hash to verify against when the user does not exist, so that an unknown name takes
/// as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| crate::auth::hash_password(&random_hex(16)).unwrap_or_default())
}

pub async fn login(d: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let op = "auth/login";
    let (store, auth) = (&cx.services.store, &cx.services.auth);
    let name = text(d, op, "user")?;
    let password = text(d, op, "password")?;
    let failed = || Ok(kw_dict(vec![("ok", Value::Bool(false))]));
    if name.is_empty() || name.len() > crate::auth::MAX_NAME_BYTES {
        return failed();
    }
    let address = cx.request.client.as_str();
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
        // An unknown name (the store answers none for keys LMDB could not hold) costs the
        // same verification as a wrong password.
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
        expires: super::now_ms() + auth.ttl_ms,
    };
    let key = id.clone();
    blocking(store, move |store| store.put_session(&key, &session)).await?;
    Ok(kw_dict(vec![
        ("ok", Value::Bool(true)),
        ("cookie", Value::str(&auth.session_cookie(&id))),
    ]))
}

pub async fn logout(_: &Dict, cx: &Context<'_>) -> Result<Value, Value> {
    let user = cx.request.user.as_ref();
    if let Some(id) = user.and_then(|u| u.session.clone()) {
        blocking(&cx.services.store, move |store| store.delete_session(&id)).await?;
    }
    Ok(kw_dict(vec![(
        "cookie",
        Value::str(&cx.services.auth.clear_cookie()),
    )]))
}
