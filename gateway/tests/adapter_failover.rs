//! Master failover: a master that owns several room channels is killed while a pod publishes
//! numbered events to 20 rooms whose member is on another pod.
//! - Every event published after recovery arrives exactly once; the subscriptions of the dead
//!   master's slots are back on the new master, one SSUBSCRIBE each.
//! - Losses during the window are visible: failed publishes return errors to the caller, lost
//!   subscriptions are counted, and readiness is false until they are back.
//!
//! The test prints the events lost in the window and the time to recover.

#[path = "adapter_support/mod.rs"]
mod support;

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use serde_json::json;
use socketfleet_gateway::status::AdapterStatus;
use support::{Clients, Cluster, Pod};

const ROOMS: usize = 20;
const EVENTS_PER_ROOM_AFTER: usize = 100;

/// Returns whether a channel is one of the test's rooms rather than a socket's own room.
fn is_test_room(channel: &str) -> bool {
    channel.rsplit(':').next().is_some_and(|room| room.starts_with("room-"))
}

fn metric(pod: &Pod, name: &str) -> u64 {
    let mut out = String::new();
    pod.state.render_metrics(&mut out);
    out.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn master_failover_restores_room_subscriptions() {
    let cluster = Cluster::start(7170);
    let publisher = Pod::start(cluster.options()).await;
    let member_pod = Pod::start(cluster.options()).await;
    let mut clients = Clients::spawn();
    clients.connect("m", &member_pod.url).await;
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("room-{i}")).collect();
    for room in &rooms {
        clients.join("m", room).await;
    }

    // The master with the most room channels of the member pod.
    let mut on_master: Vec<(u16, Vec<String>)> = cluster
        .master_ports()
        .into_iter()
        .map(|port| {
            let channels = cluster.cli(port, &["pubsub", "shardchannels", "socketfleet:room:*"]);
            (
                port,
                channels
                    .lines()
                    .filter(|c| is_test_room(c))
                    .map(str::to_owned)
                    .collect(),
            )
        })
        .collect();
    on_master.sort_by_key(|(_, channels)| std::cmp::Reverse(channels.len()));
    let (victim, victim_channels) = on_master[0].clone();
    let victim_rooms: BTreeSet<String> = victim_channels
        .iter()
        .filter_map(|c| c.rsplit(':').next())
        .filter(|r| r.starts_with("room-"))
        .map(str::to_owned)
        .collect();
    assert!(
        victim_rooms.len() >= 3,
        "master {victim} owns too few rooms: {on_master:?}"
    );
    let lost_before = metric(&member_pod, "socketfleet_adapter_subscriptions_lost_total");

    // Readiness of the member pod, sampled every 10 ms: when it turned false and true again.
    let watched = member_pod.state.clone();
    let readiness = tokio::spawn(async move {
        let started = Instant::now();
        let (mut unready_at, mut ready_again_at) = (None, None);
        while started.elapsed() < Duration::from_secs(20) {
            match (watched.healthy(), unready_at) {
                (false, None) => unready_at = Some(started.elapsed()),
                (false, Some(_)) => ready_again_at = None,
                (true, Some(_)) if ready_again_at.is_none() => ready_again_at = Some(started.elapsed()),
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (unready_at, ready_again_at)
    });

    // Kill the master and keep publishing numbered events for 15 s.
    let killed_at = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &cluster.pid(victim).to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut sent: Vec<(u64, String, Duration, bool)> = Vec::new();
    let mut seen_unready = false;
    let mut sequence = 0u64;
    while killed_at.elapsed() < Duration::from_secs(15) {
        sequence += 1;
        let room = rooms[sequence as usize % ROOMS].clone();
        let at = killed_at.elapsed();
        let data = json!({"n": sequence});
        let publish = publisher.io.to(room.clone()).emit("numbered", &data);
        let ok = matches!(tokio::time::timeout(Duration::from_secs(1), publish).await, Ok(Ok(())));
        sent.push((sequence, room, at, ok));
        seen_unready |= !member_pod.state.healthy();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Recovery: the cluster elected a new master and the member pod is ready again.
    support::eventually("cluster_state:ok after failover", || {
        cluster.cli_any(&["cluster", "info"]).contains("cluster_state:ok") && cluster.master_ports().len() == 3
    })
    .await;
    support::eventually("member pod ready again", || member_pod.state.healthy()).await;
    support::eventually("publisher pod ready again", || publisher.state.healthy()).await;

    let mut received: HashMap<u64, usize> = HashMap::new();
    let window_events = clients.count_numbered("numbered", Duration::from_secs(2)).await;
    for n in window_events {
        *received.entry(n).or_default() += 1;
    }
    let failed: Vec<u64> = sent.iter().filter(|(_, _, _, ok)| !ok).map(|(n, ..)| *n).collect();
    let lost: Vec<&(u64, String, Duration, bool)> = sent
        .iter()
        .filter(|(n, _, _, ok)| *ok && !received.contains_key(n))
        .collect();
    let last_problem = sent
        .iter()
        .filter(|(n, _, _, ok)| !ok || !received.contains_key(n))
        .map(|(_, _, at, _)| *at)
        .max()
        .unwrap_or_default();
    let duplicates: Vec<_> = received.iter().filter(|(_, count)| **count > 1).collect();
    let first_delivered_on_victim = sent
        .iter()
        .filter(|(n, room, _, ok)| *ok && victim_rooms.contains(room) && received.contains_key(n))
        .find(|(_, _, at, _)| *at > Duration::ZERO)
        .map(|(_, _, at, _)| *at);
    let (unready_at, ready_again_at) = readiness.await.unwrap();
    println!(
        "failover of master {victim} ({} of {ROOMS} rooms): {} events sent in 15 s, {} publishes failed or timed out (1 s), \
         {} published events not delivered, last failed or lost event sent {:.2} s after the kill, \
         first delivered event to a room of the killed master sent {:.2} s after the kill, \
         member pod not ready from {:.2} s to {:.2} s",
        victim_rooms.len(),
        sent.len(),
        failed.len(),
        lost.len(),
        last_problem.as_secs_f64(),
        first_delivered_on_victim.unwrap_or_default().as_secs_f64(),
        unready_at.unwrap_or_default().as_secs_f64(),
        ready_again_at.unwrap_or_default().as_secs_f64(),
    );
    for (n, room, at, _) in &lost {
        println!(
            "lost event {n} to {room}, sent {:.2} s after the kill",
            at.as_secs_f64()
        );
    }
    assert!(duplicates.is_empty(), "duplicated events: {duplicates:?}");
    for (_, room, _, _) in &lost {
        assert!(
            victim_rooms.contains(room),
            "an event to {room}, not on the killed master, was lost"
        );
    }

    // After recovery every event arrives exactly once.
    for round in 0..EVENTS_PER_ROOM_AFTER {
        for room in &rooms {
            sequence += 1;
            publisher
                .io
                .to(room.clone())
                .emit("after", &json!({"n": sequence, "round": round}))
                .await
                .unwrap();
        }
    }
    let after = clients.count_numbered("after", Duration::from_secs(3)).await;
    let distinct: BTreeSet<u64> = after.iter().copied().collect();
    assert_eq!(
        after.len(),
        ROOMS * EVENTS_PER_ROOM_AFTER,
        "events after recovery (with duplicates)"
    );
    assert_eq!(
        distinct.len(),
        ROOMS * EVENTS_PER_ROOM_AFTER,
        "distinct events after recovery"
    );

    // The loss was counted and repaired channel by channel; nothing was dropped from the queue.
    assert!(seen_unready, "readiness turned false while subscriptions were lost");
    let lost_after = metric(&member_pod, "socketfleet_adapter_subscriptions_lost_total");
    assert!(lost_after > lost_before, "lost subscriptions were counted");
    let resubscribed = member_pod.state.metrics().resubscribed_total();
    assert!(
        resubscribed >= victim_rooms.len() as u64,
        "resubscribed {resubscribed} for {} rooms",
        victim_rooms.len()
    );
    assert_eq!(member_pod.state.metrics().dropped_total(), 0);
    let channels: usize = cluster
        .master_ports()
        .iter()
        .map(|port| {
            cluster
                .cli(*port, &["pubsub", "shardchannels", "socketfleet:room:*"])
                .lines()
                .filter(|c| is_test_room(c))
                .count()
        })
        .sum();
    assert_eq!(
        channels, ROOMS,
        "every room channel is subscribed on the current masters"
    );
}
