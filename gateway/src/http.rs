//! HTTP/1.1 serving of both ports with hyper, with a time limit on reading each request head.
//!
//! axum 0.8's `axum::serve` gives hyper no timer, so hyper never applies its header read timeout
//! and a client that connects and sends nothing, or half a request head, keeps its connection (and,
//! on the socket port, a slot under --max-connections) forever. [`serve`] sets hyper's timer and
//! the timeout for every connection. HTTP/2 is not served: socket.io clients, Kubernetes probes
//! and Prometheus scrapers use HTTP/1.1 on these ports.

use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Serves `router` on connections from `listener` until `shutdown` is cancelled, then stops
/// accepting, lets each connection finish its current request and returns when all are closed.
///
/// A connection whose request head (request line and headers) is not complete within
/// `header_read_timeout` of the server starting to wait for it is closed. The wait starts at
/// accept and again after each response, so an idle keep-alive connection is closed after the
/// same time. Upgraded connections (websockets) are no longer HTTP and are not affected.
pub async fn serve<L: Listener>(
    mut listener: L,
    router: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);

    // Each connection task holds a sender; `recv` returns None once every task has ended.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    loop {
        let (io, _address) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let connection = builder
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(router.clone()))
            .with_upgrades();
        let shutdown = shutdown.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                // Header read timeouts, resets and malformed requests end up here; they are
                // the client's doing, so they are not logged above debug.
                tracing::debug!(error = %err, "HTTP connection ended with an error");
            }
            drop(open);
        });
    }

    drop(listener);
    drop(open_tx);
    open_rx.recv().await;
}
