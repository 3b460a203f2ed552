//! Subscriptions survive topology changes without a failover:
//! - the server kills the pods' pub/sub connections (CLIENT KILL): the adapter gets the closed
//!   connection push, subscribes each channel again and room broadcasts flow again;
//! - a room's slot moves to another master: the old master sends SUNSUBSCRIBE, the adapter
//!   subscribes on the new owner (following MOVED) and the room's broadcasts flow again.

#[path = "adapter_support/mod.rs"]
mod support;

use serde_json::json;
use socketfleet_gateway::status::AdapterStatus;
use support::{Clients, Cluster, Pod};

fn lost_total(pod: &Pod, reason: &str) -> u64 {
    let mut out = String::new();
    pod.state.render_metrics(&mut out);
    let prefix = format!("socketfleet_adapter_subscriptions_lost_total{{reason=\"{reason}\"}} ");
    out.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

fn node_id(cluster: &Cluster, port: u16) -> String {
    cluster.cli(port, &["cluster", "myid"]).trim().to_owned()
}

#[tokio::test]
async fn killed_connections_are_resubscribed() {
    let cluster = Cluster::start(7200);
    let publisher = Pod::start(cluster.options()).await;
    let member_pod = Pod::start(cluster.options()).await;
    let mut clients = Clients::spawn();
    clients.connect("m", &member_pod.url).await;
    for room in ["k-0", "k-1", "k-2", "k-3", "k-4", "k-5"] {
        clients.join("m", room).await;
    }
    let resubscribed_before = member_pod.state.metrics().resubscribed_total();

    for port in cluster.master_ports() {
        cluster.cli(port, &["client", "kill", "type", "pubsub"]);
    }
    support::eventually("the closed connections to be noticed", || {
        lost_total(&member_pod, "disconnection") > 0
    })
    .await;
    support::eventually("subscriptions to be back", || member_pod.state.healthy()).await;
    assert!(member_pod.state.metrics().resubscribed_total() > resubscribed_before);

    for (n, room) in ["k-0", "k-1", "k-2", "k-3", "k-4", "k-5"].into_iter().enumerate() {
        publisher
            .io
            .to(room)
            .emit("after-kill", &json!({"n": n}))
            .await
            .unwrap();
        let data = clients.event("m", "after-kill").await;
        assert_eq!(data["n"], n, "room {room}");
    }
}

#[tokio::test]
async fn moved_slot_is_followed() {
    let cluster = Cluster::start(7210);
    let publisher = Pod::start(cluster.options()).await;
    let member_pod = Pod::start(cluster.options()).await;
    let mut clients = Clients::spawn();
    clients.connect("m", &member_pod.url).await;
    clients.join("m", "moving").await;

    let channel = "socketfleet:room:%2F:moving";
    let slot = cluster
        .cli(cluster.port, &["cluster", "keyslot", channel])
        .trim()
        .to_owned();
    let masters = cluster.master_ports();
    let source = *masters
        .iter()
        .find(|port| {
            cluster
                .cli(**port, &["pubsub", "shardchannels"])
                .lines()
                .any(|c| c == channel)
        })
        .expect("a master has the room channel");
    let target = *masters.iter().find(|port| **port != source).unwrap();
    let (source_id, target_id) = (node_id(&cluster, source), node_id(&cluster, target));

    // Move the (keyless) slot: importing on the target, migrating on the source, then assign it.
    cluster.cli(target, &["cluster", "setslot", &slot, "importing", &source_id]);
    cluster.cli(source, &["cluster", "setslot", &slot, "migrating", &target_id]);
    for port in &masters {
        cluster.cli(*port, &["cluster", "setslot", &slot, "node", &target_id]);
    }

    support::eventually("the server's SUNSUBSCRIBE to be counted", || {
        lost_total(&member_pod, "server_unsubscribe") > 0
    })
    .await;
    support::eventually("the room channel to be subscribed on the new owner", || {
        cluster
            .cli(target, &["pubsub", "shardchannels"])
            .lines()
            .any(|c| c == channel)
    })
    .await;
    support::eventually("member pod ready again", || member_pod.state.healthy()).await;

    publisher
        .io
        .to("moving")
        .emit("after-move", &json!({"n": 1}))
        .await
        .unwrap();
    let data = clients.event("m", "after-move").await;
    assert_eq!(data["n"], 1);
}
