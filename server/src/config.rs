//! Configuration from the environment (the names of DESIGN.md §3), with defaults that make
//! `sx serve` work with none set. Only this module reads the environment.

use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Config {
    /// `SX_HTTP_HOST`, default 127.0.0.1.
    pub host: String,
    /// `SX_HTTP_PORT`, default 8000.
    pub port: u16,
    /// `SX_PERSIST_DIR`, default `./data`.
    pub persist_dir: PathBuf,
    /// `SX_DOMAIN` (blog | events), default blog.
    pub domain: String,
    /// `SX_STATIC_DIR`, default `./static`.
    pub static_dir: PathBuf,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 8000,
            persist_dir: PathBuf::from("data"),
            domain: "blog".into(),
            static_dir: PathBuf::from("static"),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            session_secret: None,
            session_ttl: 14 * 24 * 3600,
            https: false,
            admin_user: None,
            admin_password: None,
        }
    }
}

impl Config {
    /// Reads the environment; a malformed value is an error naming the variable.
    pub fn from_env() -> Result<Config, String> {
        let mut config = Config::default();
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
            if domain != "blog" && domain != "events" {
                return Err(format!("SX_DOMAIN must be blog or events, not {domain:?}"));
            }
            config.domain = domain;
        }
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
            config.https = match https.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                _ => return Err(format!("SX_HTTPS must be true or false, not {https:?}")),
            };
        }
        config.admin_user = var("SX_ADMIN_USER");
        config.admin_password = var("SX_ADMIN_PASSWORD");
        Ok(config)
    }
}
