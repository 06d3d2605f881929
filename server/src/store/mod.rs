//! The store: one LMDB environment per instance (heed), opened with a schema check. Only
//! this module touches heed; a write transaction is never held across an `.await`.
//!
//! Values are stored as SX wire text (`repr`) and read back in data mode: the store never
//! evaluates what it reads.

mod auth;
mod data;
mod federation;
mod flows;
mod posts;

use std::fmt;
use std::path::Path;

use heed::types::Str;
use heed::{Database, Env, EnvOpenOptions, WithoutTls};
use sx_kernel::Value;

pub use auth::{Session, User};
pub use federation::{Delivery, DeliveryOutcome};
pub use posts::{fold, sample_ops};

/// Bump when the layout of any database changes; a store written with another version is
/// refused at open rather than misread. Version 2 added users, tokens and sessions, version
/// 3 flows and federation (an older store is upgraded in place: the new databases start empty).
pub const SCHEMA_VERSION: u32 = 3;

/// How big the store may grow and how many readers it admits.
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

#[derive(Debug)]
pub enum StoreError {
    /// LMDB itself failed (disk, permissions...).
    Lmdb(heed::Error),
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
/// to LMDB; a record whose stored text is unchanged is not parsed again.
#[derive(Default)]
pub struct DecodeCache {
    entries: std::cell::RefCell<std::collections::HashMap<String, (String, Value)>>,
}

impl DecodeCache {
    fn decode(&self, key: &str, text: &str) -> Result<Value> {
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
const CHANGES_KEPT: usize = 4096;

/// The posts written since the store opened, in commit order: `seq` counts every change, and
/// `recent` holds the last `CHANGES_KEPT` of them. In memory only: every kernel image starts
/// with a full load, so a sequence number need not outlive the process.
#[derive(Default)]
struct ChangeLog {
    seq: u64,
    recent: std::collections::VecDeque<(u64, String)>,
}

/// The answer to `changes_since`: the sequence number now, and the slugs changed since the
/// one asked about (each once), or `None` when the reader must reload every post.
pub struct Changes {
    pub seq: u64,
    pub slugs: Option<Vec<String>>,
}

pub struct Store {
    /// Read transactions own their reader slot (`MDB_NOTLS`), not the thread that opened
    /// them: with thread-local slots, a thread that exits after the environment closed
    /// (a worker finishing as the server stops) wrote into unmapped memory — a segfault
    /// seen in the tests.
    env: Env<WithoutTls>,
    meta: Database<Str, Str>,
    /// `slug \0 sequence` → one op of the post's content stream.
    ops: Database<Str, Str>,
    /// `slug` → the fold of its ops (derived; written in the same transaction as the op).
    posts: Database<Str, Str>,
    auth: auth::AuthDbs,
    flows: flows::FlowDbs,
    fed: federation::FedDbs,
    data: data::DataDbs,
    changes: std::sync::Mutex<ChangeLog>,
}

/// LMDB keys are 1 to 511 bytes: a longer or empty one names nothing stored.
fn key_fits(key: &str) -> bool {
    (1..=511).contains(&key.len())
}

fn encode(v: &Value) -> String {
    sx_kernel::printer::repr(v)
}

fn decode(text: &str, what: &str) -> Result<Value> {
    sx_kernel::reader::read_one(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and checks its schema version.
    pub fn open(dir: &Path) -> Result<Store> {
        Store::open_with(dir, Options::default())
    }

    pub fn open_with(dir: &Path, options: Options) -> Result<Store> {
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
        let meta: Database<Str, Str> = env.create_database(&mut wtxn, Some("meta"))?;
        let ops = env.create_database(&mut wtxn, Some("ops"))?;
        let posts = env.create_database(&mut wtxn, Some("posts"))?;
        let auth = auth::AuthDbs {
            users: env.create_database(&mut wtxn, Some("users"))?,
            tokens: env.create_database(&mut wtxn, Some("tokens"))?,
            sessions: env.create_database(&mut wtxn, Some("sessions"))?,
        };
        let flows = flows::FlowDbs {
            defs: env.create_database(&mut wtxn, Some("flow-defs"))?,
            instances: env.create_database(&mut wtxn, Some("flows"))?,
            due: env.create_database(&mut wtxn, Some("flow-due"))?,
            order: env.create_database(&mut wtxn, Some("flow-order"))?,
            outbox: env.create_database(&mut wtxn, Some("flow-outbox"))?,
        };
        let fed = federation::FedDbs {
            followers: env.create_database(&mut wtxn, Some("fed-followers"))?,
            activities: env.create_database(&mut wtxn, Some("fed-activities"))?,
            received: env.create_database(&mut wtxn, Some("fed-received"))?,
            deliveries: env.create_database(&mut wtxn, Some("fed-deliveries"))?,
            due: env.create_database(&mut wtxn, Some("fed-due"))?,
            peers: env.create_database(&mut wtxn, Some("fed-peers"))?,
        };
        let data = data::DataDbs {
            values: env.create_database(&mut wtxn, Some("app-data"))?,
        };
        match meta.get(&wtxn, "schema")? {
            None | Some("1" | "2") => meta.put(&mut wtxn, "schema", &SCHEMA_VERSION.to_string())?,
            Some(found) if found == SCHEMA_VERSION.to_string() => {}
            Some(found) => {
                return Err(StoreError::Schema {
                    found: found.to_string(),
                    expected: SCHEMA_VERSION,
                })
            }
        }
        wtxn.commit()?;
        Ok(Store {
            env,
            meta,
            ops,
            posts,
            auth,
            flows,
            fed,
            data,
            changes: std::sync::Mutex::default(),
        })
    }

    pub fn schema_version(&self) -> Result<String> {
        let rtxn = self.env.read_txn()?;
        Ok(self
            .meta
            .get(&rtxn, "schema")?
            .unwrap_or_default()
            .to_string())
    }

    /// Appends ops to posts' streams in one transaction: all of them commit, or (when any
    /// would make its post invalid) none does.
    pub fn append(&self, ops: &[(&str, Value)]) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        for (slug, op) in ops {
            self.append_in(&mut wtxn, slug, op)?;
        }
        wtxn.commit()?;
        self.changed(ops.iter().map(|(slug, _)| *slug));
        Ok(())
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
        let mut wtxn = self.env.write_txn()?;
        let current = self.post_in(&wtxn, slug)?;
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
        self.append_in(&mut wtxn, slug, op)?;
        wtxn.commit()?;
        self.changed(std::iter::once(slug));
        Ok(Ok(rev + 1))
    }

    /// A post as the transaction sees it.
    fn post_in(&self, txn: &heed::RoTxn<WithoutTls>, slug: &str) -> Result<Option<Value>> {
        match self.posts.get(txn, slug)? {
            Some(text) => Ok(Some(decode(text, slug)?)),
            None => Ok(None),
        }
    }

    /// Records posts as changed. Called after their transaction commits, so a reader that
    /// sees the new sequence number also reads the new records (a reader that reads a record
    /// before its change is recorded reads it again later: never a stale record kept).
    fn changed<'a>(&self, slugs: impl Iterator<Item = &'a str>) {
        let mut log = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        for slug in slugs {
            log.seq += 1;
            let seq = log.seq;
            log.recent.push_back((seq, slug.to_string()));
            if log.recent.len() > CHANGES_KEPT {
                log.recent.pop_front();
            }
        }
    }

    /// The posts changed after sequence number `since` (`None`: never synced, so all).
    pub fn changes_since(&self, since: Option<u64>) -> Changes {
        let log = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let oldest_kept = log.recent.front().map_or(log.seq + 1, |(seq, _)| *seq);
        let slugs = match since {
            Some(since) if since == log.seq => Some(Vec::new()),
            Some(since) if since < log.seq && since + 1 >= oldest_kept => {
                let mut seen = std::collections::HashSet::new();
                let newer = log.recent.iter().filter(|(seq, _)| *seq > since);
                Some(
                    newer
                        .filter(|(_, slug)| seen.insert(slug.as_str()))
                        .map(|(_, slug)| slug.clone())
                        .collect(),
                )
            }
            _ => None,
        };
        Changes {
            seq: log.seq,
            slugs,
        }
    }

    fn append_in(&self, wtxn: &mut heed::RwTxn, slug: &str, op: &Value) -> Result<()> {
        let current = match self.posts.get(wtxn, slug)? {
            Some(text) => Some(decode(text, slug)?),
            None => None,
        };
        let next = fold(current.as_ref(), slug, op).map_err(StoreError::Invalid)?;
        let seq = posts::op_count(&next);
        self.ops
            .put(wtxn, &format!("{slug}\0{seq:016x}"), &encode(op))?;
        self.posts.put(wtxn, slug, &encode(&next))?;
        Ok(())
    }

    /// Starts a new post's stream under the first free slug made from `title` (`welcome`,
    /// `welcome-2`, ...; never one of `reserved`); returns the slug. Choosing the slug and
    /// writing the op share one transaction, so two authors never get the same slug.
    pub fn create_post(&self, title: &str, create: &Value, reserved: &[&str]) -> Result<String> {
        let base = posts::slugify(title);
        let mut wtxn = self.env.write_txn()?;
        let mut n = 1;
        let slug = loop {
            let candidate = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            if !reserved.contains(&candidate.as_str())
                && self.posts.get(&wtxn, &candidate)?.is_none()
            {
                break candidate;
            }
            n += 1;
        };
        self.append_in(&mut wtxn, &slug, create)?;
        wtxn.commit()?;
        self.changed(std::iter::once(slug.as_str()));
        Ok(slug)
    }

    /// The current post (the fold of its stream).
    pub fn post(&self, slug: &str) -> Result<Option<Value>> {
        self.post_cached(slug, &DecodeCache::default())
    }

    /// `post`, parsing the record only when its text changed since `cache` last saw it.
    pub fn post_cached(&self, slug: &str, cache: &DecodeCache) -> Result<Option<Value>> {
        if !key_fits(slug) {
            return Ok(None);
        }
        let rtxn = self.env.read_txn()?;
        match self.posts.get(&rtxn, slug)? {
            Some(text) => Ok(Some(cache.decode(slug, text)?)),
            None => Ok(None),
        }
    }

    /// Every op of a post's stream, oldest first.
    pub fn history(&self, slug: &str) -> Result<Vec<Value>> {
        let rtxn = self.env.read_txn()?;
        let prefix = format!("{slug}\0");
        let mut out = Vec::new();
        for entry in self.ops.prefix_iter(&rtxn, &prefix)? {
            let (key, text) = entry?;
            out.push(decode(text, key)?);
        }
        Ok(out)
    }

    /// All posts, newest first (by publication, else creation time).
    pub fn posts(&self) -> Result<Vec<Value>> {
        self.posts_cached(&DecodeCache::default())
    }

    /// `posts`, parsing only the records whose text changed since `cache` last saw them.
    pub fn posts_cached(&self, cache: &DecodeCache) -> Result<Vec<Value>> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for entry in self.posts.iter(&rtxn)? {
            let (slug, text) = entry?;
            out.push(cache.decode(slug, text)?);
        }
        out.sort_by_key(|p| std::cmp::Reverse(posts::sort_time(p)));
        Ok(out)
    }

    /// Seeds an empty store with the sample posts; a store with posts is left alone.
    pub fn seed(&self, now: i64, samples: &[Value]) -> Result<bool> {
        if samples.is_empty() || !self.posts()?.is_empty() {
            return Ok(false);
        }
        let samples = sample_ops(now, samples);
        let ops: Vec<(&str, Value)> = samples
            .iter()
            .map(|(slug, op)| (slug.as_str(), op.clone()))
            .collect();
        self.append(&ops)?;
        Ok(true)
    }

    /// Flushes everything committed to disk (LMDB commits are durable already; this is for
    /// a clean shutdown).
    pub fn sync(&self) -> Result<()> {
        self.env.force_sync()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
