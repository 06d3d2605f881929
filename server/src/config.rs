//! Configuration from the environment (the `SX_*` variables), with defaults that make
//! `sx serve` work with none set. Only this module reads the environment.

use std::path::PathBuf;
use std::time::Duration;

/// Every variable `sx serve` reads: (name, default, meaning). `sx serve --help` prints this
/// table and a test checks the README lists the same names.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("SX_HTTP_HOST", "127.0.0.1", "address to listen on"),
    ("SX_HTTP_PORT", "8000", "port to listen on"),
    ("SX_PERSIST_DIR", "./data", "the LMDB store (when SX_DATABASE_URL is unset)"),
    (
        "SX_DATABASE_URL",
        "-",
        "postgres://USER[:PASS]@HOST:PORT/DB: keep the store in PostgreSQL, shared by every \
         node with the same URL (instead of LMDB in SX_PERSIST_DIR)",
    ),
    (
        "SX_DATABASE_POOL",
        "2 per CPU, at least 4",
        "PostgreSQL connections this process keeps at most (more requests wait their turn)",
    ),
    (
        "SX_LEASE_MS",
        "30000",
        "how long a node's claim on a timer, flow step or delivery holds when it stops \
         renewing it (a node that died): then another node takes the work over. Keep it \
         above the longest flow step and delivery attempt (10 s)",
    ),
    (
        "SX_STORE_MAX_MB",
        "1024",
        "the store's size limit in MB (a full store answers writes with 507)",
    ),
    (
        "SX_STATIC_DIR",
        "./static",
        "files served under /static/, over the embedded stylesheet and icon and the client \
         bundle beside the binary (a file here wins; the directory may be missing)",
    ),
    (
        "SX_DOMAIN",
        "blog",
        "which embedded app to serve (without SX_APP_DIR)",
    ),
    (
        "SX_APP_DIR",
        "-",
        "serve the app in this folder instead of an embedded one (--app)",
    ),
    (
        "SX_WORKERS",
        "one per CPU",
        "threads serving requests, each with its own kernel image",
    ),
    (
        "SX_PUBLIC_URL",
        "http://HOST:PORT",
        "the canonical base URL used for absolute links (feeds) and the Origin check",
    ),
    (
        "SX_TRUST_PROXY",
        "0",
        "1: the client address is the first X-Forwarded-For hop (behind a proxy)",
    ),
    (
        "SX_PAGE_CACHE",
        "1",
        "0: never serve a kept answer of a {:cache true} route (every page is made afresh)",
    ),
    (
        "SX_HEADER_TIMEOUT_S",
        "10",
        "seconds a client has to send a request's headers",
    ),
    (
        "SX_BODY_TIMEOUT_S",
        "10",
        "seconds a client has to send a request's body",
    ),
    (
        "SX_KEEPALIVE_TIMEOUT_S",
        "5",
        "seconds an idle keep-alive connection stays open",
    ),
    (
        "SX_REQUEST_TIMEOUT_S",
        "30",
        "seconds a request may take before it is answered 503",
    ),
    (
        "SX_MAX_CONNECTIONS",
        "1024",
        "open connections at most; further clients wait to be accepted",
    ),
    (
        "SX_ADMIN_USER",
        "-",
        "the admin account, created or updated at start (with SX_ADMIN_PASSWORD)",
    ),
    (
        "SX_ADMIN_PASSWORD",
        "-",
        "the admin's password (only an argon2 hash is stored)",
    ),
    (
        "SX_SESSION_SECRET",
        "generated, kept in the store",
        "key that signs session cookies",
    ),
    (
        "SX_SESSION_TTL",
        "1209600",
        "seconds a login lasts (14 days)",
    ),
    (
        "SX_HTTPS",
        "false",
        "cookies get Secure (set when served over https)",
    ),
    (
        "SX_ACTOR",
        "http://HOST:PORT",
        "this instance's base URL in federated activities",
    ),
    (
        "SX_FOLLOW",
        "-",
        "comma-separated base URLs this instance follows (at start and on every tick)",
    ),
    (
        "SX_FED_SECRET",
        "-",
        "the shared secret that signs activities; without it /inbox answers 403 and nothing is sent",
    ),
    (
        "SX_FED_INSECURE",
        "0",
        "1: federate without a secret (unsigned; for trying things on one machine only)",
    ),
    (
        "SX_FED_TICK_MS",
        "15000",
        "how often follows are renewed and due deliveries sent",
    ),
    (
        "SX_FED_RETRY_MS",
        "30000",
        "first wait before a failed delivery is retried (doubling with jitter, at most 6 h)",
    ),
    (
        "SX_FED_GIVE_UP_S",
        "172800",
        "seconds after which an undelivered activity is failed and its peer marked unavailable",
    ),
    (
        "SX_EVENTS_URL",
        "-",
        "the events peer a blog allocates posts to (POST /:slug/allocate)",
    ),
    (
        "SX_KERNEL_URL",
        "-",
        "run flows on this `sx kernel` (its base URL) instead of in-process",
    ),
    (
        "SX_KERNEL_TOKEN",
        "-",
        "the shared Bearer token between `sx serve` and `sx kernel` (both need it)",
    ),
];

/// The variables as `sx serve --help` shows them.
pub fn variables_help() -> String {
    let mut out = String::from("Environment (flags override them):\n");
    for (name, default, meaning) in VARIABLES {
        out.push_str(&format!("  {name:<24} {meaning} [default: {default}]\n"));
    }
    out
}

#[derive(Clone, Debug)]
pub struct Config {
    /// `SX_HTTP_HOST`, default 127.0.0.1.
    pub host: String,
    /// `SX_HTTP_PORT`, default 8000.
    pub port: u16,
    /// `SX_PERSIST_DIR`, default `./data`.
    pub persist_dir: PathBuf,
    /// `SX_DOMAIN`: which embedded app to serve, default blog (checked against the apps
    /// there are by `apps::select`).
    pub domain: String,
    /// `SX_APP_DIR` / `--app`: serve the app in this folder instead of an embedded one.
    pub app_dir: Option<PathBuf>,
    /// `--dev`: recompile the app folder on change and reload open pages.
    pub dev: bool,
    /// `SX_STATIC_DIR`, default `./static`: files here add to or override what the binary
    /// embeds (`static_files.rs`); the directory need not exist.
    pub static_dir: PathBuf,
    /// Where else the browser bundle may be, after `<static_dir>/client`: `from_env` gives
    /// the directories beside the binary (`client_bundle::beside_binary`); the default
    /// (tests) none.
    pub bundle_dirs: Vec<PathBuf>,
    /// `SX_WORKERS`: threads that serve requests, each with its own kernel image; default one
    /// per CPU.
    pub workers: usize,
    /// `SX_SESSION_SECRET`: the key that signs session cookies; generated and kept in the
    /// store on first start when unset.
    pub session_secret: Option<String>,
    /// `SX_SESSION_TTL`: how long a login lasts, in seconds (default 14 days).
    pub session_ttl: u64,
    /// `SX_HTTPS` (true/false): the site is served over https, so cookies are `Secure`.
    pub https: bool,
    /// `SX_ADMIN_USER` / `SX_ADMIN_PASSWORD`: the admin account, created or updated at start
    /// (only an argon2 hash of the password is stored).
    pub admin_user: Option<String>,
    pub admin_password: Option<String>,
    /// `SX_PUBLIC_URL`: the canonical base (`https://blog.example`), without a trailing `/`;
    /// `None` means `http://HOST:PORT` of the listener (never the request's `Host`).
    pub public_url: Option<String>,
    /// `SX_TRUST_PROXY`: the client address is the first `X-Forwarded-For` hop.
    pub trust_proxy: bool,
    /// `SX_PAGE_CACHE`: answers of `{:cache true}` routes are kept (`pages.rs`).
    pub page_cache: bool,
    /// `SX_STORE_MAX_MB`: the LMDB map size.
    pub store_max_mb: usize,
    /// `SX_DATABASE_URL`: the store is in PostgreSQL (shared by nodes), not in `persist_dir`.
    pub database_url: Option<String>,
    /// `SX_DATABASE_POOL`: PostgreSQL connections kept at most.
    pub database_pool: usize,
    /// `SX_LEASE_MS`: how long a claim on work holds unrenewed.
    pub lease_ms: i64,
    pub limits: Limits,
    /// `SX_KERNEL_URL`: flows run on this `sx kernel` (base URL, no trailing `/`).
    pub kernel_url: Option<String>,
    /// `SX_KERNEL_TOKEN`: the Bearer token `sx serve` and `sx kernel` share.
    pub kernel_token: Option<String>,
    /// `sx kernel`: serve only the flow runner and its API.
    pub kernel_mode: bool,
    pub federation: Federation,
}

/// Federation (`SX_ACTOR`, `SX_FOLLOW`, `SX_FED_*`, `SX_EVENTS_URL`).
#[derive(Clone, Debug)]
pub struct Federation {
    /// This instance's base URL; `None`: the site's base URL.
    pub actor: Option<String>,
    pub follow: Vec<String>,
    pub secret: Option<String>,
    /// Federate without a secret (unsigned).
    pub insecure: bool,
    pub tick: Duration,
    pub retry: Duration,
    pub give_up: Duration,
    pub events_url: Option<String>,
}

impl Default for Federation {
    fn default() -> Self {
        Federation {
            actor: None,
            follow: Vec::new(),
            secret: None,
            insecure: false,
            tick: Duration::from_millis(15_000),
            retry: Duration::from_millis(30_000),
            give_up: Duration::from_secs(172_800),
            events_url: None,
        }
    }
}

impl Federation {
    /// Activities are sent and received only with a secret, or when explicitly insecure.
    pub fn enabled(&self) -> bool {
        self.secret.is_some() || self.insecure
    }
}

/// How long clients may take, and how many may be connected at once.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `SX_HEADER_TIMEOUT_S`: to send a request's headers (also the longest a keep-alive
    /// connection waits for its next request).
    pub header: Duration,
    /// `SX_BODY_TIMEOUT_S`: to send a request's body.
    pub body: Duration,
    /// `SX_KEEPALIVE_TIMEOUT_S`: an idle keep-alive connection is closed after this.
    pub keepalive: Duration,
    /// `SX_REQUEST_TIMEOUT_S`: a request not answered by then gets 503.
    pub request: Duration,
    /// `SX_MAX_CONNECTIONS`: open connections at most (over all workers).
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header: Duration::from_secs(10),
            body: Duration::from_secs(10),
            keepalive: Duration::from_secs(5),
            request: Duration::from_secs(30),
            connections: 1024,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 8000,
            persist_dir: PathBuf::from("data"),
            domain: "blog".into(),
            app_dir: None,
            dev: false,
            static_dir: PathBuf::from("static"),
            bundle_dirs: Vec::new(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            session_secret: None,
            session_ttl: 14 * 24 * 3600,
            https: false,
            admin_user: None,
            admin_password: None,
            public_url: None,
            trust_proxy: false,
            page_cache: true,
            store_max_mb: 1024,
            database_url: None,
            // More connections than the CPUs can serve only lengthen the slowest answers
            // (BENCHMARKS.md, "Several nodes").
            database_pool: std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).max(4)),
            lease_ms: 30_000,
            limits: Limits::default(),
            kernel_url: None,
            kernel_token: None,
            kernel_mode: false,
            federation: Federation::default(),
        }
    }
}

impl Config {
    /// Where the store is: PostgreSQL when `SX_DATABASE_URL` is set, else LMDB in
    /// `persist_dir`.
    pub fn store_location(&self) -> crate::store::Location {
        match &self.database_url {
            Some(url) => crate::store::Location::Postgres(url.clone()),
            None => crate::store::Location::Dir(self.persist_dir.clone()),
        }
    }

    /// Opens the store where the configuration says, as one node of those sharing it.
    pub fn open_store(&self) -> Result<crate::store::Store, String> {
        let options = crate::store::Options {
            max_bytes: self.store_max_mb.saturating_mul(1 << 20),
            // Each worker thread and each of its blocking threads may read at once.
            max_readers: u32::try_from(self.workers.max(1) * (crate::BLOCKING_THREADS + 1) + 64)
                .unwrap_or(u32::MAX),
        };
        let location = self.store_location();
        let store = crate::store::Store::open_at(&location, options, self.database_pool)
            .map_err(|e| format!("cannot open {location}: {e}"))?;
        Ok(store.with_lease(self.lease_ms))
    }

    /// The database settings: `SX_DATABASE_URL`, `SX_DATABASE_POOL`, `SX_LEASE_MS`.
    fn database(&mut self, var: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        if let Some(url) = var("SX_DATABASE_URL") {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(format!(
                    "SX_DATABASE_URL must look like postgres://USER:PASS@HOST:5432/DB, not {:?}",
                    crate::store::redact(&url)
                ));
            }
            self.database_url = Some(url);
        }
        if let Some(pool) = var("SX_DATABASE_POOL") {
            self.database_pool = pool
                .parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| format!("SX_DATABASE_POOL must be 1 to 1000, not {pool:?}"))?;
        }
        if let Some(lease) = var("SX_LEASE_MS") {
            self.lease_ms = lease
                .parse()
                .ok()
                .filter(|n| (1000..=86_400_000).contains(n))
                .ok_or_else(|| {
                    format!("SX_LEASE_MS must be 1000 to 86400000 milliseconds, not {lease:?}")
                })?;
        }
        Ok(())
    }

    /// Reads the environment; a malformed value is an error naming the variable.
    pub fn from_env() -> Result<Config, String> {
        let mut config = Config {
            bundle_dirs: crate::client_bundle::beside_binary(),
            ..Config::default()
        };
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(host) = var("SX_HTTP_HOST") {
            config.host = host;
        }
        if let Some(port) = var("SX_HTTP_PORT") {
            config.port = port
                .parse()
                .map_err(|_| format!("SX_HTTP_PORT must be a port number, not {port:?}"))?;
        }
        if let Some(dir) = var("SX_PERSIST_DIR") {
            config.persist_dir = PathBuf::from(dir);
        }
        if let Some(domain) = var("SX_DOMAIN") {
            config.domain = domain;
        }
        config.app_dir = var("SX_APP_DIR").map(PathBuf::from);
        if let Some(dir) = var("SX_STATIC_DIR") {
            config.static_dir = PathBuf::from(dir);
        }
        if let Some(workers) = var("SX_WORKERS") {
            config.workers = workers
                .parse()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| {
                    format!("SX_WORKERS must be a number from 1 to 1024, not {workers:?}")
                })?;
        }
        config.session_secret = var("SX_SESSION_SECRET");
        if let Some(ttl) = var("SX_SESSION_TTL") {
            config.session_ttl = ttl.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("SX_SESSION_TTL must be a number of seconds, not {ttl:?}")
            })?;
        }
        if let Some(https) = var("SX_HTTPS") {
            config.https = flag("SX_HTTPS", &https)?;
        }
        if let Some(trust) = var("SX_TRUST_PROXY") {
            config.trust_proxy = flag("SX_TRUST_PROXY", &trust)?;
        }
        if let Some(keep) = var("SX_PAGE_CACHE") {
            config.page_cache = flag("SX_PAGE_CACHE", &keep)?;
        }
        config.admin_user = var("SX_ADMIN_USER");
        config.admin_password = var("SX_ADMIN_PASSWORD");
        if let Some(url) = var("SX_PUBLIC_URL") {
            config.public_url = Some(public_url(&url)?);
        }
        if let Some(mb) = var("SX_STORE_MAX_MB") {
            config.store_max_mb = mb
                .parse()
                .ok()
                .filter(|n| (1..=1 << 24).contains(n))
                .ok_or_else(|| {
                    format!("SX_STORE_MAX_MB must be a number of megabytes, not {mb:?}")
                })?;
        }
        config.database(&var)?;
        if let Some(url) = var("SX_KERNEL_URL") {
            config.kernel_url = Some(public_url(&url).map_err(|_| {
                format!("SX_KERNEL_URL must be a URL like http://127.0.0.1:9000, not {url:?}")
            })?);
        }
        config.kernel_token = var("SX_KERNEL_TOKEN");
        if config.kernel_url.is_some() && config.kernel_token.is_none() {
            return Err(
                "SX_KERNEL_URL needs SX_KERNEL_TOKEN (the token the kernel was started with)"
                    .into(),
            );
        }
        let fed = &mut config.federation;
        if let Some(actor) = var("SX_ACTOR") {
            fed.actor = Some(base("SX_ACTOR", &actor)?);
        }
        if let Some(follow) = var("SX_FOLLOW") {
            fed.follow = follow
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(|f| base("SX_FOLLOW", f))
                .collect::<Result<_, _>>()?;
        }
        fed.secret = var("SX_FED_SECRET");
        if let Some(insecure) = var("SX_FED_INSECURE") {
            fed.insecure = flag("SX_FED_INSECURE", &insecure)?;
        }
        for (name, slot, unit) in [
            ("SX_FED_TICK_MS", &mut fed.tick, 1u64),
            ("SX_FED_RETRY_MS", &mut fed.retry, 1),
            ("SX_FED_GIVE_UP_S", &mut fed.give_up, 1000),
        ] {
            if let Some(text) = var(name) {
                let n: u64 = text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("{name} must be a positive whole number, not {text:?}")
                })?;
                *slot = Duration::from_millis(n.saturating_mul(unit));
            }
        }
        if let Some(url) = var("SX_EVENTS_URL") {
            fed.events_url = Some(base("SX_EVENTS_URL", &url)?);
        }
        let limits = &mut config.limits;
        for (name, slot) in [
            ("SX_HEADER_TIMEOUT_S", &mut limits.header),
            ("SX_BODY_TIMEOUT_S", &mut limits.body),
            ("SX_KEEPALIVE_TIMEOUT_S", &mut limits.keepalive),
            ("SX_REQUEST_TIMEOUT_S", &mut limits.request),
        ] {
            if let Some(text) = var(name) {
                *slot = text
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && *s <= 86_400.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("{name} must be a number of seconds, not {text:?}"))?;
            }
        }
        if let Some(max) = var("SX_MAX_CONNECTIONS") {
            limits.connections = max
                .parse()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| {
                    format!("SX_MAX_CONNECTIONS must be a positive number, not {max:?}")
                })?;
        }
        Ok(config)
    }

    /// The site's canonical base URL, without a trailing `/`.
    pub fn base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{}:{}", self.host, self.port),
        }
    }
}

fn flag(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(format!("{name} must be true or false, not {value:?}")),
    }
}

/// A peer's base URL (`SX_ACTOR`, `SX_FOLLOW`, ...), checked like `SX_PUBLIC_URL`.
fn base(name: &str, url: &str) -> Result<String, String> {
    public_url(url)
        .map_err(|_| format!("{name} must be a base URL like http://127.0.0.1:8001, not {url:?}"))
}

/// `SX_PUBLIC_URL`: an http(s) origin, optionally with a path prefix; no query or fragment.
fn public_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("SX_PUBLIC_URL must start with http:// or https://, not {url:?}"))?;
    let host = rest.split('/').next().unwrap_or("");
    let fine = !host.is_empty()
        && !url.contains(['?', '#', '\\'])
        && url.bytes().all(|b| b.is_ascii_graphic());
    if !fine {
        return Err(format!(
            "SX_PUBLIC_URL must be a URL like https://blog.example, not {url:?}"
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_every_variable() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        for (name, _, _) in VARIABLES {
            assert!(readme.contains(&format!("`{name}`")), "README lacks {name}");
        }
    }

    #[test]
    fn a_public_url_must_be_an_http_url() {
        assert_eq!(
            public_url("https://blog.example/").unwrap(),
            "https://blog.example"
        );
        assert_eq!(
            public_url("http://127.0.0.1:8000").unwrap(),
            "http://127.0.0.1:8000"
        );
        for bad in [
            "blog.example",
            "ftp://x",
            "https://",
            "https://a b",
            "https://x/?q",
        ] {
            assert!(public_url(bad).is_err(), "{bad}");
        }
    }
}
