//! The adapter on one standalone Redis server (plain pub/sub), for small installs: a room
//! broadcast, an emit to a socket id, fetch sockets and a broadcast with ack cross pods.

#[path = "adapter_support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::json;
use support::{Clients, Pod, Standalone};

#[tokio::test]
async fn standalone_redis_carries_cross_pod_traffic() {
    let redis = Standalone::start(7199);
    let pod_a = Pod::start(redis.options()).await;
    let pod_b = Pod::start(redis.options()).await;
    let mut clients = Clients::spawn();
    let _a1 = clients.connect("a1", &pod_a.url).await;
    let b1 = clients.connect("b1", &pod_b.url).await;
    clients.join("a1", "lobby").await;
    clients.join("b1", "lobby").await;

    let reply = clients
        .request("a1", "publish", json!({"room": "lobby", "event": "chat", "data": "hi"}))
        .await;
    assert_eq!(reply["ok"], true);
    pod_a.io.to(b1.clone()).emit("direct", &"to b1").await.unwrap();
    let chat = clients.count_events("chat", Duration::from_millis(500)).await;
    let direct = clients.count_events("direct", Duration::ZERO).await;
    assert_eq!(chat, [("a1".to_owned(), 1), ("b1".to_owned(), 1)].into());
    assert_eq!(direct, [("b1".to_owned(), 1)].into());

    let sockets = pod_a.io.within("lobby").fetch_sockets().await.unwrap();
    assert_eq!(sockets.len(), 2);

    let reply = clients
        .request(
            "a1",
            "broadcast_with_ack",
            json!({"room": "lobby", "event": "ask", "data": 1}),
        )
        .await;
    assert_eq!(reply["acks"].as_array().unwrap().len(), 2, "{reply}");
    assert!(pod_a.state.partial_responses().is_empty());
    assert_eq!(pod_a.state.metrics().dropped_total(), 0);
}
