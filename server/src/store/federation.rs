//! Federation's durable state (the protocol is `crate::federation`): followers, every
//! activity sent or received (in arrival order), one delivery per (activity, recipient) with
//! a time-ordered index of those due, and what is known of each peer. An activity is queued
//! in the same transaction as the change it announces, so nothing acknowledged is lost.

use heed::types::Str;
use heed::{Database, RwTxn};
use sx_kernel::value::{kw_dict, kw_get, Dict, Key};
use sx_kernel::Value;

use super::{decode, encode, key_fits, Result, Store, StoreError};

pub(super) struct FedDbs {
    /// base URL → "".
    pub followers: Database<Str, Str>,
    /// `seq (16 hex digits)` → `{:id :type :actor :object [:to] :direction :at [:result]}`.
    pub activities: Database<Str, Str>,
    /// `actor \0 id` → seq: received activities, to drop a repeat.
    pub received: Database<Str, Str>,
    /// `seq \0 peer` → `{:peer :status :attempts :created-at [:due] [:error]}`.
    pub deliveries: Database<Str, Str>,
    /// `due (16 hex digits) \0 seq \0 peer` → "".
    pub due: Database<Str, Str>,
    /// base URL → `{:available bool [:error] :at}`.
    pub peers: Database<Str, Str>,
}

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

impl Store {
    fn next_seq(&self, wtxn: &mut RwTxn, counter: &str) -> Result<u64> {
        let seq = match self.meta.get(wtxn, counter)? {
            Some(n) => n.parse::<u64>().unwrap_or(0) + 1,
            None => 1,
        };
        self.meta.put(wtxn, counter, &seq.to_string())?;
        Ok(seq)
    }

    /// Adds a follower; false when it already was one.
    pub fn follow(&self, base: &str) -> Result<bool> {
        if !key_fits(base) {
            return Err(StoreError::Invalid("a follower URL is too long".into()));
        }
        let mut wtxn = self.env.write_txn()?;
        let new = self.fed.followers.get(&wtxn, base)?.is_none();
        if new {
            self.fed.followers.put(&mut wtxn, base, "")?;
        }
        wtxn.commit()?;
        Ok(new)
    }

    pub fn unfollow(&self, base: &str) -> Result<bool> {
        if !key_fits(base) {
            return Ok(false);
        }
        let mut wtxn = self.env.write_txn()?;
        let was = self.fed.followers.delete(&mut wtxn, base)?;
        wtxn.commit()?;
        Ok(was)
    }

    pub fn followers(&self) -> Result<Vec<String>> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for entry in self.fed.followers.iter(&rtxn)? {
            out.push(entry?.0.to_string());
        }
        Ok(out)
    }

    /// Records an outgoing activity and queues one delivery per recipient (the followers and
    /// `to`, each once), inside the caller's transaction.
    fn emit_in(&self, wtxn: &mut RwTxn, activity: &Value, to: &[String], now: i64) -> Result<()> {
        let mut record = dict(activity.clone(), "an activity")?;
        put(&mut record, "direction", Value::str("out"));
        put(&mut record, "at", Value::Int(now));
        let seq = format!("{:016x}", self.next_seq(wtxn, "fed-seq")?);
        self.fed
            .activities
            .put(wtxn, &seq, &encode(&Value::Dict(record)))?;
        let mut recipients: Vec<String> = Vec::new();
        for entry in self.fed.followers.iter(wtxn)? {
            recipients.push(entry?.0.to_string());
        }
        for peer in to {
            if !recipients.contains(peer) {
                recipients.push(peer.clone());
            }
        }
        for peer in recipients {
            let key = format!("{seq}\0{peer}");
            if !key_fits(&key) {
                continue;
            }
            let delivery = kw_dict([
                ("peer", Value::str(&peer)),
                ("status", Value::str("pending")),
                ("attempts", Value::Int(0)),
                ("created-at", Value::Int(now)),
                ("due", Value::Int(now)),
            ]);
            self.fed.deliveries.put(wtxn, &key, &encode(&delivery))?;
            self.fed.due.put(wtxn, &format!("{now:016x}\0{key}"), "")?;
        }
        Ok(())
    }

    /// Records and queues an activity on its own (`POST /:slug/allocate`).
    pub fn emit(&self, activity: &Value, to: &[String], now: i64) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        self.emit_in(&mut wtxn, activity, to, now)?;
        wtxn.commit()?;
        Ok(())
    }

    /// `append`, and in the same transaction the activity `announce` makes of the change
    /// (given each post before and after), if any.
    pub fn append_announcing(
        &self,
        ops: &[(&str, Value)],
        now: i64,
        announce: impl FnOnce(&[(Option<Value>, Value)]) -> Option<Value>,
    ) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        let mut changes = Vec::new();
        for (slug, op) in ops {
            let before = self.post_in(&wtxn, slug)?;
            self.append_in(&mut wtxn, slug, op)?;
            let after = self
                .post_in(&wtxn, slug)?
                .ok_or_else(|| StoreError::Corrupt(format!("{slug} vanished")))?;
            changes.push((before, after));
        }
        if let Some(activity) = announce(&changes) {
            self.emit_in(&mut wtxn, &activity, &[], now)?;
        }
        wtxn.commit()?;
        self.changed(ops.iter().map(|(slug, _)| *slug));
        Ok(())
    }

    /// Keeps a received activity unless this actor's activity with that id was seen: true
    /// when it is new.
    pub fn receive(&self, activity: &Value, now: i64) -> Result<Option<String>> {
        let mut record = dict(activity.clone(), "an activity")?;
        let seen = format!("{}\0{}", text(&record, "actor"), text(&record, "id"));
        if !key_fits(&seen) {
            return Err(StoreError::Invalid(
                "an activity's actor and id are too long".into(),
            ));
        }
        let mut wtxn = self.env.write_txn()?;
        if self.fed.received.get(&wtxn, &seen)?.is_some() {
            return Ok(None);
        }
        let seq = format!("{:016x}", self.next_seq(&mut wtxn, "fed-seq")?);
        put(&mut record, "direction", Value::str("in"));
        put(&mut record, "at", Value::Int(now));
        self.fed
            .activities
            .put(&mut wtxn, &seq, &encode(&Value::Dict(record)))?;
        self.fed.received.put(&mut wtxn, &seen, &seq)?;
        wtxn.commit()?;
        Ok(Some(seq))
    }

    /// Notes what processing a received activity gave (shown on /activities).
    pub fn activity_result(&self, seq: &str, result: &Value) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        if let Some(text) = self.fed.activities.get(&wtxn, seq)? {
            let mut record = dict(decode(text, seq)?, seq)?;
            put(&mut record, "result", result.clone());
            self.fed
                .activities
                .put(&mut wtxn, seq, &encode(&Value::Dict(record)))?;
        }
        wtxn.commit()?;
        Ok(())
    }

    /// Deliveries due at `now`, soonest first, at most `limit`.
    pub fn deliveries_due(&self, now: i64, limit: usize) -> Result<Vec<Delivery>> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for entry in self.fed.due.iter(&rtxn)? {
            let (index, _) = entry?;
            let Some((due, key)) = index.split_once('\0') else {
                continue;
            };
            if i64::from_str_radix(due, 16).unwrap_or(i64::MAX) > now || out.len() >= limit {
                break;
            }
            let Some(text) = self.fed.deliveries.get(&rtxn, key)? else {
                continue;
            };
            let d = dict(decode(text, key)?, key)?;
            let (seq, peer) = key.split_once('\0').unwrap_or((key, ""));
            let Some(body) = self.fed.activities.get(&rtxn, seq)? else {
                continue;
            };
            // The wire carries the activity without the sender's bookkeeping.
            let mut activity = dict(decode(body, seq)?, seq)?;
            for field in ["direction", "at", "result"] {
                activity.remove(&Key(Value::kw(field)));
            }
            out.push(Delivery {
                key: key.to_string(),
                peer: peer.to_string(),
                body: encode(&Value::Dict(activity)),
                attempts: int(&d, "attempts"),
                created_at: int(&d, "created-at"),
            });
        }
        Ok(out)
    }

    /// Records how a delivery attempt went (and what that says of its peer).
    pub fn delivery_outcome(&self, key: &str, outcome: DeliveryOutcome, now: i64) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        let Some(text) = self.fed.deliveries.get(&wtxn, key)? else {
            return Ok(());
        };
        let mut d = dict(decode(text, key)?, key)?;
        if let Some(Value::Int(due)) = kw_get(&d, "due") {
            self.fed
                .due
                .delete(&mut wtxn, &format!("{due:016x}\0{key}"))?;
        }
        d.remove(&Key(Value::kw("due")));
        let peer = text_of_key(key);
        let attempts = int(&d, "attempts") + 1;
        put(&mut d, "attempts", Value::Int(attempts));
        match outcome {
            DeliveryOutcome::Delivered => {
                put(&mut d, "status", Value::str("delivered"));
                put(&mut d, "delivered-at", Value::Int(now));
                d.remove(&Key(Value::kw("error")));
                self.peer_in(&mut wtxn, peer, true, None, now)?;
            }
            DeliveryOutcome::Retry { due, error } => {
                put(&mut d, "status", Value::str("pending"));
                put(&mut d, "due", Value::Int(due));
                put(&mut d, "error", Value::str(&error));
                self.fed
                    .due
                    .put(&mut wtxn, &format!("{due:016x}\0{key}"), "")?;
            }
            DeliveryOutcome::Failed { error } => {
                put(&mut d, "status", Value::str("failed"));
                put(&mut d, "error", Value::str(&error));
                self.peer_in(&mut wtxn, peer, false, Some(&error), now)?;
            }
        }
        self.fed
            .deliveries
            .put(&mut wtxn, key, &encode(&Value::Dict(d)))?;
        wtxn.commit()?;
        Ok(())
    }

    /// Notes whether a peer answers. A peer that answers again after failing gets its
    /// waiting deliveries at once, instead of each at the end of its own backoff.
    fn peer_in(
        &self,
        wtxn: &mut RwTxn,
        peer: &str,
        available: bool,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        if !key_fits(peer) {
            return Ok(());
        }
        let known = match self.fed.peers.get(wtxn, peer)? {
            Some(text) => Some(dict(decode(text, peer)?, peer)?),
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
        self.fed.peers.put(wtxn, peer, &encode(&kw_dict(fields)))?;
        if available && was_failing {
            self.release_in(wtxn, peer, now)?;
        }
        Ok(())
    }

    /// Makes every waiting delivery to `peer` due now.
    fn release_in(&self, wtxn: &mut RwTxn, peer: &str, now: i64) -> Result<()> {
        let suffix = format!("\0{peer}");
        let mut waiting = Vec::new();
        for entry in self.fed.due.iter(wtxn)? {
            let (index, _) = entry?;
            if index.ends_with(&suffix) {
                waiting.push(index.to_string());
            }
        }
        for index in waiting {
            let Some((due, key)) = index.split_once('\0') else {
                continue;
            };
            if i64::from_str_radix(due, 16).unwrap_or(0) <= now {
                continue;
            }
            self.fed.due.delete(wtxn, &index)?;
            self.fed.due.put(wtxn, &format!("{now:016x}\0{key}"), "")?;
            if let Some(text) = self.fed.deliveries.get(wtxn, key)? {
                let mut d = dict(decode(text, key)?, key)?;
                put(&mut d, "due", Value::Int(now));
                self.fed
                    .deliveries
                    .put(wtxn, key, &encode(&Value::Dict(d)))?;
            }
        }
        Ok(())
    }

    /// A peer answered (or stopped answering) outside a delivery (a follow).
    pub fn peer_seen(
        &self,
        peer: &str,
        available: bool,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        self.peer_in(&mut wtxn, peer, available, error, now)?;
        wtxn.commit()?;
        Ok(())
    }

    /// Whether a peer is marked unavailable (it failed a delivery for good, and has not
    /// answered since).
    pub fn peer_unavailable(&self, peer: &str) -> Result<bool> {
        if !key_fits(peer) {
            return Ok(false);
        }
        let rtxn = self.env.read_txn()?;
        Ok(match self.fed.peers.get(&rtxn, peer)? {
            Some(text) => matches!(
                kw_get(&dict(decode(text, peer)?, peer)?, "available"),
                Some(Value::Bool(false))
            ),
            None => false,
        })
    }

    /// Activities newest first (at most `limit`), each with its deliveries.
    pub fn activities(&self, limit: usize) -> Result<Vec<(Value, Vec<Value>)>> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for entry in self.fed.activities.rev_iter(&rtxn)?.take(limit) {
            let (seq, text) = entry?;
            let activity = decode(text, seq)?;
            let mut deliveries = Vec::new();
            for entry in self
                .fed
                .deliveries
                .prefix_iter(&rtxn, &format!("{seq}\0"))?
            {
                let (key, text) = entry?;
                deliveries.push(decode(text, key)?);
            }
            out.push((activity, deliveries));
        }
        Ok(out)
    }

    /// What is known of each peer: `{:available [:error] :at}`.
    pub fn peers(&self) -> Result<Vec<(String, Value)>> {
        let rtxn = self.env.read_txn()?;
        let mut peers = Vec::new();
        for entry in self.fed.peers.iter(&rtxn)? {
            let (peer, text) = entry?;
            peers.push((peer.to_string(), decode(text, peer)?));
        }
        Ok(peers)
    }

    /// Deliveries not yet made (pending), per peer.
    pub fn outbox_depth(&self) -> Result<Vec<(String, usize)>> {
        let rtxn = self.env.read_txn()?;
        let mut depth: Vec<(String, usize)> = Vec::new();
        for entry in self.fed.due.iter(&rtxn)? {
            let (index, _) = entry?;
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
    Retry { due: i64, error: String },
    Failed { error: String },
}
