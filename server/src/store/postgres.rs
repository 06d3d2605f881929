//! The shared backend: PostgreSQL, for several `sx serve` nodes serving one site. The
//! store's tables are rows of one SQL table (`migrations/`), keyed and ordered by bytes as
//! in LMDB. Every write transaction first takes one advisory lock, so writes are serial
//! across nodes as they are in LMDB: a check and the write it guards (a free slug, an
//! unclaimed timer) always share a transaction, and never race another node's.
//!
//! The store is called from synchronous code on threads that may already drive a tokio
//! runtime (a worker's), where blocking on another runtime panics. So the connections live
//! on a small runtime of this backend's own, and each statement is handed to it and waited
//! for on a plain channel; kernel values never leave the calling thread.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls, Statement};

use super::backend::{prefix_end, Read, Scan, Table, Write};
use super::{Result, StoreError};

/// The numbered migrations, applied in order at connect; `sx_migrations` records each.
const MIGRATIONS: &[(i32, &str, &str)] =
    &[(1, "records", include_str!("migrations/001_records.sql"))];

/// Advisory lock keys: one held by each write transaction, one while migrating.
const WRITE_LOCK: i64 = 0x5358_5752;
const MIGRATE_LOCK: i64 = 0x5358_4d49;

/// How long a statement may take before the database counts as unavailable, and how long a
/// transaction waits for a free connection.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

const GET: &str = "SELECT value FROM sx_records WHERE tbl = $1 AND key = $2";
const SCAN: &str = "SELECT key, value FROM sx_records WHERE tbl = $1 AND key >= $2 \
                    AND ($3::bytea IS NULL OR key < $3) ORDER BY key LIMIT $4";
const SCAN_REVERSE: &str = "SELECT key, value FROM sx_records WHERE tbl = $1 AND key >= $2 \
                            AND ($3::bytea IS NULL OR key < $3) ORDER BY key DESC LIMIT $4";
const PUT: &str = "INSERT INTO sx_records (tbl, key, value) VALUES ($1, $2, $3) \
                   ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM sx_records WHERE tbl = $1 AND key = $2";
const COUNT: &str = "SELECT count(*) FROM sx_records WHERE tbl = $1";

/// `url` without its password, for messages and logs: the `:PASS` of the userinfo (which
/// runs to the first `@`, as the driver reads it, so a password may hold `/` or `?`) and any
/// `password=` parameter.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let rest = match rest.find('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}{}", &rest[..colon], &rest[at..]),
            None => rest.to_string(),
        },
        None => rest.to_string(),
    };
    let parts: Vec<String> = rest
        .split('&')
        .map(|part| match part.find("password=") {
            Some(i) if i == 0 || part[..i].ends_with('?') => format!("{}password=…", &part[..i]),
            _ => part.to_string(),
        })
        .collect();
    format!("{}{}", &url[..scheme_end], parts.join("&"))
}

/// What a failed statement means: the database gone (503, retried later) or a refusal.
fn classify(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let message = format!("{} ({code})", db.message());
        // 08: connection exceptions; 57P: the server shutting down or starting up;
        // 53300: too many connections.
        return if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
            StoreError::Unavailable(message)
        } else {
            StoreError::Database(message)
        };
    }
    StoreError::Unavailable(e.to_string())
}

/// One connection with its prepared statements.
struct Conn {
    client: Arc<Client>,
    get: Statement,
    scan: Statement,
    scan_reverse: Statement,
    put: Statement,
    delete: Statement,
    count: Statement,
}

struct Pool {
    idle: Vec<Conn>,
    open: usize,
    max: usize,
}

pub struct Postgres {
    /// `Some` until drop (a runtime is shut down in the background: dropping one on a
    /// thread that drives another panics).
    runtime: Option<tokio::runtime::Runtime>,
    config: Config,
    pool: Mutex<Pool>,
    freed: Condvar,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Postgres {
    /// Connects, applies the migrations this build has that the database lacks, and keeps
    /// up to `max` connections.
    pub fn connect(url: &str, max: usize) -> Result<Postgres> {
        let mut config: Config = url.parse().map_err(|e| {
            StoreError::Invalid(format!(
                "{} is not a PostgreSQL URL like postgres://USER:PASS@HOST:5432/DB: {e}",
                redact(url)
            ))
        })?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(StoreError::Invalid(
                "sslmode=require is not supported: connect over a private network or a \
                 tunnel (sslmode=disable or prefer)"
                    .into(),
            ));
        }
        config.connect_timeout(CONNECT_WITHIN);
        config.application_name("sx");
        // A node that vanishes mid-transaction (power, network) must not hold the write lock
        // for the systems' two-hour keepalive default: the server probes a silent client after
        // 30 s (its `tcp_keepalives_*`, set per session) and ends a transaction left idle for
        // a minute; this side probes a silent server the same way. Options the URL gives
        // are kept.
        config.keepalives_idle(Duration::from_secs(30));
        config.keepalives_interval(Duration::from_secs(10));
        config.keepalives_retries(3);
        let session = "-c idle_in_transaction_session_timeout=60000 -c tcp_keepalives_idle=30 \
                       -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3";
        let options = match config.get_options() {
            Some(given) if !given.is_empty() => format!("{given} {session}"),
            _ => session.to_string(),
        };
        config.options(&options);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sx-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot start its runtime: {e}")))?;
        let db = Postgres {
            runtime: Some(runtime),
            config,
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
                max: max.max(1),
            }),
            freed: Condvar::new(),
        };
        db.migrate()?;
        Ok(db)
    }

    /// Runs `work` on the backend's runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = std::result::Result<T, tokio_postgres::Error>> + Send + 'static,
    ) -> Result<T> {
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        runtime.spawn(async move {
            let _ = done.send(work.await);
        });
        match answer.recv_timeout(ANSWER_WITHIN) {
            Ok(answer) => answer.map_err(classify),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} s",
                ANSWER_WITHIN.as_secs()
            ))),
        }
    }

    fn open_client(&self) -> Result<Arc<Client>> {
        let config = self.config.clone();
        self.run(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!("a database connection ended: {e}");
                }
            });
            Ok(Arc::new(client))
        })
    }

    fn open_conn(&self) -> Result<Conn> {
        let client = self.open_client()?;
        let c = client.clone();
        let [get, scan, scan_reverse, put, delete, count] = self.run(async move {
            Ok([
                c.prepare(GET).await?,
                c.prepare(SCAN).await?,
                c.prepare(SCAN_REVERSE).await?,
                c.prepare(PUT).await?,
                c.prepare(DELETE).await?,
                c.prepare(COUNT).await?,
            ])
        })?;
        Ok(Conn {
            client,
            get,
            scan,
            scan_reverse,
            put,
            delete,
            count,
        })
    }

    fn lock_pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection of the pool: an idle one, a new one while there is room, or the first
    /// one given back.
    fn checkout(&self) -> Result<Conn> {
        let mut pool = self.lock_pool();
        loop {
            while let Some(conn) = pool.idle.pop() {
                if !conn.client.is_closed() {
                    return Ok(conn);
                }
                pool.open -= 1;
            }
            if pool.open < pool.max {
                pool.open += 1;
                drop(pool);
                return self.open_conn().inspect_err(|_| {
                    self.lock_pool().open -= 1;
                    self.freed.notify_one();
                });
            }
            let (guard, wait) = self
                .freed
                .wait_timeout(pool, ANSWER_WITHIN)
                .unwrap_or_else(|e| e.into_inner());
            pool = guard;
            if wait.timed_out() && pool.idle.is_empty() && pool.open >= pool.max {
                return Err(StoreError::Unavailable(
                    "every database connection stayed busy".into(),
                ));
            }
        }
    }

    /// Gives a connection back; one that failed is closed instead (a new one replaces it).
    fn checkin(&self, conn: Conn, healthy: bool) {
        let mut pool = self.lock_pool();
        if healthy && !conn.client.is_closed() {
            pool.idle.push(conn);
        } else {
            pool.open -= 1;
        }
        drop(pool);
        self.freed.notify_one();
    }

    fn execute(&self, conn: &Conn, sql: &str) -> Result<()> {
        let (client, sql) = (conn.client.clone(), sql.to_string());
        self.run(async move { client.batch_execute(&sql).await })
    }

    /// Runs `f` in a transaction on one connection; rolls back on an error. `begin` is sent
    /// together with the first statement (one round trip for both), and not at all when
    /// `f` reads nothing. A read-only transaction's COMMIT is sent but not waited for: the
    /// connection answers in order, so its next user waits behind it anyway.
    fn transaction<T>(
        &self,
        begin: &str,
        read_only: bool,
        f: impl FnOnce(&mut Txn<'_>) -> Result<T>,
    ) -> Result<T> {
        let held = Held {
            db: self,
            conn: Some(self.checkout()?),
        };
        let conn = held.conn.as_ref().expect("held until checked in");
        let mut txn = Txn {
            db: self,
            conn,
            begin: Some(begin.to_string()),
        };
        let result = f(&mut txn);
        let began = txn.begin.is_none();
        let result = result.and_then(|out| {
            match (began, read_only) {
                (false, _) => {}
                (true, true) => {
                    if !self.send_only(conn, "COMMIT") {
                        return Err(StoreError::Unavailable(
                            "the connection did not take COMMIT".into(),
                        ));
                    }
                }
                (true, false) => self.execute(conn, "COMMIT")?,
            }
            Ok(out)
        });
        let healthy = match &result {
            Ok(_) => true,
            Err(StoreError::Unavailable(_)) => false,
            Err(_) if !began => true,
            Err(_) => self.execute(conn, "ROLLBACK").is_ok(),
        };
        held.check_in(healthy);
        result
    }

    /// Sends `sql` on the connection without waiting for its answer (only until it is sent:
    /// whatever the connection's next user sends comes after it).
    fn send_only(&self, conn: &Conn, sql: &'static str) -> bool {
        let client = conn.client.clone();
        let (sent, wait) = std::sync::mpsc::sync_channel(1);
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        runtime.spawn(async move {
            let mut work = Box::pin(async move { client.batch_execute(sql).await });
            // The first poll writes the message to the connection's queue.
            let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
            let _ = sent.send(());
            if first.is_pending() {
                let _ = work.await;
            }
        });
        wait.recv_timeout(ANSWER_WITHIN).is_ok()
    }

    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
        let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
        self.transaction(begin, true, |txn| f(txn))
    }

    /// Runs `f` in a write transaction, committed when `f` answers `Ok`. The advisory lock
    /// makes write transactions serial across every node (it is released at COMMIT or
    /// ROLLBACK); READ COMMITTED then lets each statement see every earlier commit.
    pub fn write<T>(&self, f: impl FnOnce(&mut dyn Write) -> Result<T>) -> Result<T> {
        let begin = format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})");
        self.transaction(&begin, false, |txn| f(txn))
    }

    /// Brings the schema to this build's newest migration, one migration per transaction,
    /// under a lock (nodes starting together migrate once). A database migrated by a newer
    /// build is refused.
    fn migrate(&self) -> Result<()> {
        let client = self.open_client()?;
        let newest = MIGRATIONS.last().map_or(0, |(v, _, _)| *v);
        let c = client.clone();
        let found: i32 = self.run(async move {
            c.batch_execute(&format!(
                "SELECT pg_advisory_lock({MIGRATE_LOCK}); \
                 CREATE TABLE IF NOT EXISTS sx_migrations (\
                   version integer PRIMARY KEY, name text NOT NULL, \
                   applied_at timestamptz NOT NULL DEFAULT now())"
            ))
            .await?;
            let row = c
                .query_one("SELECT coalesce(max(version), 0) FROM sx_migrations", &[])
                .await?;
            Ok(row.get(0))
        })?;
        let result = if found > newest {
            Err(StoreError::Schema {
                found: found.to_string(),
                expected: newest as u32,
            })
        } else {
            let pending: Vec<_> = MIGRATIONS.iter().filter(|(v, _, _)| *v > found).collect();
            pending.into_iter().try_for_each(|(version, name, sql)| {
                let c = client.clone();
                let script = format!(
                    "BEGIN; {sql}; INSERT INTO sx_migrations (version, name) \
                     VALUES ({version}, '{name}'); COMMIT"
                );
                tracing::info!("applying database migration {version} ({name})");
                self.run(async move { c.batch_execute(&script).await })
            })
        };
        let c = client.clone();
        let _ = self.run(async move {
            c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATE_LOCK})"))
                .await
        });
        result
    }

    /// The newest migration applied.
    pub fn schema_version(&self) -> Result<i32> {
        let conn = self.checkout()?;
        let client = conn.client.clone();
        let result = self.run(async move {
            let row = client
                .query_one("SELECT coalesce(max(version), 0) FROM sx_migrations", &[])
                .await?;
            Ok(row.get(0))
        });
        self.checkin(conn, result.is_ok());
        result
    }
}

/// A connection taken from the pool, given back when dropped — as broken (it is closed, and
/// PostgreSQL rolls back what it had open) unless `check_in` said otherwise: a panic in a
/// transaction never leaks a pool slot.
struct Held<'p> {
    db: &'p Postgres,
    conn: Option<Conn>,
}

impl Held<'_> {
    fn check_in(mut self, healthy: bool) {
        if let Some(conn) = self.conn.take() {
            self.db.checkin(conn, healthy);
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.db.checkin(conn, false);
        }
    }
}

/// A transaction on one pooled connection.
struct Txn<'p> {
    db: &'p Postgres,
    conn: &'p Conn,
    /// The BEGIN not yet sent: it goes out with the first statement.
    begin: Option<String>,
}

impl Txn<'_> {
    /// Runs one statement (made by `statement` from the connection's client), preceded in
    /// the same round trip by the transaction's BEGIN when it is the first.
    fn run<T, F>(&mut self, statement: impl FnOnce(Arc<Client>) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = std::result::Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let client = self.conn.client.clone();
        let work = statement(client.clone());
        match self.begin.take() {
            None => self.db.run(work),
            // Polled in order (`biased`): BEGIN is queued on the connection first.
            Some(begin) => self.db.run(async move {
                let (began, answer) = tokio::join!(biased; client.batch_execute(&begin), work);
                began?;
                answer
            }),
        }
    }
}

fn text(bytes: Vec<u8>, table: Table) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|_| StoreError::Corrupt(format!("a {} record is not UTF-8", table.name())))
}

impl Read for Txn<'_> {
    fn get(&mut self, table: Table, key: &str) -> Result<Option<String>> {
        let (statement, key, name) = (self.conn.get.clone(), key.as_bytes().to_vec(), table.name());
        let found = self.run(|client| async move {
            let row = client.query_opt(&statement, &[&name, &key]).await?;
            Ok(row.map(|row| row.get::<_, Vec<u8>>(0)))
        })?;
        found.map(|bytes| text(bytes, table)).transpose()
    }

    fn scan(&mut self, table: Table, scan: Scan<'_>) -> Result<Vec<(String, String)>> {
        if scan.limit == 0 {
            return Ok(Vec::new());
        }
        let statement = if scan.reverse {
            self.conn.scan_reverse.clone()
        } else {
            self.conn.scan.clone()
        };
        let start = match scan.from {
            Some(from) if from > scan.prefix => from,
            _ => scan.prefix,
        }
        .as_bytes()
        .to_vec();
        let end = prefix_end(scan.prefix.as_bytes());
        let limit = i64::try_from(scan.limit).unwrap_or(i64::MAX);
        let name = table.name();
        let rows = self.run(|client| async move {
            let rows = client
                .query(&statement, &[&name, &start, &end, &limit])
                .await?;
            Ok(rows
                .into_iter()
                .map(|row| (row.get::<_, Vec<u8>>(0), row.get::<_, Vec<u8>>(1)))
                .collect::<Vec<_>>())
        })?;
        rows.into_iter()
            .map(|(key, value)| Ok((text(key, table)?, text(value, table)?)))
            .collect()
    }

    fn count(&mut self, table: Table) -> Result<u64> {
        let (statement, name) = (self.conn.count.clone(), table.name());
        let n: i64 = self.run(|client| async move {
            let row = client.query_one(&statement, &[&name]).await?;
            Ok(row.get(0))
        })?;
        Ok(n.max(0) as u64)
    }
}

impl Write for Txn<'_> {
    fn put(&mut self, table: Table, key: &str, value: &str) -> Result<()> {
        // The same limit as LMDB's, so that both backends keep the same keys.
        if !super::key_fits(key) {
            return Err(StoreError::Invalid(format!(
                "a {} key is 1 to 511 bytes",
                table.name()
            )));
        }
        let statement = self.conn.put.clone();
        let (key, value) = (key.as_bytes().to_vec(), value.as_bytes().to_vec());
        let name = table.name();
        self.run(|client| async move {
            let written = client.execute(&statement, &[&name, &key, &value]).await;
            written.map(drop)
        })
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<bool> {
        let (statement, key, name) = (
            self.conn.delete.clone(),
            key.as_bytes().to_vec(),
            table.name(),
        );
        self.run(|client| async move { Ok(client.execute(&statement, &[&name, &key]).await? > 0) })
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_password_never_shows() {
        assert_eq!(
            redact("postgres://sx:secret@db:5432/site"),
            "postgres://sx@db:5432/site"
        );
        assert_eq!(redact("postgres://sx@db/site"), "postgres://sx@db/site");
        assert_eq!(redact("postgres://db:5432/site"), "postgres://db:5432/site");
        assert_eq!(
            redact("postgres://sx:ab/cd@db/site"),
            "postgres://sx@db/site"
        );
        assert_eq!(
            redact("postgres://sx:a@b@db/site"),
            "postgres://sx@b@db/site"
        );
        assert_eq!(
            redact("postgres://db/site?user=sx&password=secret"),
            "postgres://db/site?user=sx&password=…"
        );
    }
}
