//! Room-level sharding:
//! - with rooms spread over pods, each pod reads from Redis only the messages of rooms it has
//!   members in (counted by the adapter's received counters), and members get each event once;
//! - room channels spread over the cluster: the SPUBLISH calls of 60 rooms land on every master,
//!   each within 2x of the mean.

#[path = "adapter_support/mod.rs"]
mod support;

use std::{collections::HashMap, time::Duration};

use serde_json::json;
use socketfleet_gateway::adapter::{AdapterConfig, channel::ChannelKind};
use support::{Clients, Cluster, Pod};

const PODS: usize = 3;
const ROOMS_PER_POD: usize = 4;
const EVENTS_PER_ROOM: usize = 10;

fn spublish_calls(cluster: &Cluster, port: u16) -> u64 {
    let stats = cluster.cli(port, &["info", "commandstats"]);
    stats
        .lines()
        .find(|line| line.starts_with("cmdstat_spublish:"))
        .and_then(|line| line.split("calls=").nth(1)?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn pods_read_only_rooms_they_serve() {
    let cluster = Cluster::start(7150);
    let mut pods = Vec::new();
    for _ in 0..PODS {
        pods.push(Pod::start(cluster.options()).await);
    }
    // The publisher serves no member, like an API pod, so its own messages do not come back to it.
    let publisher = Pod::start(cluster.options()).await;
    let mut clients = Clients::spawn();

    let mut members: HashMap<String, String> = HashMap::new();
    for (index, pod) in pods.iter().enumerate() {
        for slot in 0..ROOMS_PER_POD {
            let room = format!("room-{}", index * ROOMS_PER_POD + slot);
            let client = format!("c-{room}");
            clients.connect(&client, &pod.url).await;
            clients.join(&client, &room).await;
            members.insert(room, client);
        }
    }
    let before: Vec<(u64, u64)> = pods
        .iter()
        .map(|p| p.state.metrics().received(ChannelKind::Room))
        .collect();

    for round in 0..EVENTS_PER_ROOM {
        for room in members.keys() {
            publisher
                .io
                .to(room.clone())
                .emit("news", &json!({"room": room, "round": round}))
                .await
                .unwrap();
        }
    }
    let received = clients.count_events("news", Duration::from_secs(2)).await;

    for client in members.values() {
        assert_eq!(
            received.get(client),
            Some(&EVENTS_PER_ROOM),
            "events of {client}: {received:?}"
        );
    }
    for (index, pod) in pods.iter().enumerate() {
        let (messages, bytes) = pod.state.metrics().received(ChannelKind::Room);
        let (messages, bytes) = (messages - before[index].0, bytes - before[index].1);
        println!("pod {index}: {messages} room messages, {bytes} bytes read from redis");
        assert_eq!(
            messages,
            (ROOMS_PER_POD * EVENTS_PER_ROOM) as u64,
            "room messages read by pod {index}"
        );
        assert!(bytes > 0);
    }
    let (publisher_messages, _) = publisher.state.metrics().received(ChannelKind::Room);
    assert_eq!(
        publisher_messages, 0,
        "the publisher has no members and reads no room traffic"
    );
}

#[tokio::test]
async fn room_channels_spread_over_masters() {
    let cluster = Cluster::start(7160);
    // Heartbeats are SPUBLISHed too; a long interval keeps them out of the measured window.
    let quiet = AdapterConfig {
        heartbeat_interval: Duration::from_secs(3600),
        ..AdapterConfig::default()
    };
    let publisher = Pod::start_with(cluster.options(), quiet).await;
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3);
    let before: Vec<u64> = masters.iter().map(|port| spublish_calls(&cluster, *port)).collect();

    for index in 0..60 {
        publisher
            .io
            .to(format!("room-{index}"))
            .emit("news", &index)
            .await
            .unwrap();
    }

    let per_master: Vec<u64> = masters
        .iter()
        .zip(&before)
        .map(|(port, before)| spublish_calls(&cluster, *port) - before)
        .collect();
    println!("SPUBLISH calls per master for 60 rooms: {per_master:?}");
    assert_eq!(per_master.iter().sum::<u64>(), 60);
    let mean = 60.0 / 3.0;
    for calls in per_master {
        assert!(calls as f64 <= 2.0 * mean, "a master took {calls} of 60 rooms");
        assert!(calls as f64 >= mean / 2.0, "a master took only {calls} of 60 rooms");
    }
}
