//! A throwaway PostgreSQL server for tests. `TestPostgres::start()` runs `initdb` into a
//! temporary directory, starts the server on a free loopback port with durability off (fast,
//! and there is nothing to keep), and creates the database `sx` owned by the role `sx` (trust
//! authentication, no password). `stop` and `restart` make an outage; dropping it stops the
//! server and deletes the directory. Many may run at once, each with its own port and directory.
//!
//! Needs PostgreSQL's server binaries (Debian's `postgresql`), found with `pg_config --bindir`,
//! else in the newest `/usr/lib/postgresql/*/bin`. `initdb` refuses to run as root, so as root
//! the server runs as the `postgres` OS user, which then owns the directory.
//!
//! Included by path, by integration tests (`#[path = "support/postgres.rs"] mod postgres;`) and
//! by the server crate's unit tests, so it uses std and `tempfile` only and no `crate::` paths.
#![allow(dead_code)] // each test uses part of it

use std::path::PathBuf;
use std::process::Command;

pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl TestPostgres {
    pub fn start() -> TestPostgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("sx-pg-").tempdir().unwrap();
        let as_postgres = run(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0");
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut pg = TestPostgres {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        let (data, sockets) = (pg.path("data"), pg.dir.path().display().to_string());
        let initdb = [
            "-D",
            &data,
            "-A",
            "trust",
            "-U",
            "sx",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ];
        pg.tool("initdb", &initdb).unwrap_or_else(|e| panic!("{e}"));
        pg.configure(&format!(
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{sockets}'\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
        ));
        // The port was free a moment ago; another test may have taken it since: try others.
        for attempt in 1.. {
            pg.configure(&format!("port = {}\n", pg.port)); // the last setting wins
            match pg.try_start() {
                Ok(()) => break,
                Err(_) if attempt < 5 && pg.log_tail().contains("could not bind") => {
                    pg.port = free_port()
                }
                Err(e) => panic!("{e}"),
            }
        }
        let port = pg.port.to_string();
        let createdb = ["-h", "127.0.0.1", "-p", &port, "-U", "sx", "sx"];
        if let Err(e) = run(Command::new(pg.bin.join("createdb")).args(createdb)) {
            panic!("{e}\nserver log:\n{}", pg.log_tail());
        }
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://sx@127.0.0.1:{}/sx", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs SQL in the database with `psql`; its output.
    pub fn sql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "sx",
            "-v",
            "ON_ERROR_STOP=1",
        ];
        run(Command::new(self.bin.join("psql"))
            .args(args)
            .args(["-At", "-c", sql, "sx"]))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Stops the server (fast shutdown: open connections are cut); stopping twice is fine.
    pub fn stop(&self) {
        if self.dir.path().join("data/postmaster.pid").exists() {
            let _ = self.tool(
                "pg_ctl",
                &["-w", "-D", &self.path("data"), "-m", "fast", "stop"],
            );
        }
    }

    /// Starts it again on the same port and data directory (after `stop`).
    pub fn restart(&self) {
        self.try_start().unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_start(&self) -> Result<(), String> {
        let (data, log) = (self.path("data"), self.path("log"));
        match self.tool("pg_ctl", &["-w", "-D", &data, "-l", &log, "start"]) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("{e}\nserver log:\n{}", self.log_tail())),
        }
    }

    /// Runs a server binary, as `postgres` when we are root (`runuser`, else `su`).
    fn tool(&self, name: &str, args: &[&str]) -> Result<String, String> {
        let program = self.bin.join(name).display().to_string();
        let mut argv: Vec<String> = std::iter::once(&*program)
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        if self.as_postgres
            && ["/usr/sbin/runuser", "/sbin/runuser"]
                .iter()
                .any(|p| std::path::Path::new(p).exists())
        {
            argv.splice(0..0, ["runuser", "-u", "postgres", "--"].map(String::from));
        } else if self.as_postgres {
            let quoted: Vec<String> = argv
                .iter()
                .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
                .collect();
            argv = ["su", "postgres", "-s", "/bin/sh", "-c", &quoted.join(" ")]
                .map(String::from)
                .to_vec();
        }
        run(Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(self.dir.path()))
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn configure(&self, settings: &str) {
        let conf = self.dir.path().join("data/postgresql.conf");
        let text = std::fs::read_to_string(&conf).expect("postgresql.conf") + settings;
        std::fs::write(&conf, text).expect("writing postgresql.conf");
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.path("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop(); // the directory goes with `self.dir`
    }
}

/// Runs a command to its end: its stdout, or the command, how it ended and its output.
fn run(command: &mut Command) -> Result<String, String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match out.status.success() {
        true => Ok(text(&out.stdout)),
        false => Err(format!(
            "{command:?} failed ({}):\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        )),
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// `pg_config --bindir` when it has `initdb`, else the newest `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> PathBuf {
    let configured =
        run(Command::new("pg_config").arg("--bindir")).map(|dir| PathBuf::from(dir.trim()));
    let mut versions: Vec<(f64, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut candidates = configured
        .into_iter()
        .chain(versions.into_iter().map(|(_, bin)| bin));
    candidates.find(|bin| bin.join("initdb").exists()).unwrap_or_else(|| {
        panic!("PostgreSQL's initdb not found (neither by `pg_config --bindir` nor in /usr/lib/postgresql/*/bin): install Debian's `postgresql` package")
    })
}
