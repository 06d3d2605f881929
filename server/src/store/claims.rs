//! Work that must happen on one node at a time — a flow instance being advanced, a
//! delivery being attempted — is claimed with a lease: `leases` maps `kind \0 id` to the
//! claim's expiry and node. Claims are taken in a write transaction (serial across nodes),
//! renewed while the work runs, and given up when it is done; another node takes the work
//! over once a lease ends unrenewed (its node died). Leases compare the nodes' wall clocks:
//! nodes sharing a database keep their clocks in step (NTP), well within `SX_LEASE_MS`.
//!
//! Only a shared store (PostgreSQL) claims anything: on LMDB there is one node, and a claim
//! would be a synced commit for nothing.

use sha2::{Digest, Sha256};

use super::backend::{Read, Scan, Table, Write};
use super::{key_fits, Result, Store};

/// Who claims work in this process, and for how long a claim holds when its node stops
/// renewing it (a node that died).
#[derive(Clone, Debug)]
pub struct Claims {
    pub node: String,
    pub lease_ms: i64,
}

impl Claims {
    const LEASE_MS: i64 = 30_000;

    /// LMDB's one node, the same across restarts.
    pub(super) fn local() -> Claims {
        Claims {
            node: "local".into(),
            lease_ms: Claims::LEASE_MS,
        }
    }

    /// A node of a shared store: a name no other process has.
    pub(super) fn random() -> Claims {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            // Still distinct from every other process: the process id and the clock.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            bytes = (nanos ^ (u64::from(std::process::id()) << 40)).to_be_bytes();
        }
        Claims {
            node: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            lease_ms: Claims::LEASE_MS,
        }
    }
}

/// The lease record's key: `kind \0 id`, or `kind \0 #sha256(id)` when that would be too
/// long for a key (so that every item can be claimed).
fn lease_key(kind: &str, id: &str) -> String {
    let key = format!("{kind}\0{id}");
    if key_fits(&key) {
        return key;
    }
    let digest = Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}\0#{hex}")
}

/// The node holding a lease and until when (`None`: no lease).
fn holder(txn: &mut dyn Read, key: &str) -> Result<Option<(i64, String)>> {
    Ok(txn.get(Table::Leases, key)?.map(|held| {
        let (expires, node) = held.split_once('\0').unwrap_or(("0", ""));
        (
            i64::from_str_radix(expires, 16).unwrap_or(0),
            node.to_string(),
        )
    }))
}

/// The entries a due index (`due (16 hex digits) \0 id` → "") lists as due at `now`, soonest
/// first, that `take` accepts, at most `limit`; and when the first entry after those falls
/// due (at or before `now` when there were more than `limit`). Entries `take` refuses (work
/// another node holds) do not count against the limit.
pub(super) fn due_in<T: Read + ?Sized>(
    txn: &mut T,
    table: Table,
    now: i64,
    limit: usize,
    mut take: impl FnMut(&mut T, &str) -> Result<bool>,
) -> Result<(Vec<String>, Option<i64>)> {
    const PAGE: usize = 256;
    let mut ids = Vec::new();
    let mut from = String::new();
    loop {
        let page = txn.scan(table, Scan::all().from(&from).limit(PAGE))?;
        for (key, _) in &page {
            // An entry that does not read (damage) names nothing to do.
            let Some((due, id)) = key
                .split_once('\0')
                .and_then(|(due, id)| Some((i64::from_str_radix(due, 16).ok()?, id)))
            else {
                continue;
            };
            if due > now || ids.len() >= limit {
                return Ok((ids, Some(due)));
            }
            if take(txn, id)? {
                ids.push(id.to_string());
            }
        }
        match page.last() {
            // The smallest key after the last one seen.
            Some((last, _)) if page.len() == PAGE => from = format!("{last}\0"),
            _ => return Ok((ids, None)),
        }
    }
}

impl Store {
    /// Claims `kind`/`id` for this node until `now` + the lease, unless another node holds
    /// an unexpired claim; renewing one's own claim succeeds. Always true on LMDB.
    pub(super) fn claim_in(
        &self,
        txn: &mut dyn Write,
        kind: &str,
        id: &str,
        now: i64,
    ) -> Result<bool> {
        if !self.shared() {
            return Ok(true);
        }
        let key = lease_key(kind, id);
        if let Some((expires, node)) = holder(txn, &key)? {
            if node != self.claims.node && expires > now {
                return Ok(false);
            }
        }
        self.hold_in(txn, &key, now)?;
        Ok(true)
    }

    /// Writes this node's lease on `key`, until `now` + the lease.
    fn hold_in(&self, txn: &mut dyn Write, key: &str, now: i64) -> Result<()> {
        let expires = now.saturating_add(self.claims.lease_ms).max(0);
        let lease = format!("{expires:016x}\0{}", self.claims.node);
        txn.put(Table::Leases, key, &lease)
    }

    /// Whether this node may finish `kind`/`id`: no other node holds an unexpired claim on
    /// it (a node whose lease ran out while it worked must not record over the node that
    /// took the work over).
    pub(super) fn holds_in(
        &self,
        txn: &mut dyn Write,
        kind: &str,
        id: &str,
        now: i64,
    ) -> Result<bool> {
        if !self.shared() {
            return Ok(true);
        }
        Ok(match holder(txn, &lease_key(kind, id))? {
            Some((expires, node)) => node == self.claims.node || expires <= now,
            None => true,
        })
    }

    /// Gives up this node's claim (the work is done, or moved on); another node's claim
    /// stays.
    pub(super) fn release_in(&self, txn: &mut dyn Write, kind: &str, id: &str) -> Result<()> {
        if !self.shared() {
            return Ok(());
        }
        let key = lease_key(kind, id);
        if holder(txn, &key)?.is_some_and(|(_, node)| node == self.claims.node) {
            txn.delete(Table::Leases, &key)?;
        }
        Ok(())
    }

    /// Claims the items of `due` (a due index over the records of `records`) due at `now`
    /// for this node, at most `limit` (those other nodes hold, and entries whose record is
    /// gone, are skipped), and tells when the next one after those falls due. On LMDB a
    /// read: every due item is this node's.
    pub(super) fn claim_due(
        &self,
        due: Table,
        records: Table,
        kind: &str,
        now: i64,
        limit: usize,
    ) -> Result<(Vec<String>, Option<i64>)> {
        let exists = |txn: &mut dyn Read, id: &str| Ok(txn.get(records, id)?.is_some());
        let found = self.read(|txn| due_in(txn, due, now, limit, |txn, id| exists(txn, id)))?;
        if !self.shared() || found.0.is_empty() {
            return Ok(found);
        }
        self.write(|txn| {
            due_in(txn, due, now, limit, |txn, id| {
                Ok(exists(txn, id)? && self.claim_in(txn, kind, id, now)?)
            })
        })
    }

    /// Renews this node's claims on `ids` (work still running): false for each one this
    /// node no longer holds — another node took it over, even if that node has finished
    /// and released it since (renewing never claims afresh).
    pub(super) fn renew(&self, kind: &str, ids: &[String], now: i64) -> Result<Vec<bool>> {
        if !self.shared() || ids.is_empty() {
            return Ok(vec![true; ids.len()]);
        }
        self.write(|txn| {
            ids.iter()
                .map(|id| self.renew_in(txn, kind, id, now))
                .collect()
        })
    }

    /// `renew` of one claim, inside a write transaction.
    pub(super) fn renew_in(
        &self,
        txn: &mut dyn Write,
        kind: &str,
        id: &str,
        now: i64,
    ) -> Result<bool> {
        if !self.shared() {
            return Ok(true);
        }
        let key = lease_key(kind, id);
        match holder(txn, &key)? {
            Some((_, node)) if node == self.claims.node => {
                self.hold_in(txn, &key, now)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Gives up this node's claim on `kind`/`id`.
    pub(super) fn release(&self, kind: &str, id: &str) -> Result<()> {
        if !self.shared() {
            return Ok(());
        }
        self.write(|txn| self.release_in(txn, kind, id))
    }
}
