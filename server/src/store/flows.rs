//! Flow definitions and instances (the runner is `crate::flows`). An instance is one SX dict
//! (`{:id :flow :version :status :pos :steps :due :rev ...}`) rewritten whole by each step,
//! so a step's result and the instance's advance commit together. Two indexes make the
//! runner cheap: `due` (time-ordered: every instance that should be looked at, and when)
//! and `order` (start order, for listing newest first).

use heed::types::Str;
use heed::Database;
use sx_kernel::value::{kw_get, Dict, Key};
use sx_kernel::Value;

use super::{decode, encode, key_fits, Result, Store, StoreError};

pub(super) struct FlowDbs {
    /// `name \0 version` → the flow's nodes (as `defflow` wrote them).
    pub defs: Database<Str, Str>,
    /// `id` → the instance.
    pub instances: Database<Str, Str>,
    /// `due-ms (16 hex digits) \0 id` → "": when the runner should next look at an instance.
    pub due: Database<Str, Str>,
    /// `seq (16 hex digits)` → id: instances in start order.
    pub order: Database<Str, Str>,
    /// `id` → `{:flow :input}`: starts a host could not hand to its `sx kernel` yet.
    pub outbox: Database<Str, Str>,
}

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

impl Store {
    /// Keeps a flow version's definition (once: a version's text never changes).
    pub fn flow_define(&self, name: &str, version: &str, nodes: &Value) -> Result<()> {
        let key = format!("{name}\0{version}");
        if !key_fits(&key) {
            return Err(StoreError::Invalid("a flow name is too long".into()));
        }
        let mut wtxn = self.env.write_txn()?;
        if self.flows.defs.get(&wtxn, &key)?.is_none() {
            self.flows.defs.put(&mut wtxn, &key, &encode(nodes))?;
        }
        wtxn.commit()?;
        Ok(())
    }

    /// The nodes of a flow version, when kept.
    pub fn flow_definition(&self, name: &str, version: &str) -> Result<Option<Value>> {
        let key = format!("{name}\0{version}");
        if !key_fits(&key) {
            return Ok(None);
        }
        let rtxn = self.env.read_txn()?;
        match self.flows.defs.get(&rtxn, &key)? {
            Some(text) => Ok(Some(decode(text, &key)?)),
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
        let mut wtxn = self.env.write_txn()?;
        if let Some(text) = self.flows.instances.get(&wtxn, &id)? {
            return Ok((decode(text, &id)?, false));
        }
        let seq = match self.meta.get(&wtxn, "flow-seq")? {
            Some(n) => n.parse::<u64>().unwrap_or(0) + 1,
            None => 1,
        };
        self.meta.put(&mut wtxn, "flow-seq", &seq.to_string())?;
        d.insert(Key(Value::kw("seq")), Value::Int(seq as i64));
        d.insert(Key(Value::kw("rev")), Value::Int(1));
        let stored = Value::Dict(d.clone());
        self.flows.instances.put(&mut wtxn, &id, &encode(&stored))?;
        self.flows
            .order
            .put(&mut wtxn, &format!("{seq:016x}"), &id)?;
        if let Some(due) = int(&d, "due") {
            self.flows.due.put(&mut wtxn, &due_key(due, &id), "")?;
        }
        wtxn.commit()?;
        Ok((stored, true))
    }

    pub fn flow_instance(&self, id: &str) -> Result<Option<Value>> {
        if !key_fits(id) {
            return Ok(None);
        }
        let rtxn = self.env.read_txn()?;
        match self.flows.instances.get(&rtxn, id)? {
            Some(text) => Ok(Some(decode(text, id)?)),
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
        let mut wtxn = self.env.write_txn()?;
        let Some(text) = self.flows.instances.get(&wtxn, id)? else {
            return Ok(None);
        };
        let current = decode(text, id)?;
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
            self.flows.due.delete(&mut wtxn, &due_key(due, id))?;
        }
        if let Some(due) = int(&new, "due") {
            self.flows.due.put(&mut wtxn, &due_key(due, id), "")?;
        }
        let stored = Value::Dict(new);
        self.flows.instances.put(&mut wtxn, id, &encode(&stored))?;
        wtxn.commit()?;
        Ok(Some((stored, true)))
    }

    /// Ids of instances due at `now` or earlier, soonest first (at most `limit`), and the
    /// time the next one after those falls due.
    pub fn flow_due(&self, now: i64, limit: usize) -> Result<(Vec<String>, Option<i64>)> {
        let rtxn = self.env.read_txn()?;
        let mut ids = Vec::new();
        for entry in self.flows.due.iter(&rtxn)? {
            let (key, _) = entry?;
            let (due, id) = key
                .split_once('\0')
                .ok_or_else(|| StoreError::Corrupt(format!("flow timer {key:?}")))?;
            let due = i64::from_str_radix(due, 16)
                .map_err(|_| StoreError::Corrupt(format!("flow timer {key:?}")))?;
            if due > now || ids.len() >= limit {
                return Ok((ids, Some(due)));
            }
            ids.push(id.to_string());
        }
        Ok((ids, None))
    }

    /// Instances newest first, at most `limit`.
    pub fn flow_list(&self, limit: usize) -> Result<Vec<Value>> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for entry in self.flows.order.rev_iter(&rtxn)? {
            let (_, id) = entry?;
            if out.len() >= limit {
                break;
            }
            if let Some(text) = self.flows.instances.get(&rtxn, id)? {
                out.push(decode(text, id)?);
            }
        }
        Ok(out)
    }

    /// `sx kernel`: keeps the definitions a host registered, each as its name's latest
    /// version, and the URL the host is called back at — in one transaction.
    pub fn flow_register(&self, callback: &str, flows: &[(String, String, Value)]) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        for (name, version, nodes) in flows {
            let key = format!("{name}\0{version}");
            if !key_fits(&key) {
                return Err(StoreError::Invalid(format!(
                    "the flow name {name:?} is too long"
                )));
            }
            if self.flows.defs.get(&wtxn, &key)?.is_none() {
                self.flows.defs.put(&mut wtxn, &key, &encode(nodes))?;
            }
            self.meta
                .put(&mut wtxn, &format!("flow-latest\0{name}"), version)?;
        }
        self.meta.put(&mut wtxn, "flow-callback", callback)?;
        wtxn.commit()?;
        Ok(())
    }

    /// The latest registered version of a flow and its nodes (`sx kernel`).
    pub fn flow_latest(&self, name: &str) -> Result<Option<(String, Value)>> {
        let key = format!("flow-latest\0{name}");
        if !key_fits(&key) {
            return Ok(None);
        }
        let version = {
            let rtxn = self.env.read_txn()?;
            match self.meta.get(&rtxn, &key)? {
                Some(v) => v.to_string(),
                None => return Ok(None),
            }
        };
        Ok(self
            .flow_definition(name, &version)?
            .map(|nodes| (version, nodes)))
    }

    /// Where the registered host is called back (`sx kernel`).
    pub fn flow_callback(&self) -> Result<Option<String>> {
        let rtxn = self.env.read_txn()?;
        Ok(self.meta.get(&rtxn, "flow-callback")?.map(str::to_string))
    }

    pub fn flow_outbox_put(&self, id: &str, start: &Value) -> Result<()> {
        if !key_fits(id) {
            return Err(StoreError::Invalid("a flow id is too long".into()));
        }
        let mut wtxn = self.env.write_txn()?;
        self.flows.outbox.put(&mut wtxn, id, &encode(start))?;
        wtxn.commit()?;
        Ok(())
    }

    /// Pending starts, oldest id first, at most `limit`.
    pub fn flow_outbox(&self, limit: usize) -> Result<Vec<(String, Value)>> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for entry in self.flows.outbox.iter(&rtxn)?.take(limit) {
            let (id, text) = entry?;
            out.push((id.to_string(), decode(text, id)?));
        }
        Ok(out)
    }

    pub fn flow_outbox_delete(&self, id: &str) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        self.flows.outbox.delete(&mut wtxn, id)?;
        wtxn.commit()?;
        Ok(())
    }
}
