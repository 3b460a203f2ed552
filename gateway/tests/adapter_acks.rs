//! Acknowledgements across pods:
//! - a client asks its pod to broadcast with ack to a room whose members are on the same pod
//!   only, the other pod only, and both: each member gets the event once and the client gets one
//!   reply listing each member's ack once;
//! - an emit with ack on a remote socket handle yields exactly one ack and ends without waiting
//!   for the timeout.

#[path = "adapter_support/mod.rs"]
mod support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use support::{Clients, Cluster, Pod};

fn acked_sids(reply: &Value) -> Vec<String> {
    let mut sids: Vec<String> = reply["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["sid"].as_str().unwrap().to_owned())
        .collect();
    sids.sort();
    sids
}

#[tokio::test]
async fn broadcast_with_ack_reaches_each_member_once() {
    let cluster = Cluster::start(7120);
    let pod_a = Pod::start(cluster.options()).await;
    let pod_b = Pod::start(cluster.options()).await;
    let mut clients = Clients::spawn();

    let _asker = clients.connect("asker", &pod_a.url).await;
    let a1 = clients.connect("a1", &pod_a.url).await;
    let a2 = clients.connect("a2", &pod_a.url).await;
    let b1 = clients.connect("b1", &pod_b.url).await;
    let b2 = clients.connect("b2", &pod_b.url).await;
    clients.join("a1", "only-a").await;
    clients.join("b1", "only-b").await;
    clients.join("a2", "both").await;
    clients.join("b2", "both").await;

    let cases = [
        ("only-a", vec![a1.clone()]),
        ("only-b", vec![b1.clone()]),
        ("both", vec![a2.clone(), b2.clone()]),
    ];
    for (room, members) in cases {
        let event = format!("ask-{room}");
        let reply = clients
            .request(
                "asker",
                "broadcast_with_ack",
                json!({"room": room, "event": event, "data": room}),
            )
            .await;
        assert_eq!(reply["ok"], true, "{room}: {reply}");
        let mut expected = members.clone();
        expected.sort();
        assert_eq!(acked_sids(&reply), expected, "acks for {room}");

        let received = clients.count_events(&event, Duration::from_millis(300)).await;
        assert_eq!(received.values().sum::<usize>(), members.len(), "{room}: {received:?}");
        assert!(received.values().all(|count| *count == 1), "{room}: {received:?}");
    }
    assert!(
        pod_a.state.partial_responses().is_empty(),
        "{:?}",
        pod_a.state.partial_responses()
    );
}

#[tokio::test]
async fn remote_handle_emit_with_ack_yields_one_ack() {
    let cluster = Cluster::start(7130);
    let pod_a = Pod::start(cluster.options()).await;
    let _pod_b = Pod::start(cluster.options()).await;
    let _pod_c = Pod::start(cluster.options()).await;
    let mut clients = Clients::spawn();
    let target = clients.connect("target", &_pod_b.url).await;

    let sockets = pod_a.io.fetch_sockets().await.unwrap();
    let remote = sockets
        .into_iter()
        .find(|s| s.data().id.to_string() == target)
        .expect("target socket fetched");
    let stream = remote.emit_with_ack::<_, Value>("ping", &json!("ping")).await.unwrap();
    let acks: Vec<_> = tokio::time::timeout(support::WAIT, stream.collect::<Vec<_>>())
        .await
        .expect("ack stream ends");

    assert_eq!(acks.len(), 1, "{acks:?}");
    let (sid, result) = &acks[0];
    assert_eq!(sid.to_string(), target);
    let ack = result.as_ref().expect("ack without error");
    assert_eq!(ack["client"], "target");
    assert!(
        pod_a.state.partial_responses().is_empty(),
        "{:?}",
        pod_a.state.partial_responses()
    );
}
