//! Accepting and serving connections (one loop per worker thread), with the limits a public
//! server needs: a cap on open connections shared by every worker, hyper's header-read
//! timeout, an idle keep-alive timeout, and graceful shutdown that lets in-flight requests
//! finish. axum's own `serve` gives hyper no timer, so a client that never finishes its
//! headers would hold a connection forever.
//!
//! Each request carries the peer's socket address as a [`ClientAddr`] extension. The body
//! timeout and the per-request deadline are applied by the router (`http.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower_service::Service;

use crate::config::Limits;

/// The socket address a request came from.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Requests in progress on one connection and when the last one ended: the idle timer.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| *self.last.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
}

/// Serves `app` on `listener` until `stopping` turns true, then lets every open connection
/// finish its current request. `open` is shared by every worker: at most `limits.connections`
/// connections are open at once (a further client waits in the kernel's accept queue).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    open: Arc<Semaphore>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .keep_alive(true);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Finished connections are reaped as we go, so the set stays small.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        // Without TCP_NODELAY a response written in two parts (headers, then a file body)
        // waits for the client's delayed ACK: 40 ms per static file on keep-alive connections.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        });
        let service = {
            let activity = activity.clone();
            let app = app.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ClientAddr(peer));
                activity.in_flight.fetch_add(1, Ordering::AcqRel);
                let activity = activity.clone();
                let mut app = app.clone();
                async move {
                    let response = app.call(request).await;
                    activity.touch();
                    activity.in_flight.fetch_sub(1, Ordering::AcqRel);
                    response
                }
            })
        };
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let mut stopping = stopping.clone();
        let keepalive = limits.keepalive;
        connections.spawn_local(async move {
            let _permit = permit;
            tokio::pin!(connection);
            let mut closing = false;
            loop {
                let idle_deadline = activity
                    .idle_since()
                    .map(|since| tokio::time::Instant::from_std(since + keepalive));
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!("connection from {peer}: {e}");
                        }
                        break;
                    }
                    _ = stopping.wait_for(|stop| *stop), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    // Re-checked every keep-alive period: a request may have started since.
                    _ = tokio::time::sleep_until(idle_deadline.unwrap_or_else(|| tokio::time::Instant::now() + keepalive)), if !closing => {
                        if activity.idle_since().is_some_and(|since| since.elapsed() >= keepalive) {
                            closing = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        });
    }
    while connections.join_next().await.is_some() {}
}
