//! `socketfleet-node`: the local cluster's node agent (see `socketfleet_e2e::node`).

use std::io::IsTerminal;

use clap::Parser;
use socketfleet_e2e::node::{self, Config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&config.log))
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    node::run(config).await
}
