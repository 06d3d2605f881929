//! The native host for SX apps: configuration, the LMDB store, the HTTP
//! server, and SX handlers on per-thread kernel images.

pub mod accounts;
pub mod apps;
pub mod auth;
pub mod client_bundle;
pub mod compression;
pub mod config;
pub mod connections;
pub mod dev;
pub mod effects;
pub mod exchange;
pub mod federation;
pub mod flows;
pub mod handler;
pub mod http;
pub mod pages;
pub mod peers;
pub mod render;
pub mod services;
pub mod static_files;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::Config;

/// Opens (and seeds) the store, then serves on `listener` until `shutdown` resolves;
/// in-flight requests finish and the store is synced before this returns.
///
/// Each of `config.workers` threads loads its own kernel image and runs its own axum server
/// on a clone of the listening socket, so a request is accepted, run and answered on one
/// thread (kernel values are not `Send`).
pub async fn serve_on(
    listener: TcpListener,
    config: Config,
    source: apps::Source,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    // A stale browser bundle is refused before anything else happens.
    let client_bundle = client_bundle::locate(&config.static_dir, &config.bundle_dirs)?;
    match &client_bundle {
        Some(bundle) => tracing::info!("browser bundle: {}", bundle.dir.display()),
        None => tracing::warn!(
            "no browser bundle in {}/{} nor beside the binary: pages work, without the boost engine",
            config.static_dir.display(),
            client_bundle::DIR
        ),
    }
    let client_script = client_bundle
        .as_ref()
        .map(client_bundle::Bundle::module_path);
    // An app that does not compile is refused before the store is touched.
    let (apps, probe) = apps::Apps::start(source, config.dev)?;
    let store = config.open_store()?;
    // A fresh store gets the apps' sample content (`defsite` :samples).
    let samples = match apps::site_field(&probe, "samples") {
        Some(sx_kernel::Value::List(samples)) => samples.iter().cloned().collect(),
        _ => Vec::new(),
    };
    drop(probe);
    if store
        .seed(effects::now_ms(), &samples)
        .map_err(|e| format!("cannot seed the store: {e}"))?
    {
        tracing::info!("seeded a fresh store: {}", config.store_location());
    }
    // Dev mode: recompile when the app folder changes. Production with an app folder:
    // recompile on SIGHUP (a failure keeps the version being served).
    let _watcher = match (config.dev, apps.folder().is_some()) {
        (true, true) => Some(apps::watch(apps.clone())?),
        (true, false) => return Err("--dev needs an app folder (--app DIR)".into()),
        (false, has_folder) => {
            if has_folder {
                reload_on_hangup(apps.clone())?;
            }
            None
        }
    };
    let auth = Arc::new(auth::start(&store, &config)?);
    let store = Arc::new(store);
    let base_url = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(|e| format!("the listening socket: {e}"))?
        ),
    };
    let services = Arc::new(services::Services::new(
        store.clone(),
        auth.clone(),
        client_script,
        config.dev,
        Arc::new(flows::Flows::new(&config)),
        Arc::new(federation::Federation::new(
            config.federation.clone(),
            &base_url,
        )),
    ));
    let state = Arc::new(http::AppState {
        base_url,
        apps,
        client_bundle,
        config: config.clone(),
        store: store.clone(),
        auth,
        request_ids: Arc::default(),
        flows: services.flows.clone(),
        federation: services.federation.clone(),
        open_connections: Arc::new(tokio::sync::Semaphore::new(config.limits.connections)),
        pages: pages::Pages::default(),
    });
    let (stop, stopping) = tokio::sync::watch::channel(false);
    federation::spawn_sender(services.clone(), stopping.clone());
    let runner = flows::spawn_runner(
        services.clone(),
        state.apps.clone(),
        state.base_url.clone(),
        stopping.clone(),
    )?;

    let listener = listener
        .into_std()
        .map_err(|e| format!("the listening socket: {e}"))?;
    let (ended, mut finished) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let mut running = 0;
    let mut failure = None;
    for i in 0..config.workers.max(1) {
        let worker = Worker {
            listener: listener
                .try_clone()
                .map_err(|e| format!("the listening socket: {e}"))?,
            services: services.clone(),
            state: state.clone(),
            stopping: stopping.clone(),
        };
        let (ready, started) = tokio::sync::oneshot::channel();
        let ended = ended.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sx-worker-{i}"))
            .stack_size(64 << 20)
            .spawn(move || {
                let _ = ended.send(worker.run(ready));
            });
        if let Err(e) = spawned {
            failure = Some(format!("cannot start a worker: {e}"));
            break;
        }
        running += 1;
        match started.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure = Some(e);
                break;
            }
            Err(_) => {
                failure = Some("a worker stopped while starting".into());
                break;
            }
        }
    }
    drop(ended);
    if failure.is_none() {
        tokio::select! {
            () = shutdown => {}
            // A worker whose server stops on its own ends the whole server.
            result = finished.recv() => {
                running -= 1;
                failure = Some(match result {
                    Some(Err(e)) => e,
                    _ => "a worker stopped".into(),
                });
            }
        }
    }
    let _ = stop.send(true);
    while running > 0 {
        match finished.recv().await {
            Some(Err(e)) => {
                failure.get_or_insert(e);
            }
            Some(Ok(())) => {}
            None => break,
        }
        running -= 1;
    }
    let _ = tokio::task::spawn_blocking(move || runner.join()).await;
    store.sync().map_err(|e| e.to_string())?;
    failure.map_or(Ok(()), Err)
}

/// Threads each worker's runtime may use for blocking work (store writes, argon2, which a
/// semaphore limits further); the store's reader table is sized from it.
pub const BLOCKING_THREADS: usize = 32;

struct Worker {
    listener: std::net::TcpListener,
    services: Arc<services::Services>,
    state: Arc<http::AppState>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Worker {
    /// The worker thread: a current-thread runtime whose `LocalSet` holds the kernel image.
    fn run(self, ready: tokio::sync::oneshot::Sender<Result<(), String>>) -> Result<(), String> {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // Store writes and argon2 run here; LMDB's reader table is sized for this many.
            .max_blocking_threads(BLOCKING_THREADS)
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot start a worker runtime: {e}")));
                return Ok(());
            }
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async move {
            let started = (|| {
                let app = self.state.apps.current()?;
                let image = handler::Image::load(&app)?;
                let listener = TcpListener::from_std(self.listener)
                    .map_err(|e| format!("the listening socket: {e}"))?;
                Ok::<_, String>((image, listener))
            })();
            let (image, listener) = match started {
                Ok(started) => started,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return Ok(());
                }
            };
            tokio::task::spawn_local(handler::install(image, self.services));
            let limits = self.state.config.limits.clone();
            let open = self.state.open_connections.clone();
            let app = http::router(self.state);
            let _ = ready.send(Ok(()));
            connections::serve(listener, app, limits, open, self.stopping).await;
            Ok(())
        })
    }
}

/// Recompiles the app folder on SIGHUP (production's way to take a new version of the app
/// without a restart).
fn reload_on_hangup(apps: Arc<apps::Apps>) -> Result<(), String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups =
            signal(SignalKind::hangup()).map_err(|e| format!("cannot handle signals: {e}"))?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let apps = apps.clone();
                let _ = tokio::task::spawn_blocking(move || apps.recompile()).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = apps;
    Ok(())
}

/// `sx serve`: binds the configured address and serves the apps from `source` until SIGTERM
/// or Ctrl-C.
pub fn serve(config: Config, source: apps::Source) -> Result<(), String> {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let address = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        match &config.app_dir {
            Some(dir) => tracing::info!(
                "serving the app in {}{} on http://{address}",
                dir.display(),
                if config.dev { " (dev mode)" } else { "" }
            ),
            None if config.kernel_mode => tracing::info!("serving flows on http://{address}"),
            None => tracing::info!("serving {} on http://{address}", config.domain),
        }
        serve_on(listener, config, source, shutdown).await
    })
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when
/// the future is first polled: a signal that arrives while the server is still starting must
/// not kill the process uncleanly.
pub(crate) fn shutdown_signal() -> Result<impl Future<Output = ()>, String> {
    #[cfg(unix)]
    let (mut terminate, mut interrupt) = {
        use tokio::signal::unix::{signal, SignalKind};
        let hook = |kind| signal(kind).map_err(|e| format!("cannot handle signals: {e}"));
        (
            hook(SignalKind::terminate())?,
            hook(SignalKind::interrupt())?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing in-flight requests");
    })
}
