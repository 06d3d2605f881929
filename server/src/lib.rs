//! The native host for SX apps (DESIGN.md §3): configuration, the LMDB store, and the HTTP
//! server. Being built in steps (issue 4): SX handlers on the VM and the blog pages are next.

pub mod config;
pub mod handler;
pub mod http;
pub mod render;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::Config;

/// Opens (and seeds) the store, then serves on `listener` until `shutdown` resolves;
/// in-flight requests finish and the store is synced before this returns.
pub async fn serve_on(
    listener: TcpListener,
    config: Config,
    bundle: Arc<Vec<u8>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let store = store::Store::open(&config.persist_dir).map_err(|e| {
        format!(
            "cannot open the store in {}: {e}",
            config.persist_dir.display()
        )
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    if store
        .seed(now)
        .map_err(|e| format!("cannot seed the store: {e}"))?
    {
        tracing::info!("seeded a fresh store in {}", config.persist_dir.display());
    }
    let store = Arc::new(store);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (workers, routes) = handler::Workers::start(threads, bundle, store.clone())?;
    let state = Arc::new(http::AppState {
        config,
        store,
        workers,
    });
    let app = http::router(state.clone(), &routes);
    // Without TCP_NODELAY a response written in two parts (headers, then a file body) waits
    // for the client's delayed ACK: 40 ms per static file on keep-alive connections.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("server error: {e}"))?;
    state.store.sync().map_err(|e| e.to_string())?;
    Ok(())
}

/// `sx serve`: binds the configured address and serves the apps in `bundle` (compiled by
/// the build) until SIGTERM or Ctrl-C.
pub fn serve(config: Config, bundle: Vec<u8>) -> Result<(), String> {
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
        let address = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        tracing::info!("serving {} on http://{address}", config.domain);
        serve_on(listener, config, Arc::new(bundle), shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
