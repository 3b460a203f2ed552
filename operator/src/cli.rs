//! Command-line flags of `socketfleet-operator`. Every flag also reads a
//! `SOCKETFLEET_OPERATOR_*` environment variable, which the Helm chart sets.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

/// Minimum accepted `--resync-seconds`.
pub const MIN_RESYNC_SECONDS: u64 = 5;

/// Gateway image used when a RealtimeNamespace names none: the release built with this operator.
pub const DEFAULT_GATEWAY_IMAGE: &str = concat!("ghcr.io/socketfleet/gateway:", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Parser)]
#[command(
    name = "socketfleet-operator",
    version,
    about = "Kubernetes operator for socketfleet Socket.IO fleets"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the RealtimeNamespace CustomResourceDefinition as YAML and exit.
    Crd {
        /// Print the Helm chart's template instead: wrapped in `crds.install` and kept on uninstall.
        #[arg(long)]
        chart: bool,
    },
}

/// Settings of the controller process.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Gateway image for RealtimeNamespaces that set no `spec.gateway.image`.
    #[arg(long, env = "SOCKETFLEET_OPERATOR_GATEWAY_IMAGE", default_value = DEFAULT_GATEWAY_IMAGE)]
    pub gateway_image: String,

    /// Address of the `/metrics`, `/livez` and `/readyz` server.
    #[arg(long, env = "SOCKETFLEET_OPERATOR_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,

    /// Namespace to watch. Unset: every namespace.
    #[arg(long, env = "SOCKETFLEET_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Seconds between two reconciles of an unchanged RealtimeNamespace, which refresh
    /// `status.connections` and the RedisReachable condition. At least 5 (the chart's minimum):
    /// 0 would requeue every object at once after each pass, a reconcile hot loop.
    #[arg(
        long,
        env = "SOCKETFLEET_OPERATOR_RESYNC_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(MIN_RESYNC_SECONDS..)
    )]
    pub resync_seconds: u64,

    /// Elect one active replica with a Lease. Turn off only when a single replica runs.
    #[arg(long, env = "SOCKETFLEET_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader election Lease.
    #[arg(
        long,
        env = "SOCKETFLEET_OPERATOR_LEASE_NAME",
        default_value = "socketfleet-operator"
    )]
    pub lease_name: String,

    /// Namespace of the leader election Lease. Unset: the operator pod's own namespace.
    #[arg(long, env = "SOCKETFLEET_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds a Lease stays valid after its last renewal. 15 is client-go's default.
    #[arg(long, env = "SOCKETFLEET_OPERATOR_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// Seconds between two renewals of the Lease, at least 1 and at most half the Lease duration.
    #[arg(
        long,
        env = "SOCKETFLEET_OPERATOR_LEASE_RENEW_SECONDS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub lease_renew_seconds: u64,

    /// Identity in the Lease. Unset: the pod name from POD_NAME, else the host name.
    #[arg(long, env = "SOCKETFLEET_OPERATOR_IDENTITY")]
    pub identity: Option<String>,

    /// Log filter in tracing's EnvFilter syntax, such as info or socketfleet_operator=debug.
    #[arg(long, env = "SOCKETFLEET_OPERATOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log output format.
    #[arg(long, env = "SOCKETFLEET_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("socketfleet-operator").chain(args.iter().copied()))
    }

    #[test]
    fn resync_below_minimum_is_rejected() {
        for value in ["0", "4"] {
            let err = parse(&["--resync-seconds", value]).expect_err("a resync below 5 s must be rejected");
            let message = err.to_string();
            assert!(message.contains("--resync-seconds"), "{message}");
            assert!(message.contains(value), "{message}");
        }
    }

    #[test]
    fn resync_at_minimum_is_accepted() {
        let cli = parse(&["--resync-seconds", "5"]).expect("5 s is the minimum");
        assert_eq!(cli.run.resync_seconds, 5);
        assert_eq!(parse(&[]).expect("defaults").run.resync_seconds, 30);
    }

    #[test]
    fn lease_renew_zero_is_rejected() {
        let err = parse(&["--lease-renew-seconds", "0"]).expect_err("a renew interval of 0 must be rejected");
        assert!(err.to_string().contains("--lease-renew-seconds"), "{err}");
    }
}
