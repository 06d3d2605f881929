//! What a backend provides: ordered string tables read and written in transactions. The
//! store's logic (posts, accounts, flows, federation, app data) is written once against
//! these two traits; `lmdb.rs` and `postgres.rs` are the two ways to keep the tables.
//!
//! Write transactions are serial: LMDB has one writer per environment, and PostgreSQL
//! takes one advisory lock per write transaction, so a write sees every write committed
//! before it began and check-then-write inside one transaction is safe across processes
//! and nodes. A read transaction sees one consistent snapshot.

use super::Result;

macro_rules! tables {
    ($($(#[$doc:meta])* $table:ident = $name:literal,)*) => {
        /// Every table of the store, with the name each backend keeps it under.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Table { $($(#[$doc])* $table,)* }

        impl Table {
            pub const ALL: &'static [Table] = &[$(Table::$table,)*];

            pub fn name(self) -> &'static str {
                match self { $(Table::$table => $name,)* }
            }
        }
    };
}

tables! {
    /// Counters, settings and secrets: `schema`, `flow-seq`, `fed-seq`, `change-seq`, ...
    Meta = "meta",
    /// `slug \0 sequence` → one op of the post's content stream.
    Ops = "ops",
    /// `slug` → the fold of its ops (derived; written in the same transaction as the op).
    Posts = "posts",
    /// `seq (16 hex digits)` → the slug a write changed (the last `CHANGES_KEPT`).
    Changes = "changes",
    /// user name → user record.
    Users = "users",
    /// SHA-256 of a token (hex) → user name.
    Tokens = "tokens",
    /// session id → session record.
    Sessions = "sessions",
    /// `name \0 version` → the flow's nodes (as `defflow` wrote them).
    FlowDefs = "flow-defs",
    /// `id` → the instance.
    Flows = "flows",
    /// `due-ms (16 hex digits) \0 id` → "": when the runner should next look at an instance.
    FlowDue = "flow-due",
    /// `seq (16 hex digits)` → id: instances in start order.
    FlowOrder = "flow-order",
    /// `id` → `{:flow :input}`: starts a host could not hand to its `sx kernel` yet.
    FlowOutbox = "flow-outbox",
    /// base URL → "".
    Followers = "fed-followers",
    /// `seq (16 hex digits)` → `{:id :type :actor :object [:to] :direction :at [:result]}`.
    Activities = "fed-activities",
    /// `actor \0 id` → seq: received activities, to drop a repeat.
    Received = "fed-received",
    /// `seq \0 peer` → `{:peer :status :attempts :created-at [:due] [:error]}`.
    Deliveries = "fed-deliveries",
    /// `due (16 hex digits) \0 seq \0 peer` → "".
    DeliveryDue = "fed-due",
    /// base URL → `{:available bool [:error] :at}`.
    Peers = "fed-peers",
    /// `kind \0 id` → `expires (16 hex digits) \0 node`: work a node has claimed.
    Leases = "leases",
    /// An app's own values (`data/*` effects).
    AppData = "app-data",
}

/// Which entries a scan visits: keys starting with `prefix` (and, forward, not before
/// `from`), in key order or reversed, at most `limit`.
#[derive(Clone, Copy)]
pub struct Scan<'a> {
    pub prefix: &'a str,
    pub from: Option<&'a str>,
    pub reverse: bool,
    pub limit: usize,
}

impl<'a> Scan<'a> {
    /// Every entry in key order.
    pub fn all() -> Scan<'static> {
        Scan::prefix("")
    }

    pub fn prefix(prefix: &'a str) -> Scan<'a> {
        Scan {
            prefix,
            from: None,
            reverse: false,
            limit: usize::MAX,
        }
    }

    pub fn from(self, from: &'a str) -> Scan<'a> {
        Scan {
            from: Some(from),
            ..self
        }
    }

    pub fn reversed(self) -> Scan<'a> {
        Scan {
            reverse: true,
            ..self
        }
    }

    pub fn limit(self, limit: usize) -> Scan<'a> {
        Scan { limit, ..self }
    }
}

/// Reads inside a transaction. Keys are ordered byte-wise.
pub trait Read {
    fn get(&mut self, table: Table, key: &str) -> Result<Option<String>>;
    fn scan(&mut self, table: Table, scan: Scan<'_>) -> Result<Vec<(String, String)>>;
    fn count(&mut self, table: Table) -> Result<u64>;
}

/// Writes inside a write transaction: all of them commit, or none.
pub trait Write: Read {
    fn put(&mut self, table: Table, key: &str, value: &str) -> Result<()>;
    /// Whether there was an entry to delete.
    fn delete(&mut self, table: Table, key: &str) -> Result<bool>;
}

/// The smallest key greater than every key starting with `prefix` (`None`: there is none,
/// the prefix is empty or all 0xff bytes): a prefix scan is the range `prefix..end`.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_past_its_last_extension() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn table_names_are_distinct() {
        let mut names: Vec<_> = Table::ALL.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Table::ALL.len());
    }
}
