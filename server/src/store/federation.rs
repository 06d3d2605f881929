//! Federation's durable state (the protocol is `crate::federation`): followers, every
//! activity sent or received (in arrival order), one delivery per (activity, recipient) with
//! a time-ordered index of those due, and what is known of each peer. An activity is queued
//! in the same transaction as the change it announces, so nothing acknowledged is lost.

use sx_kernel::value::{kw_dict, kw_get, Dict, Key};
use sx_kernel::Value;

use super::backend::{Read, Scan, Table, Write};
use super::{decode, encode, key_fits, next_seq, Result, Store, StoreError};

/// The lease kind of a delivery being attempted.
const DELIVERY: &str = "delivery";

/// A delivery the sender should attempt now.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub key: String,
    pub peer: String,
    /// The activity as sent (SX text): the same bytes on every try.
    pub body: String,
    pub attempts: i64,
    pub created_at: i64,
}

fn int(d: &Dict, name: &str) -> i64 {
    match kw_get(d, name) {
        Some(Value::Int(n)) => *n,
        _ => 0,
    }
}

fn text(d: &Dict, name: &str) -> String {
    match kw_get(d, name) {
        Some(Value::Str(s)) => s.to_string(),
        _ => String::new(),
    }
}

fn dict(v: Value, what: &str) -> Result<Dict> {
    match v {
        Value::Dict(d) => Ok(d),
        _ => Err(StoreError::Corrupt(format!("{what}: not a dict"))),
    }
}

fn put(d: &mut Dict, name: &str, v: Value) {
    d.insert(Key(Value::kw(name)), v);
}

/// Records an outgoing activity and queues one delivery per recipient (the followers and
/// `to`, each once), inside the caller's transaction.
fn emit_in(txn: &mut dyn Write, activity: &Value, to: &[String], now: i64) -> Result<()> {
    let mut record = dict(activity.clone(), "an activity")?;
    put(&mut record, "direction", Value::str("out"));
    put(&mut record, "at", Value::Int(now));
    let seq = format!("{:016x}", next_seq(txn, "fed-seq")?);
    txn.put(Table::Activities, &seq, &encode(&Value::Dict(record)))?;
    let mut recipients: Vec<String> = txn
        .scan(Table::Followers, Scan::all())?
        .into_iter()
        .map(|(base, _)| base)
        .collect();
    for peer in to {
        if !recipients.contains(peer) {
            recipients.push(peer.clone());
        }
    }
    for peer in recipients {
        let key = format!("{seq}\0{peer}");
        let due_key = format!("{now:016x}\0{key}");
        if !key_fits(&due_key) {
            continue; // a URL too long to index: never a recipient (and never a failed write)
        }
        let delivery = kw_dict([
            ("peer", Value::str(&peer)),
            ("status", Value::str("pending")),
            ("attempts", Value::Int(0)),
            ("created-at", Value::Int(now)),
            ("due", Value::Int(now)),
        ]);
        txn.put(Table::Deliveries, &key, &encode(&delivery))?;
        txn.put(Table::DeliveryDue, &due_key, "")?;
    }
    Ok(())
}

/// Notes whether a peer answers. A peer that answers again after failing gets its waiting
/// deliveries at once, instead of each at the end of its own backoff.
fn peer_in(
    txn: &mut dyn Write,
    peer: &str,
    available: bool,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    if !key_fits(peer) {
        return Ok(());
    }
    let known = match txn.get(Table::Peers, peer)? {
        Some(text) => Some(dict(decode(&text, peer)?, peer)?),
        None => None,
    };
    let was_failing = known.as_ref().is_some_and(|k| kw_get(k, "error").is_some());
    if available && error.is_none() && known.is_some() && !was_failing {
        return Ok(()); // nothing new to note
    }
    let mut fields = vec![
        ("available", Value::Bool(available)),
        ("at", Value::Int(now)),
    ];
    if let Some(error) = error {
        fields.push(("error", Value::str(error)));
    }
    txn.put(Table::Peers, peer, &encode(&kw_dict(fields)))?;
    if available && was_failing {
        release_waiting_in(txn, peer, now)?;
    }
    Ok(())
}

fn peer_unavailable_in(txn: &mut dyn Read, peer: &str) -> Result<bool> {
    if !key_fits(peer) {
        return Ok(false);
    }
    Ok(match txn.get(Table::Peers, peer)? {
        Some(text) => matches!(
            kw_get(&dict(decode(&text, peer)?, peer)?, "available"),
            Some(Value::Bool(false))
        ),
        None => false,
    })
}

/// Marks a delivery pending, due at `due`.
fn pending_in(txn: &mut dyn Write, d: &mut Dict, key: &str, due: i64, error: &str) -> Result<()> {
    put(d, "status", Value::str("pending"));
    put(d, "due", Value::Int(due));
    put(d, "error", Value::str(error));
    txn.put(Table::DeliveryDue, &format!("{due:016x}\0{key}"), "")
}

/// Makes every waiting delivery to `peer` due now.
fn release_waiting_in(txn: &mut dyn Write, peer: &str, now: i64) -> Result<()> {
    let suffix = format!("\0{peer}");
    let waiting: Vec<String> = txn
        .scan(Table::DeliveryDue, Scan::all())?
        .into_iter()
        .map(|(index, _)| index)
        .filter(|index| index.ends_with(&suffix))
        .collect();
    for index in waiting {
        let Some((due, key)) = index.split_once('\0') else {
            continue;
        };
        if i64::from_str_radix(due, 16).unwrap_or(0) <= now {
            continue;
        }
        txn.delete(Table::DeliveryDue, &index)?;
        txn.put(Table::DeliveryDue, &format!("{now:016x}\0{key}"), "")?;
        if let Some(text) = txn.get(Table::Deliveries, key)? {
            let mut d = dict(decode(&text, key)?, key)?;
            put(&mut d, "due", Value::Int(now));
            txn.put(Table::Deliveries, key, &encode(&Value::Dict(d)))?;
        }
    }
    Ok(())
}

impl Store {
    /// Adds a follower; false when it already was one.
    pub fn follow(&self, base: &str) -> Result<bool> {
        // Its deliveries are indexed as `due \0 seq \0 base`: that key must fit too.
        if !key_fits(&format!("{:016x}\0{:016x}\0{base}", 0, 0)) {
            return Err(StoreError::Invalid("a follower URL is too long".into()));
        }
        self.write(|txn| {
            let new = txn.get(Table::Followers, base)?.is_none();
            if new {
                txn.put(Table::Followers, base, "")?;
            }
            Ok(new)
        })
    }

    pub fn unfollow(&self, base: &str) -> Result<bool> {
        if !key_fits(base) {
            return Ok(false);
        }
        self.write(|txn| txn.delete(Table::Followers, base))
    }

    pub fn followers(&self) -> Result<Vec<String>> {
        let entries = self.read(|txn| txn.scan(Table::Followers, Scan::all()))?;
        Ok(entries.into_iter().map(|(base, _)| base).collect())
    }

    /// Records and queues an activity on its own (`POST /:slug/allocate`).
    pub fn emit(&self, activity: &Value, to: &[String], now: i64) -> Result<()> {
        self.write(|txn| emit_in(txn, activity, to, now))
    }

    /// `append`, and in the same transaction the activity `announce` makes of the change
    /// (given each post before and after), if any.
    pub fn append_announcing(
        &self,
        ops: &[(&str, Value)],
        now: i64,
        announce: impl FnOnce(&[(Option<Value>, Value)]) -> Option<Value>,
    ) -> Result<()> {
        self.write(|txn| {
            let mut changes = Vec::new();
            for (slug, op) in ops {
                let before = super::post_in(txn, slug)?;
                super::append_in(txn, slug, op)?;
                let after = super::post_in(txn, slug)?
                    .ok_or_else(|| StoreError::Corrupt(format!("{slug} vanished")))?;
                changes.push((before, after));
            }
            if let Some(activity) = announce(&changes) {
                emit_in(txn, &activity, &[], now)?;
            }
            super::changed_in(txn, ops.iter().map(|(slug, _)| *slug))
        })
    }

    /// Keeps a received activity unless this actor's activity with that id was seen: its
    /// sequence number when it is new.
    pub fn receive(&self, activity: &Value, now: i64) -> Result<Option<String>> {
        let mut record = dict(activity.clone(), "an activity")?;
        let seen = format!("{}\0{}", text(&record, "actor"), text(&record, "id"));
        if !key_fits(&seen) {
            return Err(StoreError::Invalid(
                "an activity's actor and id are too long".into(),
            ));
        }
        self.write(|txn| {
            if txn.get(Table::Received, &seen)?.is_some() {
                return Ok(None);
            }
            let seq = format!("{:016x}", next_seq(txn, "fed-seq")?);
            put(&mut record, "direction", Value::str("in"));
            put(&mut record, "at", Value::Int(now));
            txn.put(Table::Activities, &seq, &encode(&Value::Dict(record)))?;
            txn.put(Table::Received, &seen, &seq)?;
            Ok(Some(seq))
        })
    }

    /// Notes what processing a received activity gave (shown on /activities).
    pub fn activity_result(&self, seq: &str, result: &Value) -> Result<()> {
        self.write(|txn| {
            if let Some(text) = txn.get(Table::Activities, seq)? {
                let mut record = dict(decode(&text, seq)?, seq)?;
                put(&mut record, "result", result.clone());
                txn.put(Table::Activities, seq, &encode(&Value::Dict(record)))?;
            }
            Ok(())
        })
    }

    /// Claims the deliveries due at `now` for this node, soonest first, at most `limit`: one
    /// another node is attempting is left to it while its claim holds. Before each attempt,
    /// `delivery_claim` renews the claim (a batch may take longer than a lease);
    /// `delivery_outcome` gives it up.
    pub fn deliveries_due(&self, now: i64, limit: usize) -> Result<Vec<Delivery>> {
        let (keys, _) =
            self.claim_due(Table::DeliveryDue, Table::Deliveries, DELIVERY, now, limit)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|txn| {
            let mut out = Vec::new();
            for key in keys {
                let Some(text) = txn.get(Table::Deliveries, &key)? else {
                    continue;
                };
                let d = dict(decode(&text, &key)?, &key)?;
                let (seq, peer) = key.split_once('\0').unwrap_or((&key, ""));
                let Some(body) = txn.get(Table::Activities, seq)? else {
                    continue;
                };
                // The wire carries the activity without the sender's bookkeeping.
                let mut activity = dict(decode(&body, seq)?, seq)?;
                for field in ["direction", "at", "result"] {
                    activity.remove(&Key(Value::kw(field)));
                }
                out.push(Delivery {
                    peer: peer.to_string(),
                    body: encode(&Value::Dict(activity)),
                    attempts: int(&d, "attempts"),
                    created_at: int(&d, "created-at"),
                    key,
                });
            }
            Ok(out)
        })
    }

    /// Just before attempting a delivery: whether it is still this node's to make — still
    /// waiting, due, at the attempt count it was claimed at, and (on a shared store) still
    /// claimed by this node, whose claim this renews. False when another node took it over
    /// or it moved on meanwhile: then it must not be sent.
    pub fn delivery_claim(&self, delivery: &Delivery, now: i64) -> Result<bool> {
        let check = |txn: &mut dyn Read| -> Result<bool> {
            let Some(text) = txn.get(Table::Deliveries, &delivery.key)? else {
                return Ok(false);
            };
            let d = dict(decode(&text, &delivery.key)?, &delivery.key)?;
            let due = matches!(kw_get(&d, "due"), Some(Value::Int(due)) if *due <= now);
            Ok(due && int(&d, "attempts") == delivery.attempts)
        };
        if !self.shared() {
            return self.read(check);
        }
        self.write(|txn| Ok(check(txn)? && self.renew_in(txn, DELIVERY, &delivery.key, now)?))
    }

    /// Records how a delivery attempt went (and what that says of its peer), and gives up
    /// the claim on it. An outcome from a node whose claim another node has taken over since
    /// is dropped: the other node's attempt is the one that counts.
    pub fn delivery_outcome(&self, key: &str, outcome: DeliveryOutcome, now: i64) -> Result<()> {
        self.write(|txn| {
            if !self.holds_in(txn, DELIVERY, key, now)? {
                return Ok(());
            }
            self.release_in(txn, DELIVERY, key)?;
            let Some(text) = txn.get(Table::Deliveries, key)? else {
                return Ok(());
            };
            let mut d = dict(decode(&text, key)?, key)?;
            // Only a waiting delivery has a due time: one delivered or failed since (by a
            // node that took it over) stays as it is.
            let Some(Value::Int(due)) = kw_get(&d, "due").cloned() else {
                return Ok(());
            };
            txn.delete(Table::DeliveryDue, &format!("{due:016x}\0{key}"))?;
            d.remove(&Key(Value::kw("due")));
            let peer = text_of_key(key);
            let attempts = int(&d, "attempts") + 1;
            put(&mut d, "attempts", Value::Int(attempts));
            match outcome {
                DeliveryOutcome::Delivered => {
                    put(&mut d, "status", Value::str("delivered"));
                    put(&mut d, "delivered-at", Value::Int(now));
                    d.remove(&Key(Value::kw("error")));
                    peer_in(txn, peer, true, None, now)?;
                }
                DeliveryOutcome::Retry { due, error } => {
                    pending_in(txn, &mut d, key, due, &error)?;
                }
                // The peer may have answered while this attempt was skipped: then it is
                // due now, or it would wait out `due` though its peer is back.
                DeliveryOutcome::Waiting { due, error } => {
                    let due = if peer_unavailable_in(txn, peer)? {
                        due
                    } else {
                        now
                    };
                    pending_in(txn, &mut d, key, due, &error)?;
                }
                DeliveryOutcome::Failed { error } => {
                    put(&mut d, "status", Value::str("failed"));
                    put(&mut d, "error", Value::str(&error));
                    peer_in(txn, peer, false, Some(&error), now)?;
                }
            }
            txn.put(Table::Deliveries, key, &encode(&Value::Dict(d)))
        })
    }

    /// A peer answered (or stopped answering) outside a delivery (a follow).
    pub fn peer_seen(
        &self,
        peer: &str,
        available: bool,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.write(|txn| peer_in(txn, peer, available, error, now))
    }

    /// Whether a peer is marked unavailable (it failed a delivery for good, and has not
    /// answered since).
    pub fn peer_unavailable(&self, peer: &str) -> Result<bool> {
        self.read(|txn| peer_unavailable_in(txn, peer))
    }

    /// Activities newest first (at most `limit`), each with its deliveries.
    pub fn activities(&self, limit: usize) -> Result<Vec<(Value, Vec<Value>)>> {
        let records = self.read(|txn| {
            let mut records = Vec::new();
            for (seq, text) in txn.scan(Table::Activities, Scan::all().reversed().limit(limit))? {
                let prefix = format!("{seq}\0");
                let deliveries = txn.scan(Table::Deliveries, Scan::prefix(&prefix))?;
                records.push((seq, text, deliveries));
            }
            Ok(records)
        })?;
        records
            .into_iter()
            .map(|(seq, text, deliveries)| {
                let deliveries = deliveries
                    .iter()
                    .map(|(key, text)| decode(text, key))
                    .collect::<Result<Vec<_>>>()?;
                Ok((decode(&text, &seq)?, deliveries))
            })
            .collect()
    }

    /// What is known of each peer: `{:available [:error] :at}`.
    pub fn peers(&self) -> Result<Vec<(String, Value)>> {
        let entries = self.read(|txn| txn.scan(Table::Peers, Scan::all()))?;
        entries
            .into_iter()
            .map(|(peer, text)| {
                let known = decode(&text, &peer)?;
                Ok((peer, known))
            })
            .collect()
    }

    /// Deliveries not yet made (pending), per peer.
    pub fn outbox_depth(&self) -> Result<Vec<(String, usize)>> {
        let entries = self.read(|txn| txn.scan(Table::DeliveryDue, Scan::all()))?;
        let mut depth: Vec<(String, usize)> = Vec::new();
        for (index, _) in entries {
            let peer = index.rsplit('\0').next().unwrap_or("").to_string();
            match depth.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, n)) => *n += 1,
                None => depth.push((peer, 1)),
            }
        }
        Ok(depth)
    }
}

fn text_of_key(key: &str) -> &str {
    key.split_once('\0').map_or("", |(_, peer)| peer)
}

/// What became of one delivery attempt.
pub enum DeliveryOutcome {
    Delivered,
    Retry {
        due: i64,
        error: String,
    },
    /// Not tried: its peer is marked unavailable. Due at `due` unless the peer has answered
    /// meanwhile.
    Waiting {
        due: i64,
        error: String,
    },
    Failed {
        error: String,
    },
}
