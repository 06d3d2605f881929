//! Flow definitions and instances (the runner is `crate::flows`). An instance is one SX dict
//! (`{:id :flow :version :status :pos :steps :due :rev ...}`) rewritten whole by each step,
//! so a step's result and the instance's advance commit together. Two indexes make the
//! runner cheap: `due` (time-ordered: every instance that should be looked at, and when)
//! and `order` (start order, for listing newest first).

use sx_kernel::value::{kw_get, Dict, Key};
use sx_kernel::Value;

use super::backend::{Scan, Table, Write};
use super::{decode, encode, key_fits, next_seq, Result, Store, StoreError};

/// The lease kind of a flow instance being advanced.
const FLOW: &str = "flow";

fn due_key(due: i64, id: &str) -> String {
    format!("{:016x}\0{id}", due.max(0))
}

fn int(d: &Dict, name: &str) -> Option<i64> {
    match kw_get(d, name) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    }
}

fn dict_of(v: &Value, what: &str) -> Result<Dict> {
    match v {
        Value::Dict(d) => Ok(d.clone()),
        _ => Err(StoreError::Invalid(format!("{what} must be a dict"))),
    }
}

fn define_in(txn: &mut dyn Write, key: &str, nodes: &Value) -> Result<()> {
    if txn.get(Table::FlowDefs, key)?.is_none() {
        txn.put(Table::FlowDefs, key, &encode(nodes))?;
    }
    Ok(())
}

impl Store {
    /// Keeps a flow version's definition (once: a version's text never changes).
    pub fn flow_define(&self, name: &str, version: &str, nodes: &Value) -> Result<()> {
        let key = format!("{name}\0{version}");
        if !key_fits(&key) {
            return Err(StoreError::Invalid("a flow name is too long".into()));
        }
        self.write(|txn| define_in(txn, &key, nodes))
    }

    /// The nodes of a flow version, when kept.
    pub fn flow_definition(&self, name: &str, version: &str) -> Result<Option<Value>> {
        let key = format!("{name}\0{version}");
        if !key_fits(&key) {
            return Ok(None);
        }
        match self.read(|txn| txn.get(Table::FlowDefs, &key))? {
            Some(text) => Ok(Some(decode(&text, &key)?)),
            None => Ok(None),
        }
    }

    /// Stores a new instance (a dict with `:id`, and `:due` when the runner should look at
    /// it) unless one with that id exists: returns the stored instance and whether it is new.
    pub fn flow_start(&self, instance: &Value) -> Result<(Value, bool)> {
        let mut d = dict_of(instance, "an instance")?;
        let id = match kw_get(&d, "id") {
            Some(Value::Str(id)) if key_fits(id) && !id.contains('\0') => id.to_string(),
            _ => {
                return Err(StoreError::Invalid(
                    "an instance id must be 1 to 200 characters".into(),
                ))
            }
        };
        self.write(|txn| {
            if let Some(text) = txn.get(Table::Flows, &id)? {
                return Ok((decode(&text, &id)?, false));
            }
            let seq = next_seq(txn, "flow-seq")?;
            d.insert(Key(Value::kw("seq")), Value::Int(seq as i64));
            d.insert(Key(Value::kw("rev")), Value::Int(1));
            let stored = Value::Dict(d.clone());
            txn.put(Table::Flows, &id, &encode(&stored))?;
            txn.put(Table::FlowOrder, &format!("{seq:016x}"), &id)?;
            if let Some(due) = int(&d, "due") {
                txn.put(Table::FlowDue, &due_key(due, &id), "")?;
            }
            Ok((stored, true))
        })
    }

    pub fn flow_instance(&self, id: &str) -> Result<Option<Value>> {
        if !key_fits(id) {
            return Ok(None);
        }
        match self.read(|txn| txn.get(Table::Flows, id))? {
            Some(text) => Ok(Some(decode(&text, id)?)),
            None => Ok(None),
        }
    }

    /// Changes an instance in one transaction: `change` sees the stored instance and
    /// answers the new one, or `None` to leave it (its state was not what the caller
    /// expected). The `due` index follows the new instance's `:due`; `:rev` counts writes.
    /// Returns the instance as stored afterwards (`None`: no such instance).
    pub fn flow_update(
        &self,
        id: &str,
        change: impl FnOnce(&Value) -> Option<Value>,
    ) -> Result<Option<(Value, bool)>> {
        if !key_fits(id) {
            return Ok(None);
        }
        self.write(|txn| {
            let Some(text) = txn.get(Table::Flows, id)? else {
                return Ok(None);
            };
            let current = decode(&text, id)?;
            let Some(next) = change(&current) else {
                return Ok(Some((current, false)));
            };
            let old = dict_of(&current, id)?;
            let mut new = dict_of(&next, "an instance")?;
            new.insert(
                Key(Value::kw("rev")),
                Value::Int(int(&old, "rev").unwrap_or(0) + 1),
            );
            if let Some(due) = int(&old, "due") {
                txn.delete(Table::FlowDue, &due_key(due, id))?;
            }
            if let Some(due) = int(&new, "due") {
                txn.put(Table::FlowDue, &due_key(due, id), "")?;
            }
            let stored = Value::Dict(new);
            txn.put(Table::Flows, id, &encode(&stored))?;
            Ok(Some((stored, true)))
        })
    }

    /// Claims the instances due at `now` or earlier for this node, soonest first (at most
    /// `limit`; one another node is advancing is left to it while its claim holds), and
    /// tells when the next one after those falls due. Renew the claims of instances still
    /// being advanced with `flow_renew`; give each up with `flow_release`.
    pub fn flow_due(&self, now: i64, limit: usize) -> Result<(Vec<String>, Option<i64>)> {
        self.claim_due(Table::FlowDue, Table::Flows, FLOW, now, limit)
    }

    /// Renews this node's claims on instances it is still advancing: false for each one
    /// another node took over (its claim ran out).
    pub fn flow_renew(&self, ids: &[String], now: i64) -> Result<Vec<bool>> {
        self.renew(FLOW, ids, now)
    }

    /// Gives up this node's claim on an instance.
    pub fn flow_release(&self, id: &str) -> Result<()> {
        self.release(FLOW, id)
    }

    /// Instances newest first, at most `limit`.
    pub fn flow_list(&self, limit: usize) -> Result<Vec<Value>> {
        let texts = self.read(|txn| {
            let mut texts = Vec::new();
            for (_, id) in txn.scan(Table::FlowOrder, Scan::all().reversed().limit(limit))? {
                if let Some(text) = txn.get(Table::Flows, &id)? {
                    texts.push((id, text));
                }
            }
            Ok(texts)
        })?;
        texts.iter().map(|(id, text)| decode(text, id)).collect()
    }

    /// `sx kernel`: keeps the definitions a host registered, each as its name's latest
    /// version, and the URL the host is called back at — in one transaction.
    pub fn flow_register(&self, callback: &str, flows: &[(String, String, Value)]) -> Result<()> {
        self.write(|txn| {
            for (name, version, nodes) in flows {
                let key = format!("{name}\0{version}");
                if !key_fits(&key) {
                    return Err(StoreError::Invalid(format!(
                        "the flow name {name:?} is too long"
                    )));
                }
                define_in(txn, &key, nodes)?;
                txn.put(Table::Meta, &format!("flow-latest\0{name}"), version)?;
            }
            txn.put(Table::Meta, "flow-callback", callback)
        })
    }

    /// The latest registered version of a flow and its nodes (`sx kernel`).
    pub fn flow_latest(&self, name: &str) -> Result<Option<(String, Value)>> {
        let key = format!("flow-latest\0{name}");
        if !key_fits(&key) {
            return Ok(None);
        }
        let Some(version) = self.read(|txn| txn.get(Table::Meta, &key))? else {
            return Ok(None);
        };
        Ok(self
            .flow_definition(name, &version)?
            .map(|nodes| (version, nodes)))
    }

    /// Where the registered host is called back (`sx kernel`).
    pub fn flow_callback(&self) -> Result<Option<String>> {
        self.read(|txn| txn.get(Table::Meta, "flow-callback"))
    }

    pub fn flow_outbox_put(&self, id: &str, start: &Value) -> Result<()> {
        if !key_fits(id) {
            return Err(StoreError::Invalid("a flow id is too long".into()));
        }
        self.write(|txn| txn.put(Table::FlowOutbox, id, &encode(start)))
    }

    /// Pending starts, oldest id first, at most `limit`.
    pub fn flow_outbox(&self, limit: usize) -> Result<Vec<(String, Value)>> {
        let entries = self.read(|txn| txn.scan(Table::FlowOutbox, Scan::all().limit(limit)))?;
        entries
            .into_iter()
            .map(|(id, text)| {
                let start = decode(&text, &id)?;
                Ok((id, start))
            })
            .collect()
    }

    pub fn flow_outbox_delete(&self, id: &str) -> Result<()> {
        self.write(|txn| txn.delete(Table::FlowOutbox, id).map(drop))
    }
}
