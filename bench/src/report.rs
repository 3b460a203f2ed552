//! Collects samples, takes medians and writes the Markdown report and the printed table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use serde::Serialize;

use crate::procs::ServerKind;
use crate::scenarios::{FleetSample, IdleSample, LatencySample, Settings, ShardingSample, ThroughputSample};

/// Every sample of one harness run, by scenario and server kind, plus the failures.
#[derive(Default, Serialize)]
pub struct Results {
    pub idle: BTreeMap<&'static str, Vec<IdleSample>>,
    pub fleet: Vec<FleetSample>,
    pub throughput: BTreeMap<&'static str, Vec<ThroughputSample>>,
    pub latency: BTreeMap<&'static str, Vec<LatencySample>>,
    pub sharding: BTreeMap<&'static str, Vec<ShardingSample>>,
    pub failures: Vec<String>,
}

/// Machine and software facts printed in the report.
#[derive(Serialize)]
pub struct Environment {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub open_files_limit: u64,
    pub gateway_commit: String,
    /// Files under gateway/ that differ from that commit when the run started.
    pub gateway_uncommitted: String,
    pub hyper: String,
    pub tokio: String,
    pub node: String,
    pub socket_io: String,
    pub redis_adapter: String,
    pub redis_client: String,
    pub redis_server: String,
    pub busy_processes: String,
}

impl Environment {
    pub fn read(node_dir: &std::path::Path, open_files_limit: u64) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let package_version = |package: &str| {
            let path = node_dir.join("node_modules").join(package).join("package.json");
            std::fs::read_to_string(path)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|json| json["version"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "not installed".to_owned())
        };
        Environment {
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            cpu: cpuinfo
                .lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_default(),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory: meminfo
                .lines()
                .next()
                .unwrap_or_default()
                .replace("MemTotal:", "")
                .trim()
                .to_owned(),
            kernel: command_output("uname", &["-r"]),
            open_files_limit,
            gateway_commit: command_output("git", &["log", "-1", "--format=%h %s", "--", "gateway"]),
            gateway_uncommitted: uncommitted_files("gateway"),
            hyper: lock_version("hyper"),
            tokio: lock_version("tokio"),
            node: command_output("node", &["--version"]),
            socket_io: package_version("socket.io"),
            redis_adapter: package_version("@socket.io/redis-adapter"),
            redis_client: package_version("redis"),
            redis_server: command_output("redis-server", &["--version"]),
            busy_processes: busy_processes(),
        }
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|error| format!("unknown ({program}: {error})"))
}

fn uncommitted_files(path: &str) -> String {
    let status = command_output("git", &["status", "--porcelain", "--", path]);
    let files: Vec<&str> = status.lines().map(|line| line.get(3..).unwrap_or(line)).collect();
    if files.is_empty() {
        "none".to_owned()
    } else {
        files.join(", ")
    }
}

fn lock_version(package: &str) -> String {
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let marker = format!("name = \"{package}\"\nversion = \"");
    lock.find(&marker)
        .and_then(|at| lock[at + marker.len()..].split('"').next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Compilers running when the harness started, since they take CPU from the servers.
fn busy_processes() -> String {
    let listing = command_output("ps", &["-eo", "comm"]);
    let busy: Vec<&str> = listing
        .lines()
        .filter(|name| ["rustc", "cc1", "cc1plus", "go", "compile", "link"].contains(&name.trim()))
        .collect();
    if busy.is_empty() {
        "none".to_owned()
    } else {
        busy.join(", ")
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

fn median_of<T>(samples: Option<&Vec<T>>, value: impl Fn(&T) -> f64) -> Option<f64> {
    samples.and_then(|samples| median(samples.iter().map(value).collect()))
}

fn kib(bytes: Option<f64>) -> String {
    bytes.map_or("–".to_owned(), |bytes| format!("{:.2} KiB", bytes / 1024.0))
}

fn count(value: Option<f64>) -> String {
    value.map_or("–".to_owned(), |value| format!("{value:.0}"))
}

fn millis(micros: Option<f64>) -> String {
    match micros {
        None => "–".to_owned(),
        // The load generator's histogram ends there; its last bucket collects everything slower.
        Some(micros) if micros >= crate::load::LATENCY_BUCKETS_MICROS as f64 => {
            format!("≥ {:.0} ms", crate::load::LATENCY_BUCKETS_MICROS as f64 / 1000.0)
        }
        Some(micros) => format!("{:.2} ms", micros / 1000.0),
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or("–".to_owned(), |share| format!("{:.1} %", share * 100.0))
}

/// Formats how many times better socketfleet is: `node / socketfleet` when lower is better, else
/// the inverse.
fn ratio(socketfleet: Option<f64>, node: Option<f64>, lower_is_better: bool) -> String {
    match (socketfleet, node) {
        (Some(ours), Some(theirs)) if ours > 0.0 && theirs > 0.0 => {
            let times = if lower_is_better { theirs / ours } else { ours / theirs };
            format!("{times:.1}×")
        }
        _ => "–".to_owned(),
    }
}

/// One row of the summary table.
pub struct Row {
    pub figure: String,
    pub socketfleet: String,
    pub node: String,
    pub ratio: String,
    pub target: String,
}

pub fn summary_rows(results: &Results, settings: &Settings) -> Vec<Row> {
    let ours = ServerKind::Gateway.label();
    let node = ServerKind::Node.label();
    let node_static = ServerKind::NodeStatic.label();
    let mut rows = Vec::new();

    let idle_ours = median_of(results.idle.get(ours), |sample| sample.per_connection_at_10k);
    let idle_node = median_of(results.idle.get(node), |sample| sample.per_connection_at_10k);
    rows.push(Row {
        figure: "RSS per idle socket, 10,000 sockets".to_owned(),
        socketfleet: kib(idle_ours),
        node: kib(idle_node),
        ratio: ratio(idle_ours, idle_node, true),
        target: "≤ 4 KiB, ≥ 3×".to_owned(),
    });
    let max_ours = median_of(results.idle.get(ours), |sample| sample.per_connection_at_max);
    let max_node = median_of(results.idle.get(node), |sample| sample.per_connection_at_max);
    rows.push(Row {
        figure: format!(
            "RSS per idle socket, {} sockets (per-process maximum)",
            settings.max_per_process
        ),
        socketfleet: kib(max_ours),
        node: kib(max_node),
        ratio: ratio(max_ours, max_node, true),
        target: "≤ 4 KiB, ≥ 3×".to_owned(),
    });

    if let Some(fleet) = results.fleet.first() {
        rows.push(Row {
            figure: format!(
                "{} idle sockets on {} gateway processes, held {} s",
                fleet.requested, fleet.processes, fleet.hold_secs
            ),
            socketfleet: format!(
                "{} connected, {} rejected, {} dropped",
                fleet.connected, fleet.failed, fleet.dropped
            ),
            node: "not run".to_owned(),
            ratio: "–".to_owned(),
            target: "none rejected or dropped".to_owned(),
        });
    }

    let rate_ours = median_of(results.throughput.get(ours), |sample| sample.deliveries_per_sec);
    let rate_node = median_of(results.throughput.get(node), |sample| sample.deliveries_per_sec);
    rows.push(Row {
        figure: format!(
            "Room broadcast deliveries/s, one process, {} receivers",
            settings.fan_out
        ),
        socketfleet: count(rate_ours),
        node: count(rate_node),
        ratio: ratio(rate_ours, rate_node, false),
        target: "1,000,000/s".to_owned(),
    });
    let cpu_ours = median_of(results.throughput.get(ours), |sample| sample.deliveries_per_cpu_sec);
    let cpu_node = median_of(results.throughput.get(node), |sample| sample.deliveries_per_cpu_sec);
    rows.push(Row {
        figure: "Room broadcast deliveries per server CPU-second".to_owned(),
        socketfleet: count(cpu_ours),
        node: count(cpu_node),
        ratio: ratio(cpu_ours, cpu_node, false),
        target: "≥ 10×".to_owned(),
    });

    for (label, quantile) in [("p50", 0), ("p99", 1)] {
        let pick = |sample: &LatencySample| {
            if quantile == 0 {
                sample.p50_micros as f64
            } else {
                sample.p99_micros as f64
            }
        };
        let lat_ours = median_of(results.latency.get(ours), pick);
        let lat_node = median_of(results.latency.get(node), pick);
        rows.push(Row {
            figure: format!("Cross-pod broadcast latency {label} at {} msg/s", settings.latency_rate),
            socketfleet: millis(lat_ours),
            node: millis(lat_node),
            ratio: ratio(lat_ours, lat_node, true),
            target: if quantile == 1 {
                "p99 ≤ 5 ms".to_owned()
            } else {
                String::new()
            },
        });
    }
    let lost_ours = median_of(results.latency.get(ours), |sample| sample.lost as f64);
    let lost_node = median_of(results.latency.get(node), |sample| sample.lost as f64);
    rows.push(Row {
        figure: "Cross-pod messages lost".to_owned(),
        socketfleet: count(lost_ours),
        node: count(lost_node),
        ratio: "–".to_owned(),
        target: "0".to_owned(),
    });

    let share_ours = median_of(results.sharding.get(ours), |sample| sample.max_share);
    let share_node = median_of(results.sharding.get(node), |sample| sample.max_share);
    let share_static = median_of(results.sharding.get(node_static), |sample| sample.max_share);
    rows.push(Row {
        figure: format!(
            "Largest share of pub/sub messages one of {} pods reads ({} rooms)",
            settings.sharding_pods, settings.sharding_rooms
        ),
        socketfleet: percent(share_ours),
        node: format!(
            "{} (per-namespace channel: {})",
            percent(share_node),
            percent(share_static)
        ),
        ratio: ratio(share_ours, share_node, true),
        target: format!("≤ {:.1} %", (1.0 / settings.sharding_pods as f64 + 0.05) * 100.0),
    });
    rows
}

/// Formats the summary rows as a Markdown table; the same text is printed and written to the report.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| Figure | socketfleet | Node socket.io | socketfleet vs Node | Target |\n|---|---|---|---|---|\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            row.figure, row.socketfleet, row.node, row.ratio, row.target
        );
    }
    out
}

pub fn markdown(results: &Results, settings: &Settings, environment: &Environment, runs: usize, extra: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks: socketfleet beside Node socket.io\n");
    let _ = writeln!(
        out,
        "Written by `make bench` (`socketfleet-bench run`) on {}. Each figure is the median of {runs} runs \
         unless its section says otherwise. Both servers run on this machine with the same load generator \
         (`socketfleet-bench hold` and `publish`: Rust, one thread per process, many sockets per task, \
         raw engine.io v4 / Socket.IO v5 over websocket, loopback only).\n",
        environment.date
    );
    out.push_str("## Summary\n\n");
    out.push_str(&table(&summary_rows(results, settings)));
    out.push('\n');

    if !results.failures.is_empty() {
        out.push_str("## Failures\n\n");
        for failure in &results.failures {
            let _ = writeln!(out, "- {failure}");
        }
        out.push('\n');
    }

    out.push_str("## Machine and versions\n\n");
    let _ = writeln!(
        out,
        "- CPU: {} ({} cores), memory {}, kernel {}",
        environment.cpu, environment.cores, environment.memory, environment.kernel
    );
    let _ = writeln!(
        out,
        "- Open files per process (hard limit, raised to by the harness): {}",
        environment.open_files_limit
    );
    let _ = writeln!(
        out,
        "- socketfleet gateway: last gateway commit `{}`, the gateway's own engine.io and Socket.IO engine on hyper {} and tokio {}, release build",
        environment.gateway_commit, environment.hyper, environment.tokio
    );
    let _ = writeln!(
        out,
        "- Gateway files changed since that commit when the run started: {}",
        environment.gateway_uncommitted
    );
    let _ = writeln!(
        out,
        "- Node {}: socket.io {}, @socket.io/redis-adapter {} (sharded adapter), redis client {}",
        environment.node, environment.socket_io, environment.redis_adapter, environment.redis_client
    );
    let _ = writeln!(
        out,
        "- {} (Redis Cluster: 3 masters, 3 replicas, from e2e/scripts/redis-cluster.sh)",
        environment.redis_server
    );
    let _ = writeln!(
        out,
        "- Compilers running when the run started: {}\n",
        environment.busy_processes
    );

    out.push_str("## Settings\n\n```json\n");
    out.push_str(&serde_json::to_string_pretty(settings).unwrap_or_default());
    out.push_str("\n```\n\n");
    out.push_str(
        "Both servers use socket.io's default heartbeat (ping every 25 s, 20 s timeout), websocket only. \
         Idle-memory, throughput and fleet servers run without Redis except where the section says so. \
         RSS is VmRSS from /proc; per-socket RSS is (RSS with N sockets − RSS before the first socket) / N.\n\n",
    );

    out.push_str(
        "## How to read the figures\n\n\
         - The servers and the load generator share the machine's cores, so the throughput and \
         latency figures include the load generator's own CPU use (given per run below).\n\
         - Deliveries per CPU-second divide the deliveries the receivers counted by the server \
         process's user + system CPU time over the run, read from /proc.\n\
         - The throughput run publishes as fast as acks return. The gateway acks a publish with an \
         error when a receiver's send queue (128 packets in socketioxide) is full, and that receiver \
         misses the message; Node socket.io queues without a bound. Rejected publishes are listed per run.\n\
         - Latency is measured from the publisher's send to the receiver's read, both on the same \
         monotonic clock. The histogram ends at 200 ms, so a figure of ≥ 200 ms means the server \
         fell behind the rate.\n\
         - The pub/sub share counts the messages each pod's adapter read from Redis \
         (`socketfleet_adapter_received_total` for the gateway, a counter around the adapter's \
         message handler in `bench/node/server.js`), divided by the publishes.\n\n",
    );
    out.push_str("## Every run\n\n```json\n");
    out.push_str(&serde_json::to_string_pretty(results).unwrap_or_default());
    out.push_str("\n```\n");
    out.push_str(extra);
    out
}
