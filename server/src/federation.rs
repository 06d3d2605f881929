//! Federation between SX instances (docs/apps.md, "Federation"). An activity is an SX dict
//! `{:id :type :actor :object [:to]}` sent as its SX text to `POST {peer}/inbox`, signed with
//! the shared secret: `SX-Fed-Timestamp: <unix seconds>` and `SX-Fed-Signature: <hex
//! HMAC-SHA256(secret, timestamp "." body)>`. Without a secret nothing is sent and the inbox
//! answers 403 (unless `SX_FED_INSECURE=1`).
//!
//! Receiving: the body is read as data, never evaluated; follows are kept by the host; every
//! other activity is stored once per (actor, id) and handed to the app's behaviors
//! (`host/receive-activity`, declared with `deftype` in SX) on the flow runner's thread.
//! Received activities are never sent on. Sending: publishing or editing a post queues one
//! delivery per recipient in the same store transaction (`store/federation.rs`); a task
//! renews `SX_FOLLOW` and delivers what is due every tick, retrying with doubling backoff
//! and jitter until `SX_FED_GIVE_UP_S`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sx_kernel::value::{kw_dict, kw_get};
use sx_kernel::Value;

use crate::config;
use crate::effects::now_ms;
use crate::http::AppState;
use crate::services::Services;
use crate::store::{Delivery, DeliveryOutcome};

/// A timestamp further than this from now is refused (replays of old messages).
pub const MAX_SKEW_S: i64 = 300;
/// The longest wait between tries of one delivery.
const MAX_BACKOFF_MS: i64 = 6 * 3600 * 1000;
/// The longest a delivery or follow request may take.
const SEND_LIMIT: Duration = Duration::from_secs(10);
/// Deliveries attempted per pass.
const BATCH: usize = 256;

/// Federation as this instance runs it.
pub struct Federation {
    pub config: config::Federation,
    /// This instance's base URL (`SX_ACTOR`, else the site's).
    pub actor: String,
    /// Wakes the sender (`POST /outbox/flush`, a new activity).
    pub wake: tokio::sync::Notify,
    /// Held while delivering: the sender and a flush never send the same delivery twice.
    delivering: tokio::sync::Mutex<()>,
}

impl Federation {
    pub fn new(config: config::Federation, base_url: &str) -> Federation {
        Federation {
            actor: config.actor.clone().unwrap_or_else(|| base_url.to_string()),
            config,
            wake: tokio::sync::Notify::new(),
            delivering: tokio::sync::Mutex::new(()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// The signature headers for `body` at `timestamp` (none without a secret).
    pub fn sign(&self, timestamp: i64, body: &str) -> Option<String> {
        let secret = self.config.secret.as_ref()?;
        Some(signature(secret, timestamp, body))
    }
}

pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new activity: `{:id :type :actor :object [:to]}`.
pub fn activity(fed: &Federation, kind: &str, object: Value, to: Option<&str>) -> Value {
    let mut fields = vec![
        (
            "id",
            Value::str(&format!(
                "{}/activities/{}",
                fed.actor,
                crate::auth::random_hex(12)
            )),
        ),
        ("type", Value::str(kind)),
        ("actor", Value::str(&fed.actor)),
        ("object", object),
    ];
    if let Some(to) = to {
        fields.push(("to", Value::str(to)));
    }
    kw_dict(fields)
}

fn answer(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        serde_json::json!({ "status": status.as_u16(), "message": message }).to_string(),
    )
        .into_response()
}

/// Why a signed request is refused (403), or `None` when it is fine.
fn refuse_signature(fed: &Federation, headers: &HeaderMap, body: &[u8]) -> Option<&'static str> {
    let Some(secret) = &fed.config.secret else {
        // Only SX_FED_INSECURE=1 gets here (the inbox is closed otherwise).
        return None;
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(sent)) = (header("sx-fed-timestamp"), header("sx-fed-signature"))
    else {
        return Some("the activity is not signed");
    };
    let Ok(timestamp) = timestamp.trim().parse::<i64>() else {
        return Some("the timestamp is not a number");
    };
    if (now_ms() / 1000 - timestamp).abs() > MAX_SKEW_S {
        return Some("the timestamp is too far from now");
    }
    let Ok(body) = std::str::from_utf8(body) else {
        return Some("the body is not UTF-8");
    };
    if !crate::auth::same_secret(sent.trim(), &signature(secret, timestamp, body)) {
        return Some("the signature does not match");
    }
    None
}

/// The fields every activity needs, as read from the wire: `(id, type, actor)`.
fn required(activity: &Value) -> Option<(String, String, String)> {
    let Value::Dict(d) = activity else {
        return None;
    };
    let field = |name: &str| match kw_get(d, name) {
        Some(Value::Str(s)) if !s.is_empty() => Some(s.to_string()),
        _ => None,
    };
    Some((field("id")?, field("type")?, field("actor")?))
}

/// Reads a received body as data (never evaluated) and checks its shape: the activity as
/// SX text, its type and its actor — or why it is refused (400).
fn read_activity(text: &str) -> Result<(String, String, String), String> {
    let activity =
        sx_kernel::reader::read_one(text).map_err(|e| format!("the body is not SX data: {e}"))?;
    let (_, kind, actor) =
        required(&activity).ok_or("an activity is a dict with :id, :type and :actor strings")?;
    if let Value::Dict(d) = &activity {
        if !matches!(
            kw_get(d, "object"),
            None | Some(Value::Dict(_) | Value::Nil)
        ) {
            return Err(":object must be a dict".into());
        }
    }
    Ok((sx_kernel::printer::repr(&activity), kind, actor))
}

/// `POST /inbox`.
pub async fn inbox(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let fed = &state.federation;
    if !fed.enabled() {
        return answer(StatusCode::FORBIDDEN, "federation is not configured here");
    }
    if let Some(why) = refuse_signature(fed, &headers, &body) {
        return answer(StatusCode::FORBIDDEN, why);
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return answer(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let (text, kind, actor) = match read_activity(text) {
        Ok(read) => read,
        Err(why) => return answer(StatusCode::BAD_REQUEST, &why),
    };
    let store = state.store.clone();
    let kept = tokio::task::spawn_blocking(move || {
        let activity = sx_kernel::reader::read_one(&text).unwrap_or(Value::Nil);
        let now = now_ms();
        // A follower renews its follow every tick: only a change of the follower set is
        // worth recording.
        // The sender answers: deliveries waiting for it need not wait longer.
        store.peer_seen(&actor, true, None, now)?;
        let changed = match kind.as_str() {
            "follow" => store.follow(&actor)?,
            "unfollow" => store.unfollow(&actor)?,
            _ => true,
        };
        let seq = if changed {
            store.receive(&activity, now)?
        } else {
            None
        };
        Ok::<_, crate::store::StoreError>((seq, text))
    })
    .await;
    let (seq, text) = match kept {
        Ok(Ok(kept)) => kept,
        Ok(Err(e)) => {
            tracing::error!("keeping a received activity: {e}");
            return answer(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable");
        }
        Err(e) => {
            tracing::error!("keeping a received activity: {e}");
            return answer(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable");
        }
    };
    let Some(seq) = seq else {
        return answer(StatusCode::ACCEPTED, "already received");
    };
    process(&state, &seq, text).await;
    answer(StatusCode::ACCEPTED, "accepted")
}

/// Hands a received activity to the app's behaviors (`host/receive-activity`) and notes
/// what they gave.
async fn process(state: &AppState, seq: &str, activity: String) {
    let (reply, answered) = tokio::sync::oneshot::channel();
    let call = crate::flows::remote::Call {
        id: format!("activity {seq}"),
        expr: "host/receive-activity".into(),
        context: activity,
        reply,
    };
    let result = match state.flows.evaluate(call) {
        Some(()) => answered
            .await
            .unwrap_or_else(|_| "{:error {:message \"stopped\"}}".into()),
        None => "{:error {:message \"the runner is not running\"}}".into(),
    };
    let store = state.store.clone();
    let seq = seq.to_string();
    let _ = tokio::task::spawn_blocking(move || {
        let result = match sx_kernel::reader::read_one(&result) {
            Ok(Value::Dict(d)) => match (kw_get(&d, "ok"), kw_get(&d, "error")) {
                (Some(ok), _) => ok.clone(),
                (_, Some(Value::Dict(e))) => kw_get(e, "message").cloned().unwrap_or(Value::Nil),
                _ => Value::Nil,
            },
            _ => Value::Nil,
        };
        if let Err(e) = store.activity_result(&seq, &result) {
            tracing::error!("noting what activity {seq} gave: {e}");
        }
    })
    .await;
}

/// Starts the sender: every tick it renews the follows of `SX_FOLLOW` and delivers what is
/// due; a wake (`POST /outbox/flush`, a new activity) runs a pass at once.
pub fn spawn_sender(services: Arc<Services>, mut stopping: tokio::sync::watch::Receiver<bool>) {
    if !services.federation.enabled() {
        return;
    }
    tokio::spawn(async move {
        let mut next_follow = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_follow {
                follow_all(&services).await;
                next_follow = tokio::time::Instant::now() + services.federation.config.tick;
            }
            deliver_due(&services).await;
            tokio::select! {
                () = services.federation.wake.notified() => {}
                () = tokio::time::sleep(services.federation.config.tick) => {}
                _ = stopping.changed() => {}
            }
            if *stopping.borrow() {
                return;
            }
        }
    });
}

/// POSTs a signed activity (SX text) to `peer`'s inbox: `Ok(status)` when it answered.
async fn send(services: &Services, peer: &str, body: String) -> Result<u16, String> {
    let now = now_ms() / 1000;
    let timestamp = now.to_string();
    let signature = services.federation.sign(now, &body).unwrap_or_default();
    let mut headers = vec![
        ("content-type", "text/sx; charset=utf-8"),
        ("sx-fed-timestamp", timestamp.as_str()),
    ];
    if !signature.is_empty() {
        headers.push(("sx-fed-signature", signature.as_str()));
    }
    crate::effects::http::exchange(
        &services.client,
        "POST",
        &format!("{peer}/inbox"),
        &headers,
        body,
        SEND_LIMIT,
    )
    .await
    .map(|(status, _)| status)
}

/// Follows every base of `SX_FOLLOW` (idempotent at the other end).
async fn follow_all(services: &Services) {
    let fed = &services.federation;
    for peer in &fed.config.follow {
        let body = sx_kernel::printer::repr(&activity(fed, "follow", kw_dict([]), None));
        let outcome = send(services, peer, body).await;
        let store = services.store.clone();
        let peer = peer.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let error = match &outcome {
                Ok(202 | 200) => None,
                Ok(status) => Some(format!("answered {status}")),
                Err(e) => Some(e.clone()),
            };
            if let Some(e) = &error {
                tracing::debug!("following {peer}: {e}");
            }
            store.peer_seen(&peer, error.is_none(), error.as_deref(), now_ms())
        })
        .await;
    }
}

/// Delivers everything due now; returns how many were delivered.
pub async fn deliver_due(services: &Services) -> usize {
    let _one_at_a_time = services.federation.delivering.lock().await;
    let mut delivered = 0;
    loop {
        let store = services.store.clone();
        let due = tokio::task::spawn_blocking(move || store.deliveries_due(now_ms(), BATCH)).await;
        let due = match due {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::error!("reading the outbox: {e}");
                return delivered;
            }
            Err(_) => return delivered,
        };
        if due.is_empty() {
            return delivered;
        }
        let batch = due.len();
        let mut progress = false;
        for delivery in due {
            // A batch may outlast a claim: renew it, and skip a delivery another node took
            // over or that moved on meanwhile.
            let claim = delivery.clone();
            let claimed = services
                .store
                .call_from_async(move |store| store.delivery_claim(&claim, now_ms()))
                .await;
            if !matches!(claimed, Ok(true)) {
                continue;
            }
            let outcome = attempt(services, &delivery).await;
            if matches!(outcome, DeliveryOutcome::Delivered) {
                delivered += 1;
                progress = true;
            }
            let store = services.store.clone();
            let key = delivery.key.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = store.delivery_outcome(&key, outcome, now_ms()) {
                    tracing::error!("recording a delivery: {e}");
                }
            })
            .await;
        }
        // A full batch that got through may have more behind it.
        if batch < BATCH || !progress {
            return delivered;
        }
    }
}

/// One try of one delivery, and what it means. A peer marked unavailable (it failed a
/// delivery for good) is not tried: its deliveries wait until it answers again (a follow
/// either way, or an activity from it), which releases them.
async fn attempt(services: &Services, delivery: &Delivery) -> DeliveryOutcome {
    let config = &services.federation.config;
    if services
        .store
        .peer_unavailable(&delivery.peer)
        .unwrap_or(false)
    {
        return DeliveryOutcome::Waiting {
            due: now_ms() + MAX_BACKOFF_MS,
            error: format!("{} is unavailable; waiting for it to answer", delivery.peer),
        };
    }
    let error = match send(services, &delivery.peer, delivery.body.clone()).await {
        Ok(200..=299) => return DeliveryOutcome::Delivered,
        // The peer will never take this body.
        Ok(status @ (400 | 413)) => {
            return DeliveryOutcome::Failed {
                error: format!("{} refused it ({status})", delivery.peer),
            }
        }
        Ok(status) => format!("{} answered {status}", delivery.peer),
        Err(e) => e,
    };
    let now = now_ms();
    let give_up = i64::try_from(config.give_up.as_millis()).unwrap_or(i64::MAX);
    if now.saturating_sub(delivery.created_at) >= give_up {
        return DeliveryOutcome::Failed {
            error: format!("gave up: {error}"),
        };
    }
    DeliveryOutcome::Retry {
        due: now + backoff(config, delivery.attempts),
        error,
    }
}

/// The wait before the next try after `attempts` failed ones: doubling from
/// `SX_FED_RETRY_MS`, ±20% jitter, at most six hours.
fn backoff(config: &config::Federation, attempts: i64) -> i64 {
    let first = i64::try_from(config.retry.as_millis()).unwrap_or(i64::MAX);
    let doubled = first.saturating_mul(1i64 << attempts.clamp(0, 30));
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    let jitter = 80 + i64::from(byte[0]) * 40 / 255;
    (doubled.min(MAX_BACKOFF_MS) / 100)
        .saturating_mul(jitter)
        .min(MAX_BACKOFF_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_six_hours() {
        let config = config::Federation {
            retry: Duration::from_millis(1000),
            ..config::Federation::default()
        };
        for attempts in 0..40 {
            let wait = backoff(&config, attempts);
            let base = (1000i64 << attempts.min(30)).min(MAX_BACKOFF_MS);
            assert!(
                wait >= base * 8 / 10 - 1 && wait <= (base * 12 / 10).min(MAX_BACKOFF_MS),
                "{attempts}: {wait}"
            );
        }
    }

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let a = signature("s", 1, "{:id \"x\"}");
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, signature("s", 2, "{:id \"x\"}"));
        assert_ne!(a, signature("s", 1, "{:id \"y\"}"));
        assert_ne!(a, signature("t", 1, "{:id \"x\"}"));
    }
}
