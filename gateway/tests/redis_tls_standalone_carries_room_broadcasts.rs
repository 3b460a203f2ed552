//! Two `socketfleet-gateway` processes in standalone mode on one redis-server that speaks only
//! TLS, trusted through --redis-ca-file. A room broadcast reaches the room's members on both pods
//! exactly once, and a socket outside the room gets nothing.

#[path = "adapter_support/mod.rs"]
mod adapter_support;
#[path = "redis_tls_support/mod.rs"]
mod support;

use std::time::Duration;

use adapter_support::Clients;
use serde_json::json;
use support::{Certificates, Gateway, TempDir, TlsStandalone};

#[tokio::test]
async fn tls_standalone_carries_room_broadcasts() {
    let dir = TempDir::new("redis-tls-standalone");
    let certificates = Certificates::create(dir.path());
    let redis = TlsStandalone::start(&certificates, dir.path());
    let ca = certificates.ca.display().to_string();
    let url = redis.url();

    let mut gateways: Vec<Gateway> = (0..2)
        .map(|_| {
            Gateway::start(&[
                "--redis-url",
                &url,
                "--redis-mode",
                "standalone",
                "--redis-ca-file",
                &ca,
            ])
        })
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
    clients.connect_on("outsider", &gateways[0].url(), "connect").await;

    let reply = clients
        .request(
            "c1",
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

    // The pods subscribe to the room's channel on the TLS server, so the broadcast went through it.
    let channels = certificates.cli(redis.port, &["pubsub", "channels", "*lobby*"]);
    assert_eq!(channels.lines().count(), 1, "channels of lobby: {channels:?}");
    let subscribers = certificates.cli(redis.port, &["pubsub", "numsub", channels.trim()]);
    assert_eq!(
        subscribers.lines().nth(1),
        Some("2"),
        "both pods subscribe to lobby: {subscribers:?}"
    );
}
