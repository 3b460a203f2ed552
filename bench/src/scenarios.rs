//! The benchmark scenarios. Each one starts its own servers and load generator processes, measures,
//! and stops everything before it returns, so scenarios and runs do not share state.

use std::net::{IpAddr, Ipv4Addr};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::procs::{HoldProcess, HoldReport, Programs, RedisCluster, Server, ServerKind, run_publisher};

/// Time a hold process may take to connect all of its sockets.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(180);

/// Time given to a server after its sockets connected, before its RSS is read.
const SETTLE: Duration = Duration::from_secs(3);

/// Socket port of the first server; its stats or admin port is this plus `STATS_PORT_OFFSET`.
const FIRST_SERVER_PORT: u16 = 3300;
const STATS_PORT_OFFSET: u16 = 6000;
const REDIS_CLUSTER_PORT: u16 = 7400;

/// Settings shared by all scenarios.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Socket count one server process is asked to hold for the per-process maximum figure.
    pub max_per_process: usize,
    pub fleet_connections: usize,
    pub fleet_processes: usize,
    /// Time the fleet keeps its idle sockets open, longer than one ping interval (25 s).
    pub fleet_hold_secs: u64,
    pub fan_out: usize,
    pub throughput_secs: f64,
    pub throughput_window: usize,
    pub latency_rate: u64,
    pub latency_secs: f64,
    pub sharding_pods: usize,
    pub sharding_rooms: usize,
    pub sharding_members_per_room: usize,
    pub sharding_rate: u64,
    pub sharding_secs: f64,
    pub payload_bytes: usize,
}

/// Hands out loopback source addresses in turn so that no address runs out of ephemeral ports,
/// including ports still in TIME_WAIT from an earlier run.
pub struct SourceAddresses {
    next: u8,
}

impl SourceAddresses {
    pub fn new() -> Self {
        SourceAddresses { next: 10 }
    }

    pub fn take(&mut self) -> IpAddr {
        let address = IpAddr::V4(Ipv4Addr::new(127, 0, 0, self.next));
        self.next = if self.next >= 250 { 10 } else { self.next + 1 };
        address
    }
}

fn server_port(index: usize) -> u16 {
    FIRST_SERVER_PORT + index as u16
}

fn start_server(
    programs: &Programs,
    kind: ServerKind,
    index: usize,
    max_connections: usize,
    redis: Option<&RedisCluster>,
) -> anyhow::Result<Server> {
    let port = server_port(index);
    let url = redis.map(RedisCluster::url);
    Server::start(
        programs,
        kind,
        port,
        port + STATS_PORT_OFFSET,
        max_connections as u32,
        url.as_deref(),
    )
}

struct HoldPlan<'a> {
    targets: &'a [u16],
    connections: usize,
    room_prefix: Option<&'a str>,
    rooms: usize,
    latency: bool,
}

fn start_hold(
    programs: &Programs,
    sources: &mut SourceAddresses,
    plan: HoldPlan<'_>,
) -> anyhow::Result<(HoldProcess, HoldReport)> {
    let mut args = vec!["--source".to_owned(), sources.take().to_string()];
    for port in plan.targets {
        args.extend(["--target".to_owned(), format!("127.0.0.1:{port}")]);
    }
    args.extend(["--connections".to_owned(), plan.connections.to_string()]);
    if let Some(prefix) = plan.room_prefix {
        args.extend([
            "--room-prefix".to_owned(),
            prefix.to_owned(),
            "--rooms".to_owned(),
            plan.rooms.to_string(),
        ]);
    }
    if plan.latency {
        args.push("--latency".to_owned());
    }
    HoldProcess::start(programs, &args, CONNECT_TIMEOUT)
}

fn require_all_connected(report: &HoldReport, expected: usize, what: &str) -> anyhow::Result<()> {
    if report.connected != expected as u64 {
        bail!(
            "{what}: {} of {expected} sockets connected, {} failed; first error: {}",
            report.connected,
            report.failed,
            report.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Idle memory

#[derive(Clone, Debug, Serialize)]
pub struct IdleSample {
    pub baseline_rss: u64,
    pub rss_at_10k: u64,
    pub rss_at_max: u64,
    pub max_connections: usize,
    /// (RSS with 10,000 sockets − RSS before any socket) / 10,000.
    pub per_connection_at_10k: f64,
    pub per_connection_at_max: f64,
}

/// Connects 10,000 idle sockets, then more up to the per-process maximum, reading RSS at each step.
pub fn idle_memory(
    programs: &Programs,
    sources: &mut SourceAddresses,
    kind: ServerKind,
    settings: &Settings,
) -> anyhow::Result<IdleSample> {
    const FIRST_STEP: usize = 10_000;
    let max = settings.max_per_process;
    let mut server = start_server(programs, kind, 0, max + 100, None)?;
    sleep(Duration::from_secs(1));
    let baseline_rss = server.rss_bytes()?;

    let targets = [server.port];
    let plan = HoldPlan {
        targets: &targets,
        connections: FIRST_STEP,
        room_prefix: None,
        rooms: 1,
        latency: false,
    };
    let (mut first, report) = start_hold(programs, sources, plan)?;
    require_all_connected(&report, FIRST_STEP, "idle sockets, first step")?;
    sleep(SETTLE);
    server.check_running()?;
    let rss_at_10k = server.rss_bytes()?;

    let plan = HoldPlan {
        targets: &targets,
        connections: max - FIRST_STEP,
        room_prefix: None,
        rooms: 1,
        latency: false,
    };
    let (mut second, report) = start_hold(programs, sources, plan)?;
    require_all_connected(&report, max - FIRST_STEP, "idle sockets, second step")?;
    sleep(SETTLE);
    server.check_running()?;
    let rss_at_max = server.rss_bytes()?;

    for hold in [&mut first, &mut second] {
        let stats = hold.command("stats")?;
        if stats.closed > 0 {
            bail!("{} idle sockets were closed by the server", stats.closed);
        }
    }
    Ok(IdleSample {
        baseline_rss,
        rss_at_10k,
        rss_at_max,
        max_connections: max,
        per_connection_at_10k: rss_at_10k.saturating_sub(baseline_rss) as f64 / FIRST_STEP as f64,
        per_connection_at_max: rss_at_max.saturating_sub(baseline_rss) as f64 / max as f64,
    })
}

// ---------------------------------------------------------------------------------------------------
// Fleet of idle sockets

#[derive(Clone, Debug, Serialize)]
pub struct FleetSample {
    pub processes: usize,
    pub requested: usize,
    pub connected: u64,
    pub failed: u64,
    /// Sockets closed while the fleet held them.
    pub dropped: u64,
    /// Engine.io pings the clients replied to while connected, which shows that heartbeats ran.
    pub pings: u64,
    pub hold_secs: u64,
    pub total_rss: u64,
    pub with_redis: bool,
    pub first_error: Option<String>,
}

/// Holds `fleet_connections` idle sockets on `fleet_processes` gateway processes for a while.
pub fn idle_fleet(
    programs: &Programs,
    sources: &mut SourceAddresses,
    settings: &Settings,
) -> anyhow::Result<FleetSample> {
    let redis =
        RedisCluster::start(programs, REDIS_CLUSTER_PORT).context("starting the Redis Cluster for the fleet")?;
    let mut servers = Vec::new();
    for index in 0..settings.fleet_processes {
        servers.push(start_server(
            programs,
            ServerKind::Gateway,
            index,
            settings.max_per_process,
            Some(&redis),
        )?);
    }
    let targets: Vec<u16> = servers.iter().map(|server| server.port).collect();

    // Each load generator process stays below its own open-files limit.
    let per_process = 15_000;
    let mut holds = Vec::new();
    let mut remaining = settings.fleet_connections;
    let mut sample = FleetSample {
        processes: settings.fleet_processes,
        requested: settings.fleet_connections,
        connected: 0,
        failed: 0,
        dropped: 0,
        pings: 0,
        hold_secs: settings.fleet_hold_secs,
        total_rss: 0,
        with_redis: true,
        first_error: None,
    };
    while remaining > 0 {
        let connections = remaining.min(per_process);
        remaining -= connections;
        let plan = HoldPlan {
            targets: &targets,
            connections,
            room_prefix: None,
            rooms: 1,
            latency: false,
        };
        let (hold, report) = start_hold(programs, sources, plan)?;
        sample.connected += report.connected;
        sample.failed += report.failed;
        if sample.first_error.is_none() {
            sample.first_error = report.first_error.clone();
        }
        holds.push(hold);
    }

    sleep(Duration::from_secs(settings.fleet_hold_secs));
    for server in &mut servers {
        server.check_running()?;
        sample.total_rss += server.rss_bytes()?;
    }
    for hold in &mut holds {
        let stats = hold.command("stats")?;
        sample.dropped += stats.closed;
        sample.pings += stats.pings;
        if sample.first_error.is_none() {
            sample.first_error = stats.first_error;
        }
    }
    drop(holds);
    drop(servers);
    drop(redis);
    Ok(sample)
}

// ---------------------------------------------------------------------------------------------------
// Broadcast throughput

#[derive(Clone, Debug, Serialize)]
pub struct ThroughputSample {
    pub receivers: usize,
    pub published: u64,
    pub acked: u64,
    /// Publishes acked with an error, e.g. because receivers' send queues were full.
    pub rejected: u64,
    pub deliveries: u64,
    pub elapsed_secs: f64,
    pub server_cpu_secs: f64,
    pub load_generator_cpu_secs: f64,
    pub deliveries_per_sec: f64,
    pub deliveries_per_cpu_sec: f64,
}

/// Publishes to one room of `fan_out` receivers on one server process as fast as acks return.
pub fn broadcast_throughput(
    programs: &Programs,
    sources: &mut SourceAddresses,
    kind: ServerKind,
    settings: &Settings,
) -> anyhow::Result<ThroughputSample> {
    let mut server = start_server(programs, kind, 0, settings.max_per_process, None)?;
    let targets = [server.port];
    let plan = HoldPlan {
        targets: &targets,
        connections: settings.fan_out,
        room_prefix: Some("fan"),
        rooms: 1,
        latency: false,
    };
    let (mut receivers, report) = start_hold(programs, sources, plan)?;
    require_all_connected(&report, settings.fan_out, "broadcast receivers")?;
    sleep(Duration::from_secs(1));

    receivers.command("reset")?;
    let server_cpu_before = server.cpu_seconds()?;
    let receivers_cpu_before = crate::procs::process_cpu_seconds(receivers.pid())?;
    let args = publish_args(
        sources,
        server.port,
        "fan",
        1,
        0,
        settings.throughput_window,
        settings.throughput_secs,
        settings.payload_bytes,
    );
    // A server may reject publishes while its sockets' send queues are full: the gateway acks those
    // with an error. The figure counts deliveries, so rejected publishes only lower it.
    let published = run_publisher(programs, &args, Duration::from_secs_f64(settings.throughput_secs), true)?;
    sleep(Duration::from_secs(1));
    let server_cpu = server.cpu_seconds()? - server_cpu_before;
    let receivers_cpu = crate::procs::process_cpu_seconds(receivers.pid())? - receivers_cpu_before;
    server.check_running()?;

    let stats = receivers.command("stats")?;
    if stats.closed > 0 {
        bail!("{} receivers were closed during the broadcast run", stats.closed);
    }
    Ok(ThroughputSample {
        receivers: settings.fan_out,
        published: published.published,
        acked: published.acked,
        rejected: published.rejected,
        deliveries: stats.events,
        elapsed_secs: published.elapsed_secs,
        server_cpu_secs: server_cpu,
        load_generator_cpu_secs: receivers_cpu,
        deliveries_per_sec: stats.events as f64 / published.elapsed_secs,
        deliveries_per_cpu_sec: stats.events as f64 / server_cpu,
    })
}

#[allow(clippy::too_many_arguments)]
fn publish_args(
    sources: &mut SourceAddresses,
    port: u16,
    room_prefix: &str,
    rooms: usize,
    rate: u64,
    window: usize,
    secs: f64,
    payload_bytes: usize,
) -> Vec<String> {
    [
        "--target",
        &format!("127.0.0.1:{port}"),
        "--source",
        &sources.take().to_string(),
        "--room-prefix",
        room_prefix,
        "--rooms",
        &rooms.to_string(),
        "--rate",
        &rate.to_string(),
        "--window",
        &window.to_string(),
        "--duration-secs",
        &secs.to_string(),
        "--payload-bytes",
        &payload_bytes.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

// ---------------------------------------------------------------------------------------------------
// Cross-pod latency

#[derive(Clone, Debug, Serialize)]
pub struct LatencySample {
    pub rate: u64,
    pub published: u64,
    pub received: u64,
    pub lost: u64,
    pub p50_micros: u64,
    pub p99_micros: u64,
    pub max_micros: u64,
}

/// Publishes at a fixed rate on one server to a room whose only member is on another server, so
/// every message crosses the Redis Cluster. The receiver times each message.
pub fn cross_pod_latency(
    programs: &Programs,
    sources: &mut SourceAddresses,
    kind: ServerKind,
    settings: &Settings,
) -> anyhow::Result<LatencySample> {
    let redis = RedisCluster::start(programs, REDIS_CLUSTER_PORT).context("starting the Redis Cluster for latency")?;
    let publisher_side = start_server(programs, kind, 0, settings.max_per_process, Some(&redis))?;
    let mut receiver_side = start_server(programs, kind, 1, settings.max_per_process, Some(&redis))?;

    let targets = [receiver_side.port];
    let plan = HoldPlan {
        targets: &targets,
        connections: 1,
        room_prefix: Some("latency"),
        rooms: 1,
        latency: true,
    };
    let (mut receiver, report) = start_hold(programs, sources, plan)?;
    require_all_connected(&report, 1, "latency receiver")?;
    // The join is acked before the adapter's subscription is confirmed by Redis in some adapters.
    sleep(Duration::from_secs(1));
    receiver.command("reset")?;

    let args = publish_args(
        sources,
        publisher_side.port,
        "latency",
        1,
        settings.latency_rate,
        1,
        settings.latency_secs,
        settings.payload_bytes,
    );
    let published = run_publisher(programs, &args, Duration::from_secs_f64(settings.latency_secs), false)?;
    sleep(Duration::from_secs(2));
    receiver_side.check_running()?;
    let stats = receiver.command("latency")?;
    let histogram = stats.latency_micros.unwrap_or_default();

    drop(receiver);
    drop(publisher_side);
    drop(receiver_side);
    drop(redis);
    Ok(LatencySample {
        rate: settings.latency_rate,
        published: published.published,
        received: stats.events,
        lost: published.published.saturating_sub(stats.events),
        p50_micros: percentile(&histogram, 0.50),
        p99_micros: percentile(&histogram, 0.99),
        max_micros: histogram.last().map_or(0, |(micros, _)| *micros),
    })
}

/// Reads a percentile from sparse `[micros, count]` buckets sorted by micros.
fn percentile(histogram: &[(u64, u64)], quantile: f64) -> u64 {
    let total: u64 = histogram.iter().map(|(_, count)| count).sum();
    if total == 0 {
        return 0;
    }
    let rank = ((total as f64) * quantile).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (micros, count) in histogram {
        seen += count;
        if seen >= rank {
            return *micros;
        }
    }
    histogram.last().map_or(0, |(micros, _)| *micros)
}

// ---------------------------------------------------------------------------------------------------
// Pub/sub sharding

#[derive(Clone, Debug, Serialize)]
pub struct ShardingSample {
    pub pods: usize,
    pub rooms: usize,
    pub published: u64,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    /// Messages each pod's adapter read from Redis, divided by the messages published.
    pub shares: Vec<f64>,
    pub max_share: f64,
}

/// Spreads rooms over `sharding_pods` servers (room k has members only on pod k mod pods), publishes to
/// every room in turn through pod 0, and reads how many pub/sub messages each pod received.
pub fn pubsub_sharding(
    programs: &Programs,
    sources: &mut SourceAddresses,
    kind: ServerKind,
    settings: &Settings,
) -> anyhow::Result<ShardingSample> {
    let redis = RedisCluster::start(programs, REDIS_CLUSTER_PORT).context("starting the Redis Cluster for sharding")?;
    let mut servers = Vec::new();
    for index in 0..settings.sharding_pods {
        servers.push(start_server(
            programs,
            kind,
            index,
            settings.max_per_process,
            Some(&redis),
        )?);
    }
    let targets: Vec<u16> = servers.iter().map(|server| server.port).collect();

    // Socket i goes to pod i mod pods and joins room i mod rooms. Because rooms is a multiple of
    // pods, every member of room k is on pod k mod pods.
    if !settings.sharding_rooms.is_multiple_of(settings.sharding_pods) {
        bail!(
            "sharding rooms ({}) must be a multiple of pods ({})",
            settings.sharding_rooms,
            settings.sharding_pods
        );
    }
    let members = settings.sharding_rooms * settings.sharding_members_per_room;
    let plan = HoldPlan {
        targets: &targets,
        connections: members,
        room_prefix: Some("room"),
        rooms: settings.sharding_rooms,
        latency: false,
    };
    let (mut receivers, report) = start_hold(programs, sources, plan)?;
    require_all_connected(&report, members, "room members")?;
    sleep(Duration::from_secs(1));
    receivers.command("reset")?;

    let before: Vec<u64> = servers
        .iter()
        .map(Server::adapter_messages_received)
        .collect::<anyhow::Result<_>>()?;
    let args = publish_args(
        sources,
        servers[0].port,
        "room",
        settings.sharding_rooms,
        settings.sharding_rate,
        1,
        settings.sharding_secs,
        settings.payload_bytes,
    );
    let published = run_publisher(programs, &args, Duration::from_secs_f64(settings.sharding_secs), false)?;
    sleep(Duration::from_secs(2));
    let after: Vec<u64> = servers
        .iter()
        .map(Server::adapter_messages_received)
        .collect::<anyhow::Result<_>>()?;
    let stats = receivers.command("stats")?;

    let shares: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(before, after)| (after - before) as f64 / published.published as f64)
        .collect();
    let max_share = shares.iter().copied().fold(0.0, f64::max);
    Ok(ShardingSample {
        pods: settings.sharding_pods,
        rooms: settings.sharding_rooms,
        published: published.published,
        deliveries: stats.events,
        expected_deliveries: published.published * settings.sharding_members_per_room as u64,
        shares,
        max_share,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_reads_rank_from_buckets() {
        let histogram = [(100, 50), (200, 49), (900, 1)];
        assert_eq!(percentile(&histogram, 0.50), 100);
        assert_eq!(percentile(&histogram, 0.99), 200);
        assert_eq!(percentile(&histogram, 1.0), 900);
    }

    #[test]
    fn percentile_of_empty_histogram_is_zero() {
        assert_eq!(percentile(&[], 0.99), 0);
    }
}
