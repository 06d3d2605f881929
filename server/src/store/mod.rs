//! The store: everything the host keeps, behind one interface with two backends — LMDB in
//! a directory (the zero-setup default) or PostgreSQL shared by several nodes
//! (`SX_DATABASE_URL`). The logic (posts, accounts, flows, federation, app data) is written
//! once against `backend::{Read, Write}`; only `lmdb.rs` touches heed and only
//! `postgres.rs` speaks SQL. A transaction is never held across an `.await`.
//!
//! Values are stored as SX wire text (`repr`) and read back in data mode: the store never
//! evaluates what it reads.

mod auth;
mod claims;
mod data;
mod federation;
mod flows;
mod posts;

mod backend;
mod lmdb;
mod postgres;

use std::fmt;
use std::path::{Path, PathBuf};

use sx_kernel::Value;

use backend::{Read, Scan, Table, Write};

pub use auth::{Session, User};
pub use claims::Claims;
pub use federation::{Delivery, DeliveryOutcome};
pub use postgres::redact;
pub use posts::{fold, sample_ops};

/// Bump when the layout of any LMDB table changes; a store written with another version is
/// refused at open rather than misread. Version 2 added users, tokens and sessions, version
/// 3 flows and federation, version 4 the change log and leases (an older store is upgraded
/// in place: the new tables start empty). PostgreSQL has its own numbered migrations.
pub const SCHEMA_VERSION: u32 = 4;

/// How big an LMDB store may grow and how many readers it admits.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The LMDB map size: a write that would pass it fails with [`StoreError::Full`].
    pub max_bytes: usize,
    /// LMDB's reader table: every thread that may hold a read transaction at once (worker
    /// threads and their blocking pools). Past it LMDB answers `MDB_READERS_FULL`.
    pub max_readers: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_bytes: 1 << 30,
            max_readers: 1024,
        }
    }
}

/// Where the store is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// LMDB in this directory (`SX_PERSIST_DIR`).
    Dir(PathBuf),
    /// PostgreSQL at this URL (`SX_DATABASE_URL`).
    Postgres(String),
}

impl fmt::Display for Location {
    /// For messages: a database URL is shown without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "the store in {}", dir.display()),
            Location::Postgres(url) => write!(f, "the database at {}", postgres::redact(url)),
        }
    }
}

#[derive(Debug)]
pub enum StoreError {
    /// LMDB itself failed (disk, permissions...).
    Lmdb(heed::Error),
    /// The database cannot be reached now (PostgreSQL down, connection lost): the request may
    /// succeed when it is back (503). A write whose COMMIT went out but whose answer was lost
    /// may have been committed.
    Unavailable(String),
    /// The database refused a statement.
    Database(String),
    /// The store reached its size limit (`SX_STORE_MAX_MB`); nothing was written.
    Full,
    /// The store was written by another schema version.
    Schema { found: String, expected: u32 },
    /// A stored record does not read back (damaged data).
    Corrupt(String),
    /// An operation that would make a post invalid; nothing was written.
    Invalid(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Lmdb(e) => write!(f, "storage error: {e}"),
            StoreError::Unavailable(why) => write!(f, "the database is unavailable: {why}"),
            StoreError::Database(why) => write!(f, "database error: {why}"),
            StoreError::Full => write!(f, "the store is full (raise SX_STORE_MAX_MB)"),
            StoreError::Schema { found, expected } => write!(
                f,
                "the store has schema version {found}, this build expects {expected}"
            ),
            StoreError::Corrupt(what) => write!(f, "damaged store record: {what}"),
            StoreError::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<heed::Error> for StoreError {
    fn from(e: heed::Error) -> Self {
        match e {
            heed::Error::Mdb(heed::MdbError::MapFull) => StoreError::Full,
            e => StoreError::Lmdb(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A memo of parsed records for one thread (values are not `Send`). Every read still goes
/// to the store; a record whose stored text is unchanged is not parsed again.
#[derive(Default)]
pub struct DecodeCache {
    entries: std::cell::RefCell<std::collections::HashMap<String, (String, Value)>>,
}

impl DecodeCache {
    /// Posts from their records (`Store::posts_text`), newest first.
    pub fn posts(&self, records: &[(String, String)]) -> Result<Vec<Value>> {
        let mut out = records
            .iter()
            .map(|(slug, text)| self.decode(slug, text))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|p| std::cmp::Reverse(posts::sort_time(p)));
        Ok(out)
    }

    /// A record (SX text) read back in data mode; unchanged text is not parsed again.
    pub fn decode(&self, key: &str, text: &str) -> Result<Value> {
        if let Some((seen, value)) = self.entries.borrow().get(key) {
            if seen == text {
                return Ok(value.clone());
            }
        }
        let value = decode(text, key)?;
        self.entries
            .borrow_mut()
            .insert(key.to_string(), (text.to_string(), value.clone()));
        Ok(value)
    }
}

/// How many post changes the store remembers for `changes_since`; a reader further behind
/// reloads everything.
const CHANGES_KEPT: u64 = 4096;

/// The answer to `changes_since`: the sequence number now, and the slugs changed since the
/// one asked about (each once), or `None` when the reader must reload every post.
pub struct Changes {
    pub seq: u64,
    pub slugs: Option<Vec<String>>,
}

enum Backend {
    Lmdb(lmdb::Lmdb),
    Postgres(Box<postgres::Postgres>),
}

pub struct Store {
    backend: Backend,
    claims: Claims,
}

/// Keys are 1 to 511 bytes (LMDB's limit, kept on both backends so that they agree): a
/// longer or empty one names nothing stored.
fn key_fits(key: &str) -> bool {
    (1..=511).contains(&key.len())
}

fn encode(v: &Value) -> String {
    sx_kernel::printer::repr(v)
}

fn decode(text: &str, what: &str) -> Result<Value> {
    sx_kernel::reader::read_one(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The next number of the counter `name` in the meta table (1, 2, ...).
fn next_seq(txn: &mut dyn Write, name: &str) -> Result<u64> {
    let seq = match txn.get(Table::Meta, name)? {
        Some(n) => n.parse::<u64>().unwrap_or(0) + 1,
        None => 1,
    };
    txn.put(Table::Meta, name, &seq.to_string())?;
    Ok(seq)
}

impl Store {
    /// Opens (creating if needed) an LMDB store in `dir` and checks its schema version.
    pub fn open(dir: &Path) -> Result<Store> {
        Store::open_with(dir, Options::default())
    }

    pub fn open_with(dir: &Path, options: Options) -> Result<Store> {
        let lmdb = lmdb::Lmdb::open(dir, options)?;
        lmdb.write(|txn| match txn.get(Table::Meta, "schema")?.as_deref() {
            None | Some("1" | "2" | "3") => {
                txn.put(Table::Meta, "schema", &SCHEMA_VERSION.to_string())
            }
            Some(found) if found == SCHEMA_VERSION.to_string() => Ok(()),
            Some(found) => Err(StoreError::Schema {
                found: found.to_string(),
                expected: SCHEMA_VERSION,
            }),
        })?;
        Ok(Store {
            backend: Backend::Lmdb(lmdb),
            claims: Claims::local(),
        })
    }

    /// Connects to PostgreSQL at `url` (at most `pool` connections), creating or migrating
    /// the schema; a database from a newer build is refused.
    pub fn connect(url: &str, pool: usize) -> Result<Store> {
        Ok(Store {
            backend: Backend::Postgres(Box::new(postgres::Postgres::connect(url, pool)?)),
            claims: Claims::random(),
        })
    }

    /// Opens the store at `location` (LMDB with `options`).
    pub fn open_at(location: &Location, options: Options, pool: usize) -> Result<Store> {
        match location {
            Location::Dir(dir) => Store::open_with(dir, options),
            Location::Postgres(url) => Store::connect(url, pool),
        }
    }

    /// Sets who claims work in this process and for how long.
    pub fn with_claims(mut self, claims: Claims) -> Store {
        self.claims = claims;
        self
    }

    /// Sets how long this node's claims hold unrenewed (`SX_LEASE_MS`).
    pub fn with_lease(mut self, lease_ms: i64) -> Store {
        self.claims.lease_ms = lease_ms;
        self
    }

    /// Whether several nodes may share this store (PostgreSQL): only then is work claimed.
    pub fn shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Runs `work` on the store from async code, where it costs least: in place on LMDB
    /// (memory-mapped, quicker than a hop to another thread), on tokio's blocking pool on
    /// PostgreSQL (a worker waiting for the database would hold up its other requests).
    /// Only plain data crosses.
    pub async fn call_from_async<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        work: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if !self.shared() {
            return work(self);
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("a store task failed: {e}"))))
    }

    fn read<T>(&self, f: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Lmdb(db) => db.read(f),
            Backend::Postgres(db) => db.read(f),
        }
    }

    /// Runs `f` in a write transaction, committed when it answers `Ok` (an `Err` writes
    /// nothing). Write transactions are serial across every process sharing the store.
    fn write<T>(&self, f: impl FnOnce(&mut dyn Write) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Lmdb(db) => db.write(f),
            Backend::Postgres(db) => db.write(f),
        }
    }

    pub fn schema_version(&self) -> Result<String> {
        match &self.backend {
            Backend::Lmdb(_) => Ok(self
                .read(|txn| txn.get(Table::Meta, "schema"))?
                .unwrap_or_default()),
            Backend::Postgres(db) => db.schema_version().map(|v| v.to_string()),
        }
    }

    /// Appends ops to posts' streams in one transaction: all of them commit, or (when any
    /// would make its post invalid) none does.
    pub fn append(&self, ops: &[(&str, Value)]) -> Result<()> {
        self.write(|txn| {
            for (slug, op) in ops {
                append_in(txn, slug, op)?;
            }
            changed_in(txn, ops.iter().map(|(slug, _)| *slug))
        })
    }

    /// The editor's autosave: appends `op` (an edit) to the draft `slug` only if the post is
    /// still at revision `rev` (its op count) and still a draft, checked in the same write
    /// transaction as the write. `Ok(Ok(revision))` when written; `Ok(Err(post))` when not
    /// (the post as stored, `None` when there is no such post): two editors never overwrite
    /// each other silently, and an autosave never changes a published post.
    pub fn append_if_draft_at(
        &self,
        slug: &str,
        op: &Value,
        rev: i64,
    ) -> Result<std::result::Result<i64, Option<Value>>> {
        self.write(|txn| {
            let current = post_in(txn, slug)?;
            let draft_at_rev = current.as_ref().is_some_and(|post| {
                let draft = match post {
                    Value::Dict(d) => matches!(
                        sx_kernel::value::kw_get(d, "status"),
                        Some(Value::Str(s)) if &**s == "draft"
                    ),
                    _ => false,
                };
                draft && posts::op_count(post) == rev
            });
            if !draft_at_rev {
                return Ok(Err(current));
            }
            append_in(txn, slug, op)?;
            changed_in(txn, std::iter::once(slug))?;
            Ok(Ok(rev + 1))
        })
    }

    /// The number of the last change to a post. Every write of a post moves it, in the
    /// transaction that writes the post (`changed_in`).
    pub fn change_seq(&self) -> Result<u64> {
        self.read(change_seq_in)
    }

    /// The posts changed after sequence number `since` (`None`: never synced, so all).
    pub fn changes_since(&self, since: Option<u64>) -> Result<Changes> {
        self.read(|txn| {
            let seq = change_seq_in(txn)?;
            let oldest_kept = seq.saturating_sub(CHANGES_KEPT) + 1;
            let slugs = match since {
                Some(since) if since == seq => Some(Vec::new()),
                Some(since) if since < seq && since + 1 >= oldest_kept => {
                    let from = format!("{:016x}", since + 1);
                    let mut seen = std::collections::HashSet::new();
                    let newer = txn.scan(Table::Changes, Scan::all().from(&from))?;
                    Some(
                        newer
                            .into_iter()
                            .map(|(_, slug)| slug)
                            .filter(|slug| seen.insert(slug.clone()))
                            .collect(),
                    )
                }
                _ => None,
            };
            Ok(Changes { seq, slugs })
        })
    }

    /// Starts a new post's stream under the first free slug made from `title` (`welcome`,
    /// `welcome-2`, ...; never one of `reserved`); returns the slug. Choosing the slug and
    /// writing the op share one transaction, so two authors never get the same slug — on
    /// any node.
    pub fn create_post(&self, title: &str, create: &Value, reserved: &[&str]) -> Result<String> {
        let base = posts::slugify(title);
        self.write(|txn| {
            let mut n = 1;
            let slug = loop {
                let candidate = if n == 1 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                };
                if !reserved.contains(&candidate.as_str())
                    && txn.get(Table::Posts, &candidate)?.is_none()
                {
                    break candidate;
                }
                n += 1;
            };
            append_in(txn, &slug, create)?;
            changed_in(txn, std::iter::once(slug.as_str()))?;
            Ok(slug)
        })
    }

    /// The current post (the fold of its stream).
    pub fn post(&self, slug: &str) -> Result<Option<Value>> {
        self.post_cached(slug, &DecodeCache::default())
    }

    /// `post`, parsing the record only when its text changed since `cache` last saw it.
    pub fn post_cached(&self, slug: &str, cache: &DecodeCache) -> Result<Option<Value>> {
        self.post_text(slug)?
            .map(|text| cache.decode(slug, &text))
            .transpose()
    }

    /// A post's record as stored (SX text), for a caller that parses it elsewhere.
    pub fn post_text(&self, slug: &str) -> Result<Option<String>> {
        if !key_fits(slug) {
            return Ok(None);
        }
        self.read(|txn| txn.get(Table::Posts, slug))
    }

    /// How many posts there are (drafts included).
    pub fn post_count(&self) -> Result<u64> {
        self.read(|txn| txn.count(Table::Posts))
    }

    /// Every op of a post's stream, oldest first.
    pub fn history(&self, slug: &str) -> Result<Vec<Value>> {
        let prefix = format!("{slug}\0");
        let entries = self.read(|txn| txn.scan(Table::Ops, Scan::prefix(&prefix)))?;
        entries
            .iter()
            .map(|(key, text)| decode(text, key))
            .collect()
    }

    /// All posts, newest first (by publication, else creation time).
    pub fn posts(&self) -> Result<Vec<Value>> {
        self.posts_cached(&DecodeCache::default())
    }

    /// `posts`, parsing only the records whose text changed since `cache` last saw them.
    pub fn posts_cached(&self, cache: &DecodeCache) -> Result<Vec<Value>> {
        cache.posts(&self.posts_text()?)
    }

    /// Every post's record as stored (slug, SX text), for a caller that parses them
    /// elsewhere (`DecodeCache::posts`).
    pub fn posts_text(&self) -> Result<Vec<(String, String)>> {
        self.read(|txn| txn.scan(Table::Posts, Scan::all()))
    }

    /// Seeds an empty store with the sample posts; a store with posts is left alone (two
    /// nodes starting at once seed once: the check and the writes share a transaction).
    pub fn seed(&self, now: i64, samples: &[Value]) -> Result<bool> {
        if samples.is_empty() {
            return Ok(false);
        }
        let samples = sample_ops(now, samples);
        self.write(|txn| {
            if !txn.scan(Table::Posts, Scan::all().limit(1))?.is_empty() {
                return Ok(false);
            }
            for (slug, op) in &samples {
                append_in(txn, slug, op)?;
            }
            changed_in(txn, samples.iter().map(|(slug, _)| slug.as_str()))?;
            Ok(true)
        })
    }

    /// Flushes everything committed to disk (commits are durable already; this is for a
    /// clean shutdown).
    pub fn sync(&self) -> Result<()> {
        match &self.backend {
            Backend::Lmdb(db) => db.sync(),
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Writes a raw record (tests damage records with it).
    #[cfg(test)]
    fn put_raw(&self, table: Table, key: &str, value: &str) -> Result<()> {
        self.write(|txn| txn.put(table, key, value))
    }
}

/// A post as the transaction sees it.
fn post_in(txn: &mut dyn Read, slug: &str) -> Result<Option<Value>> {
    if !key_fits(slug) {
        return Ok(None);
    }
    match txn.get(Table::Posts, slug)? {
        Some(text) => Ok(Some(decode(&text, slug)?)),
        None => Ok(None),
    }
}

fn change_seq_in(txn: &mut dyn Read) -> Result<u64> {
    Ok(match txn.get(Table::Meta, "change-seq")? {
        Some(n) => n.parse::<u64>().unwrap_or(0),
        None => 0,
    })
}

/// Records posts as changed, in the transaction that changes them: a reader that sees the
/// new sequence number also reads the new records.
fn changed_in<'a>(txn: &mut dyn Write, slugs: impl Iterator<Item = &'a str>) -> Result<()> {
    for slug in slugs {
        let seq = next_seq(txn, "change-seq")?;
        txn.put(Table::Changes, &format!("{seq:016x}"), slug)?;
        if seq > CHANGES_KEPT {
            txn.delete(Table::Changes, &format!("{:016x}", seq - CHANGES_KEPT))?;
        }
    }
    Ok(())
}

fn append_in(txn: &mut dyn Write, slug: &str, op: &Value) -> Result<()> {
    if !key_fits(slug) {
        return Err(StoreError::Invalid("a slug is 1 to 511 bytes".into()));
    }
    let current = post_in(txn, slug)?;
    let next = fold(current.as_ref(), slug, op).map_err(StoreError::Invalid)?;
    let seq = posts::op_count(&next);
    txn.put(Table::Ops, &format!("{slug}\0{seq:016x}"), &encode(op))?;
    txn.put(Table::Posts, slug, &encode(&next))?;
    Ok(())
}

#[cfg(test)]
mod tests;
