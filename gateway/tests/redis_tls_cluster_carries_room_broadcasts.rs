//! Two `socketfleet-gateway` processes on a Redis Cluster that speaks only TLS (3 masters on
//! 127.0.0.1:7460.., cluster bus on 17460..). A room broadcast reaches the room's members on both
//! pods exactly once. A third gateway, given a CA that did not sign the servers' certificate,
//! stops at startup with a message naming --redis-ca-file.

#[path = "adapter_support/mod.rs"]
mod adapter_support;
#[path = "redis_tls_support/mod.rs"]
mod support;

use std::time::Duration;

use adapter_support::Clients;
use serde_json::json;
use support::{Certificates, Gateway, TempDir, TlsCluster};

/// First client port of the TLS cluster. No other test, nor the bench (7400..7405), uses
/// 7460..7509 or 17460..17509, the ports of this block and its fallbacks.
const CLUSTER_PORT: u16 = 7460;

#[tokio::test]
async fn tls_cluster_carries_room_broadcasts() {
    let dir = TempDir::new("redis-tls-cluster");
    let certificates = Certificates::create(dir.path());
    let cluster = TlsCluster::start(CLUSTER_PORT, &certificates, dir.path());
    let ca = certificates.ca.display().to_string();
    let seed = cluster.seed_url();

    let mut gateways: Vec<Gateway> = (0..2)
        .map(|_| Gateway::start(&["--redis-url", &seed, "--redis-mode", "cluster", "--redis-ca-file", &ca]))
        .collect();
    for gateway in &mut gateways {
        gateway.wait_ready().await;
    }

    let mut clients = Clients::spawn();
    for (index, gateway) in gateways.iter().enumerate() {
        let name = format!("c{index}");
        clients.connect_on(&name, &gateway.url(), "connect").await;
        clients.join(&name, "lobby").await;
    }
    clients.connect_on("outsider", &gateways[1].url(), "connect").await;

    let reply = clients
        .request(
            "c0",
            "publish",
            json!({"room": "lobby", "event": "chat", "data": "over tls"}),
        )
        .await;
    assert_eq!(reply["ok"], true, "publish to lobby: {reply}");
    let chat = clients.count_events("chat", Duration::from_millis(800)).await;
    assert_eq!(
        chat,
        [("c0".to_owned(), 1), ("c1".to_owned(), 1)].into(),
        "chat events per client"
    );

    // The room channels are sharded channels on the TLS cluster, so the broadcast went through it.
    let channels: Vec<String> = cluster
        .ports()
        .flat_map(|port| {
            certificates
                .cli(port, &["pubsub", "shardchannels"])
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|channel| channel.contains("lobby"))
        .collect();
    assert_eq!(channels.len(), 1, "shard channels of lobby: {channels:?}");

    let other_ca = certificates.other_ca.display().to_string();
    let untrusting = Gateway::start(&[
        "--redis-url",
        &seed,
        "--redis-mode",
        "cluster",
        "--redis-ca-file",
        &other_ca,
    ]);
    let (succeeded, stderr) = untrusting.exit();
    assert!(
        !succeeded,
        "a gateway that does not trust the servers' CA started: {stderr}"
    );
    assert!(stderr.contains("--redis-ca-file"), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
}
