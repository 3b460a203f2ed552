//! `socketfleet-gateway`: parses flags, sets up logging and runs the gateway.

use std::io::IsTerminal;

use anyhow::Context;
use socketfleet_gateway::config::{Config, ConfigError, LogFormat, unknown_env_names};
use socketfleet_gateway::server::{self, Listeners};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match Config::load() {
        Ok(config) => config,
        Err(ConfigError::Parse(err)) => err.exit(),
        Err(err) => anyhow::bail!(err),
    };

    let filter = EnvFilter::try_new(&config.log_level).context("invalid --log-level")?;
    match config.log_format {
        // Colour codes only help a person at a terminal; in a pod's log file they are noise.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::stdout().is_terminal())
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
    }

    for name in unknown_env_names(std::env::vars_os().map(|(name, _)| name)) {
        tracing::warn!(
            variable = name,
            "ignoring unknown environment variable; see --help for the SOCKETFLEET_* names"
        );
    }

    let listeners = Listeners::bind(&config).await?;
    server::run(config, listeners, shutdown_signal()).await?;
    Ok(())
}

/// Completes on SIGTERM (what Kubernetes sends) or ctrl-c.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("failed to install the SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received ctrl-c"),
    }
}
