//! Health check with a dead master left down: after the failover the check reads the node that
//! owns the slots now, so it neither reports nor repairs subscriptions that are in place.
//!
//! redis-rs refreshes its slot map only on MOVED or a connection error. When nothing is published
//! to the dead master's slots after the promotion, its map keeps naming the dead node, and a
//! command routed to that slot's primary goes to a random connected node instead.
//! NOTE: whether redis-rs' map is still stale when the check runs depends on where its
//! resubscriptions land during the failover, so this test does not always reach that state.

#[path = "adapter_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use socketfleet_gateway::adapter::AdapterConfig;
use socketfleet_gateway::status::AdapterStatus;
use support::{Clients, Cluster, Pod};

const ROOMS: usize = 20;
const NAMESPACE_CHANNEL: &str = "socketfleet:ns:%2F";

fn health_check_losses(pod: &Pod) -> u64 {
    let mut out = String::new();
    pod.state.render_metrics(&mut out);
    out.lines()
        .find(|line| line.starts_with("socketfleet_adapter_subscriptions_lost_total{reason=\"health_check\"}"))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .expect("the health_check loss counter is rendered")
}

#[tokio::test]
async fn health_check_after_failover_reads_new_master() {
    let cluster = Cluster::start(7270);
    let config = AdapterConfig {
        health_interval: Duration::from_millis(500),
        ..AdapterConfig::default()
    };
    let pod = Pod::start_with(cluster.options(), config).await;
    let mut clients = Clients::spawn();
    clients.connect("m", &pod.url).await;
    for i in 0..ROOMS {
        clients.join("m", &format!("room-{i}")).await;
    }

    // The victim owns room channels but not the namespace channel, so the pod's heartbeats never
    // publish to its slots and no MOVED reply makes redis-rs learn the new master.
    let mut candidates: Vec<(u16, usize)> = cluster
        .master_ports()
        .into_iter()
        .filter_map(|port| {
            let channels = cluster.cli(port, &["pubsub", "shardchannels", "socketfleet:*"]);
            if channels.lines().any(|channel| channel == NAMESPACE_CHANNEL) {
                return None;
            }
            let rooms = channels.lines().filter(|channel| channel.contains(":room-")).count();
            (rooms > 0).then_some((port, rooms))
        })
        .collect();
    candidates.sort_by_key(|(_, rooms)| std::cmp::Reverse(*rooms));
    let (victim, victim_rooms) = *candidates
        .first()
        .expect("a master with room channels and no namespace channel");

    let status = std::process::Command::new("kill")
        .args(["-KILL", &cluster.pid(victim).to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill master {victim}");
    support::eventually("cluster_state:ok with a new master", || {
        cluster.cli_any(&["cluster", "info"]).contains("cluster_state:ok") && cluster.master_ports().len() == 3
    })
    .await;
    support::eventually("every room channel on the current masters", || {
        let channels: usize = cluster
            .master_ports()
            .iter()
            .map(|port| {
                cluster
                    .cli(*port, &["pubsub", "shardchannels", "socketfleet:room:*"])
                    .lines()
                    .filter(|c| c.contains(":room-"))
                    .count()
            })
            .sum();
        channels == ROOMS
    })
    .await;
    support::eventually("pod ready after the failover", || pod.state.healthy()).await;

    // About ten health checks with the dead master still down.
    let losses_before = health_check_losses(&pod);
    let watched_since = Instant::now();
    let mut unready = Vec::new();
    while watched_since.elapsed() < Duration::from_secs(5) {
        if let Some(reason) = pod.state.unhealthy_reason() {
            unready.push((watched_since.elapsed(), reason));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let losses_after = health_check_losses(&pod);
    println!(
        "master {victim} ({victim_rooms} rooms) killed and left down: health check losses {losses_before} -> {losses_after}"
    );

    assert_eq!(
        losses_after, losses_before,
        "health check reported subscriptions lost that the new master has"
    );
    assert!(
        unready.is_empty(),
        "pod turned not ready with the subscriptions in place: {unready:?}"
    );
}
