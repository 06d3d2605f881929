//! `sx peers`: three federated instances on loopback, to try federation on one machine — a
//! blog on the base port, a second blog following it on the next, the events peer on the
//! one after — each its own `sx serve` process with its own store under the data folder.
//! They share a generated secret and an admin password (both kept in the folder, so a
//! restart keeps them). Ctrl-C or SIGTERM stops all three; so does one of them stopping.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// One instance the launcher starts.
struct Peer {
    name: &'static str,
    port: u16,
    env: Vec<(&'static str, String)>,
}

/// A value kept in `dir/name`, made by `make` the first time.
fn kept(dir: &Path, name: &str, make: impl FnOnce() -> String) -> Result<String, String> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        _ => {
            let value = make();
            std::fs::write(&path, &value)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(value)
        }
    }
}

fn the_peers(base_port: u16, secret: &str, password: &str) -> Result<Vec<Peer>, String> {
    let port = |n: u16| {
        base_port
            .checked_add(n)
            .ok_or_else(|| format!("--base-port {base_port} leaves no room for three ports"))
    };
    let (blog, second, events) = (port(0)?, port(1)?, port(2)?);
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let common = |domain: &str| {
        vec![
            ("SX_DOMAIN", domain.to_string()),
            ("SX_FED_SECRET", secret.to_string()),
            ("SX_ADMIN_USER", "admin".to_string()),
            ("SX_ADMIN_PASSWORD", password.to_string()),
            ("SX_FED_TICK_MS", "2000".to_string()),
            ("SX_FED_RETRY_MS", "2000".to_string()),
        ]
    };
    let mut first = common("blog");
    first.push(("SX_EVENTS_URL", url(events)));
    let mut following = common("blog");
    following.push(("SX_EVENTS_URL", url(events)));
    following.push(("SX_FOLLOW", url(blog)));
    Ok(vec![
        Peer {
            name: "blog",
            port: blog,
            env: first,
        },
        Peer {
            name: "blog-2",
            port: second,
            env: following,
        },
        Peer {
            name: "events",
            port: events,
            env: common("events"),
        },
    ])
}

fn answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

fn stop(children: &mut [(String, Child)]) {
    for (_, child) in children.iter_mut() {
        #[cfg(unix)]
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        #[cfg(not(unix))]
        let _ = child.kill();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, child) in children.iter_mut() {
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs the three peers with `exe` (this `sx` binary) until Ctrl-C or SIGTERM.
pub fn run(exe: &Path, base_port: u16, data: &Path) -> Result<(), String> {
    std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let secret = kept(data, "fed-secret", || crate::auth::random_hex(32))?;
    let password = kept(data, "admin-password", || crate::auth::random_hex(12))?;
    let peers = the_peers(base_port, &secret, &password)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    // Signals are caught before anything starts, so Ctrl-C during the start stops cleanly.
    let stopping = runtime.block_on(async { crate::shutdown_signal() })?;
    let mut children: Vec<(String, Child)> = Vec::new();
    for peer in &peers {
        let store: PathBuf = data.join(peer.name);
        let spawned = Command::new(exe)
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                &peer.port.to_string(),
                "--data",
            ])
            .arg(&store)
            // What the caller's environment says of its own instance does not apply here.
            .env_remove("SX_APP_DIR")
            .env_remove("SX_FOLLOW")
            .env_remove("SX_ACTOR")
            .env_remove("SX_PUBLIC_URL")
            .env_remove("SX_KERNEL_URL")
            // Each peer is its own site with its own store: never one shared database.
            .env_remove("SX_DATABASE_URL")
            .envs(peer.env.iter().map(|(k, v)| (*k, v.as_str())))
            .spawn();
        match spawned {
            Ok(child) => children.push((peer.name.to_string(), child)),
            Err(e) => {
                stop(&mut children);
                return Err(format!("cannot start {}: {e}", peer.name));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for peer in &peers {
        while !answers(peer.port) {
            let exited = children
                .iter_mut()
                .find_map(|(name, c)| match c.try_wait() {
                    Ok(Some(status)) => Some(format!("{name} stopped ({status})")),
                    _ => None,
                });
            if let Some(why) = exited.or_else(|| {
                (Instant::now() > deadline).then(|| format!("{} did not start", peer.name))
            }) {
                stop(&mut children);
                return Err(why);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!(
        "Three federated peers are running (their stores are in {}):",
        data.display()
    );
    for peer in &peers {
        let role = match peer.name {
            "blog" => "a blog",
            "blog-2" => "a second blog, following the first",
            _ => "the events peer (SX_EVENTS_URL of both blogs)",
        };
        println!(
            "  {:<7} http://127.0.0.1:{:<6} {role}",
            peer.name, peer.port
        );
    }
    println!("Log in to any of them as admin with the password {password}");
    println!("Ctrl-C stops all three.");
    // Until a signal, or one of them stops on its own.
    let ended = runtime.block_on(async {
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                () = &mut stopping => return None,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            for (name, child) in children.iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(format!("{name} stopped ({status})"));
                }
            }
        }
    });
    stop(&mut children);
    match ended {
        None => Ok(()),
        Some(why) => Err(why),
    }
}
