//! The embedded backend: one LMDB environment in a directory (heed), one database per
//! table. Reads are memory-mapped; a write transaction is never held across an `.await`.

use std::ops::Bound;
use std::path::Path;

use heed::types::Str;
use heed::{Database, Env, EnvOpenOptions, RoTxn, RwTxn, WithoutTls};

use super::backend::{Read, Scan, Table, Write};
use super::{key_fits, Options, Result, StoreError};

pub struct Lmdb {
    /// Read transactions own their reader slot (`MDB_NOTLS`), not the thread that opened
    /// them: with thread-local slots, a thread that exits after the environment closed
    /// (a worker finishing as the server stops) wrote into unmapped memory — a segfault
    /// seen in the tests.
    env: Env<WithoutTls>,
    /// One database per table, in `Table::ALL` order.
    dbs: Vec<Database<Str, Str>>,
}

impl Lmdb {
    pub fn open(dir: &Path, options: Options) -> Result<Lmdb> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Lmdb(heed::Error::Io(e)))?;
        // SAFETY: heed requires that the same environment is not opened twice in one
        // process and that the files are not modified by other means while open; each
        // instance owns its directory (SX_PERSIST_DIR) and opens it once.
        #[allow(unsafe_code)]
        let env = unsafe {
            EnvOpenOptions::new()
                .read_txn_without_tls()
                .map_size(options.max_bytes)
                .max_readers(options.max_readers)
                .max_dbs(32)
                .open(dir)?
        };
        let mut wtxn = env.write_txn()?;
        let mut dbs = Vec::with_capacity(Table::ALL.len());
        for table in Table::ALL {
            dbs.push(env.create_database(&mut wtxn, Some(table.name()))?);
        }
        wtxn.commit()?;
        Ok(Lmdb { env, dbs })
    }

    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
        let txn = self.env.read_txn()?;
        f(&mut LmdbRead {
            txn: &txn,
            dbs: &self.dbs,
        })
    }

    /// Runs `f` in a write transaction, committed when `f` answers `Ok`.
    pub fn write<T>(&self, f: impl FnOnce(&mut dyn Write) -> Result<T>) -> Result<T> {
        let mut txn = self.env.write_txn()?;
        let out = f(&mut LmdbWrite {
            txn: &mut txn,
            dbs: &self.dbs,
        })?;
        txn.commit()?;
        Ok(out)
    }

    pub fn sync(&self) -> Result<()> {
        self.env.force_sync()?;
        Ok(())
    }
}

struct LmdbRead<'t> {
    txn: &'t RoTxn<'t, WithoutTls>,
    dbs: &'t [Database<Str, Str>],
}

struct LmdbWrite<'t, 'e> {
    txn: &'t mut RwTxn<'e>,
    dbs: &'t [Database<Str, Str>],
}

fn get(txn: &RoTxn<WithoutTls>, db: &Database<Str, Str>, key: &str) -> Result<Option<String>> {
    if !key_fits(key) {
        return Ok(None);
    }
    Ok(db.get(txn, key)?.map(str::to_string))
}

fn scan(
    txn: &RoTxn<WithoutTls>,
    db: &Database<Str, Str>,
    scan: Scan<'_>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut keep = |entry: heed::Result<(&str, &str)>| -> Result<bool> {
        let (key, value) = entry?;
        if scan.from.is_some_and(|from| key < from) {
            return Ok(true);
        }
        out.push((key.to_string(), value.to_string()));
        Ok(out.len() < scan.limit)
    };
    if scan.limit == 0 {
        return Ok(out);
    }
    match (scan.prefix.is_empty(), scan.reverse) {
        (true, false) => match scan.from {
            Some(from) if !from.is_empty() => {
                for entry in db.range(txn, &(Bound::Included(from), Bound::Unbounded))? {
                    if !keep(entry)? {
                        break;
                    }
                }
            }
            _ => {
                for entry in db.iter(txn)? {
                    if !keep(entry)? {
                        break;
                    }
                }
            }
        },
        (true, true) => {
            for entry in db.rev_iter(txn)? {
                if !keep(entry)? {
                    break;
                }
            }
        }
        (false, false) => {
            for entry in db.prefix_iter(txn, scan.prefix)? {
                if !keep(entry)? {
                    break;
                }
            }
        }
        (false, true) => {
            for entry in db.rev_prefix_iter(txn, scan.prefix)? {
                if !keep(entry)? {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Reads are the same in a read and in a write transaction (a `RwTxn` is a `RoTxn`).
macro_rules! reads {
    ($($txn:ty),*) => {$(
        impl Read for $txn {
            fn get(&mut self, table: Table, key: &str) -> Result<Option<String>> {
                get(self.txn, &self.dbs[table as usize], key)
            }

            fn scan(&mut self, table: Table, s: Scan<'_>) -> Result<Vec<(String, String)>> {
                scan(self.txn, &self.dbs[table as usize], s)
            }

            fn count(&mut self, table: Table) -> Result<u64> {
                Ok(self.dbs[table as usize].len(self.txn)?)
            }
        }
    )*};
}

reads!(LmdbRead<'_>, LmdbWrite<'_, '_>);

impl Write for LmdbWrite<'_, '_> {
    fn put(&mut self, table: Table, key: &str, value: &str) -> Result<()> {
        if !key_fits(key) {
            return Err(StoreError::Invalid(format!(
                "a {} key is 1 to 511 bytes",
                table.name()
            )));
        }
        Ok(self.dbs[table as usize].put(self.txn, key, value)?)
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<bool> {
        if !key_fits(key) {
            return Ok(false);
        }
        Ok(self.dbs[table as usize].delete(self.txn, key)?)
    }
}
