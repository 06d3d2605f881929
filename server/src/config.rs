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
                .ok_or_else(|| format!("SX_WORKERS must be a number from 1 to 1024, not {workers:?}"))?;
        }
        Ok(config)
    }
}
