//! Cross-pod delivery through the Redis Cluster adapter, with real socket.io clients:
//! - a room broadcast reaches members on both pods exactly once, and no non-member;
//! - an emit to a socket id from another pod (its private room) arrives exactly once;
//! - fetch sockets from another pod finds the remote member, and an emit on its remote handle
//!   arrives exactly once;
//! - an emit to a room right after a remote socket joined it arrives.

#[path = "adapter_support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::json;
use support::{Clients, Cluster, Pod};

#[tokio::test]
async fn room_and_private_emits_cross_pods_exactly_once() {
    let cluster = Cluster::start(7110);
    let pod_a = Pod::start(cluster.options()).await;
    let pod_b = Pod::start(cluster.options()).await;
    let mut clients = Clients::spawn();

    let sid_1 = clients.connect("c1", &pod_a.url).await;
    let sid_2 = clients.connect("c2", &pod_b.url).await;
    let _sid_3 = clients.connect("c3", &pod_b.url).await;
    clients.join("c1", "lobby").await;
    clients.join("c2", "lobby").await;

    // Emit to the room right after the remote join, from the other pod's server side.
    pod_a.io.to("lobby").emit("after-join", &json!({"n": 1})).await.unwrap();

    // A client publishes to the room through its pod.
    let reply = clients
        .request("c1", "publish", json!({"room": "lobby", "event": "chat", "data": "hi"}))
        .await;
    assert_eq!(reply["ok"], true);

    // An emit to a socket id on the other pod.
    pod_a
        .io
        .to(sid_2.clone())
        .emit("direct", &json!("to c2"))
        .await
        .unwrap();

    // Fetch sockets from pod A, then emit on the remote handle of c2.
    let sockets = pod_a.io.within("lobby").fetch_sockets().await.unwrap();
    let mut ids: Vec<String> = sockets.iter().map(|s| s.data().id.to_string()).collect();
    ids.sort();
    let mut expected = vec![sid_1.clone(), sid_2.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    let remote = sockets.iter().find(|s| s.data().id.to_string() == sid_2).unwrap();
    assert_eq!(remote.data().server_id, pod_b.io.config().server_id);
    remote.emit("handle", &json!("via handle")).await.unwrap();

    let after_join = clients.count_events("after-join", Duration::from_millis(800)).await;
    let chat = clients.count_events("chat", Duration::ZERO).await;
    let direct = clients.count_events("direct", Duration::ZERO).await;
    let handle = clients.count_events("handle", Duration::ZERO).await;

    assert_eq!(after_join.get("c1"), Some(&1), "after-join on c1: {after_join:?}");
    assert_eq!(after_join.get("c2"), Some(&1), "after-join on c2: {after_join:?}");
    assert_eq!(
        after_join.get("c3"),
        None,
        "after-join on non-member c3: {after_join:?}"
    );
    assert_eq!(chat.get("c1"), Some(&1), "chat on c1: {chat:?}");
    assert_eq!(chat.get("c2"), Some(&1), "chat on c2: {chat:?}");
    assert_eq!(chat.get("c3"), None, "chat on non-member c3: {chat:?}");
    assert_eq!(direct, [("c2".to_owned(), 1)].into(), "direct emit");
    assert_eq!(handle, [("c2".to_owned(), 1)].into(), "emit on remote handle");
    assert_eq!(pod_a.state.metrics().dropped_total(), 0);
    assert_eq!(pod_b.state.metrics().dropped_total(), 0);
}
