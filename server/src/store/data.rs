//! Apps' own data: SX values under string keys (`data/*` effects), for what is not a post —
//! the events app's calendar entries, say. Values are SX wire text, read back as data.

use heed::types::Str;
use heed::Database;
use sx_kernel::Value;

use super::{decode, encode, key_fits, Result, Store, StoreError};

pub(super) struct DataDbs {
    pub values: Database<Str, Str>,
}

fn check(key: &str) -> Result<()> {
    if key_fits(key) {
        Ok(())
    } else {
        Err(StoreError::Invalid("a data key is 1 to 511 bytes".into()))
    }
}

impl Store {
    pub fn data_get(&self, key: &str) -> Result<Option<Value>> {
        if !key_fits(key) {
            return Ok(None);
        }
        let rtxn = self.env.read_txn()?;
        match self.data.values.get(&rtxn, key)? {
            Some(text) => Ok(Some(decode(text, key)?)),
            None => Ok(None),
        }
    }

    pub fn data_put(&self, key: &str, value: &Value) -> Result<()> {
        check(key)?;
        let mut wtxn = self.env.write_txn()?;
        self.data.values.put(&mut wtxn, key, &encode(value))?;
        wtxn.commit()?;
        Ok(())
    }

    /// Adds `value` to the list under `key` unless an equal one is there, in one
    /// transaction (so two adds never lose one); returns the list.
    pub fn data_push(&self, key: &str, value: &Value) -> Result<Value> {
        check(key)?;
        let mut wtxn = self.env.write_txn()?;
        let mut items: Vec<Value> = match self.data.values.get(&wtxn, key)? {
            Some(text) => match decode(text, key)? {
                Value::List(l) => l.iter().cloned().collect(),
                _ => return Err(StoreError::Invalid(format!("{key} does not hold a list"))),
            },
            None => Vec::new(),
        };
        if !items.contains(value) {
            items.push(value.clone());
        }
        let list = Value::list(items);
        self.data.values.put(&mut wtxn, key, &encode(&list))?;
        wtxn.commit()?;
        Ok(list)
    }
}
