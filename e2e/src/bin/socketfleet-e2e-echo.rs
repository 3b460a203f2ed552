//! `socketfleet-e2e-echo`: a tiny HTTP server that replaces a real image while testing the node
//! agent. `GET /` returns the pod name and address from the env, `GET /readyz` returns 200, and SIGTERM
//! makes it exit after `ECHO_STOP_DELAY_SECONDS` (default 0), which shows the grace period at work.

use std::time::Duration;

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::var("ECHO_PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(3000);
    let stop_delay: u64 = std::env::var("ECHO_STOP_DELAY_SECONDS")
        .ok()
        .and_then(|delay| delay.parse().ok())
        .unwrap_or(0);
    let identity = format!(
        "{} {}\n",
        std::env::var("POD_NAME").unwrap_or_default(),
        std::env::var("POD_IP").unwrap_or_default()
    );

    let app = Router::new()
        .route("/", get(move || async move { identity }))
        .route("/readyz", get(|| async { "ok\n" }));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let shutdown = async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        terminate.recv().await;
        eprintln!("received SIGTERM; exiting in {stop_delay} s");
        tokio::time::sleep(Duration::from_secs(stop_delay)).await;
    };
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
