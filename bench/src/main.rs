//! socketfleet's benchmark harness: runs the gateway and the Node socket.io reference on this
//! machine, drives both with the same load generator, and writes a report with the ratios.
//!
//! `run` is the harness. `hold` and `publish` are the load generator processes it starts. Each one
//! stays under the per-process open-files limit, so large socket counts use several of them.

mod limits;
mod load;
mod procs;
mod proto;
mod report;
mod scenarios;
mod wire;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::procs::{Programs, ServerKind};
use crate::scenarios::{Settings, SourceAddresses};

/// Counts heap bytes so the prototype server can report them; the load generator allocates little.
#[cfg(not(feature = "mimalloc"))]
#[global_allocator]
pub static INSTRUMENTED: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// stats_alloc cannot wrap mimalloc in a static on stable Rust, so this build counts no heap bytes.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The gateway's Prometheus counter of messages its adapter read from Redis pub/sub.
pub const ADAPTER_RECEIVED_METRIC: &str = "socketfleet_adapter_received_total";

#[derive(Parser)]
#[command(about = "socketfleet benchmarks beside the Node socket.io reference")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the scenarios against both servers and writes the report.
    Run(RunArgs),
    /// Keeps sockets open (idle or room members) and reports on stdin commands.
    Hold(load::HoldArgs),
    /// Publishes to rooms for a fixed time and prints the counts.
    Publish(load::PublishArgs),
    /// Runs a minimal socketioxide server for memory experiments.
    ProtoServer(proto::ProtoArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Idle,
    Fleet,
    Throughput,
    Latency,
    Sharding,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Runs of each scenario; the report gives medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Markdown report to write.
    #[arg(long, default_value = "bench/REPORT.md")]
    report: PathBuf,
    /// Appended to the report as it is, e.g. a heap profile summary.
    #[arg(long, default_value = "bench/heap-profile.md")]
    appendix: PathBuf,
    /// Gateway binary (default: $CARGO_TARGET_DIR/release/socketfleet-gateway).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// Sockets per server process for the per-process maximum figure (default: open-files limit − 100).
    #[arg(long)]
    max_per_process: Option<usize>,
    #[arg(long, default_value_t = 100_000)]
    fleet_connections: usize,
    #[arg(long, default_value_t = 6)]
    fleet_processes: usize,
    #[arg(long, default_value_t = 30)]
    fleet_hold_secs: u64,
    /// Members of the room in the throughput scenario.
    #[arg(long, default_value_t = 1000)]
    fan_out: usize,
    #[arg(long, default_value_t = 10.0)]
    throughput_secs: f64,
    /// Unacked publishes in flight in the throughput scenario.
    #[arg(long, default_value_t = 32)]
    throughput_window: usize,
    /// Publishes per second in the cross-pod latency scenario.
    #[arg(long, default_value_t = 10_000)]
    latency_rate: u64,
    #[arg(long, default_value_t = 10.0)]
    latency_secs: f64,
    #[arg(long, default_value_t = 8)]
    sharding_pods: usize,
    #[arg(long, default_value_t = 64)]
    sharding_rooms: usize,
    #[arg(long, default_value_t = 4)]
    sharding_members_per_room: usize,
    #[arg(long, default_value_t = 2000)]
    sharding_rate: u64,
    #[arg(long, default_value_t = 5.0)]
    sharding_secs: f64,
    /// Filler bytes in each published event.
    #[arg(long, default_value_t = 32)]
    payload_bytes: usize,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Hold(args) => load::run_hold(args),
        Command::Publish(args) => load::run_publish(args),
        Command::ProtoServer(args) => proto::run(args),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let open_files = limits::raise_open_files_limit()?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let programs = Programs {
        gateway: args
            .gateway
            .clone()
            .unwrap_or_else(|| target_dir.join("release/socketfleet-gateway")),
        node_server: PathBuf::from("bench/node/server.js"),
        bench: std::env::current_exe().context("finding the harness binary")?,
        redis_cluster_script: PathBuf::from("e2e/scripts/redis-cluster.sh"),
    };
    let settings = Settings {
        max_per_process: args.max_per_process.unwrap_or(open_files.min(1 << 20) as usize - 100),
        fleet_connections: args.fleet_connections,
        fleet_processes: args.fleet_processes,
        fleet_hold_secs: args.fleet_hold_secs,
        fan_out: args.fan_out,
        throughput_secs: args.throughput_secs,
        throughput_window: args.throughput_window,
        latency_rate: args.latency_rate,
        latency_secs: args.latency_secs,
        sharding_pods: args.sharding_pods,
        sharding_rooms: args.sharding_rooms,
        sharding_members_per_room: args.sharding_members_per_room,
        sharding_rate: args.sharding_rate,
        sharding_secs: args.sharding_secs,
        payload_bytes: args.payload_bytes,
    };
    let environment = report::Environment::read(std::path::Path::new("bench/node"), open_files);
    let wanted = |scenario: Scenario| args.only.is_empty() || args.only.contains(&scenario);
    let mut sources = SourceAddresses::new();
    let mut results = report::Results::default();
    let kinds = [ServerKind::Gateway, ServerKind::Node];

    for run_index in 0..args.runs {
        for kind in kinds {
            if wanted(Scenario::Idle) {
                eprintln!("bench: run {run_index}: idle memory, {}", kind.label());
                match scenarios::idle_memory(&programs, &mut sources, kind, &settings) {
                    Ok(sample) => results.idle.entry(kind.label()).or_default().push(sample),
                    Err(error) => results
                        .failures
                        .push(format!("idle memory, {}: {error:#}", kind.label())),
                }
            }
            if wanted(Scenario::Throughput) {
                eprintln!("bench: run {run_index}: broadcast throughput, {}", kind.label());
                match scenarios::broadcast_throughput(&programs, &mut sources, kind, &settings) {
                    Ok(sample) => results.throughput.entry(kind.label()).or_default().push(sample),
                    Err(error) => results
                        .failures
                        .push(format!("broadcast throughput, {}: {error:#}", kind.label())),
                }
            }
            if wanted(Scenario::Latency) {
                eprintln!("bench: run {run_index}: cross-pod latency, {}", kind.label());
                match scenarios::cross_pod_latency(&programs, &mut sources, kind, &settings) {
                    Ok(sample) => results.latency.entry(kind.label()).or_default().push(sample),
                    Err(error) => results
                        .failures
                        .push(format!("cross-pod latency, {}: {error:#}", kind.label())),
                }
            }
        }
    }

    // The sharding shares are counts, the same on every run, so one run of each design is enough.
    if wanted(Scenario::Sharding) {
        for kind in [ServerKind::Gateway, ServerKind::Node, ServerKind::NodeStatic] {
            eprintln!("bench: pub/sub sharding, {}", kind.label());
            match scenarios::pubsub_sharding(&programs, &mut sources, kind, &settings) {
                Ok(sample) => results.sharding.entry(kind.label()).or_default().push(sample),
                Err(error) => results
                    .failures
                    .push(format!("pub/sub sharding, {}: {error:#}", kind.label())),
            }
        }
    }
    // The fleet figure takes the longest and has no Node counterpart, so it runs once.
    if wanted(Scenario::Fleet) {
        eprintln!(
            "bench: {} idle sockets on {} gateway processes",
            settings.fleet_connections, settings.fleet_processes
        );
        match scenarios::idle_fleet(&programs, &mut sources, &settings) {
            Ok(sample) => results.fleet.push(sample),
            Err(error) => results.failures.push(format!("idle fleet: {error:#}")),
        }
    }

    let appendix = std::fs::read_to_string(&args.appendix)
        .map(|text| format!("\n{text}"))
        .unwrap_or_default();
    let markdown = report::markdown(&results, &settings, &environment, args.runs, &appendix);
    std::fs::write(&args.report, markdown).with_context(|| format!("writing {}", args.report.display()))?;
    println!("{}", report::table(&report::summary_rows(&results, &settings)));
    for failure in &results.failures {
        println!("failed: {failure}");
    }
    println!("report: {}", args.report.display());
    Ok(())
}
