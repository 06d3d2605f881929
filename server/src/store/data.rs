//! Apps' own data: SX values under string keys (`data/*` effects), for what is not a post —
//! the events app's calendar entries, say. Values are SX wire text, read back as data.

use sx_kernel::Value;

use super::backend::Table;
use super::{decode, encode, key_fits, Result, Store, StoreError};

fn check(key: &str) -> Result<()> {
    if key_fits(key) {
        Ok(())
    } else {
        Err(StoreError::Invalid("a data key is 1 to 511 bytes".into()))
    }
}

impl Store {
    pub fn data_get(&self, key: &str) -> Result<Option<Value>> {
        match self.data_text(key)? {
            Some(text) => Ok(Some(decode(&text, key)?)),
            None => Ok(None),
        }
    }

    /// The value under `key` as stored (SX text), for a caller that parses it elsewhere.
    pub fn data_text(&self, key: &str) -> Result<Option<String>> {
        if !key_fits(key) {
            return Ok(None);
        }
        self.read(|txn| txn.get(Table::AppData, key))
    }

    pub fn data_put(&self, key: &str, value: &Value) -> Result<()> {
        check(key)?;
        self.write(|txn| txn.put(Table::AppData, key, &encode(value)))
    }

    /// Adds `value` to the list under `key` unless an equal one is there, in one
    /// transaction (so two adds never lose one); returns the list.
    pub fn data_push(&self, key: &str, value: &Value) -> Result<Value> {
        check(key)?;
        self.write(|txn| {
            let mut items: Vec<Value> = match txn.get(Table::AppData, key)? {
                Some(text) => match decode(&text, key)? {
                    Value::List(l) => l.iter().cloned().collect(),
                    _ => return Err(StoreError::Invalid(format!("{key} does not hold a list"))),
                },
                None => Vec::new(),
            };
            if !items.contains(value) {
                items.push(value.clone());
            }
            let list = Value::list(items);
            txn.put(Table::AppData, key, &encode(&list))?;
            Ok(list)
        })
    }
}
