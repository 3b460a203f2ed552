//! Subscriptions follow local room membership:
//! - 200 times a socket joins `churn-i`, gets one broadcast from another pod and leaves; then the
//!   pod's channel gauge, its local rooms and the masters' shard channels are back to baseline;
//! - a join that lands after its socket disconnected leaves no room entry (locally or fetched
//!   from another pod) and no Redis subscription.

#[path = "adapter_support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::json;
use support::{Clients, Cluster, Pod};

const ITERATIONS: usize = 200;

fn channels_gauge(pod: &Pod) -> u64 {
    use socketfleet_gateway::status::AdapterStatus;
    let mut out = String::new();
    pod.state.render_metrics(&mut out);
    out.lines()
        .find_map(|line| line.strip_prefix("redis_pubsub_channels ")?.parse().ok())
        .expect("redis_pubsub_channels in metrics")
}

fn churn_channels(cluster: &Cluster) -> Vec<String> {
    cluster
        .shard_channels()
        .into_iter()
        .filter(|c| c.contains(":churn-"))
        .collect()
}

#[tokio::test]
async fn room_churn_returns_to_baseline() {
    let cluster = Cluster::start(7180);
    let publisher = Pod::start(cluster.options()).await;
    let member_pod = Pod::start(cluster.options()).await;
    let mut clients = Clients::spawn();
    clients.connect("m", &member_pod.url).await;
    let baseline = channels_gauge(&member_pod);

    for i in 0..ITERATIONS {
        let room = format!("churn-{i}");
        clients.join("m", &room).await;
        publisher
            .io
            .to(room.clone())
            .emit("tick", &json!({"n": i}))
            .await
            .unwrap();
        let data = clients.event("m", "tick").await;
        assert_eq!(data["n"], i, "iteration {i}");
        clients.leave("m", &room).await;
    }

    assert_eq!(channels_gauge(&member_pod), baseline, "channel gauge back to baseline");
    let local_rooms = member_pod.io.local().rooms().await.unwrap();
    assert!(local_rooms.iter().all(|r| !r.starts_with("churn-")), "{local_rooms:?}");
    assert_eq!(
        churn_channels(&cluster),
        Vec::<String>::new(),
        "shard channels left on the masters"
    );
    let extra = clients.count_events("tick", Duration::from_millis(300)).await;
    assert!(extra.is_empty(), "duplicate deliveries: {extra:?}");
}

#[tokio::test]
async fn join_after_disconnect_leaves_nothing() {
    let cluster = Cluster::start(7190);
    let pod_a = Pod::start(cluster.options()).await;
    let pod_b = Pod::start(cluster.options()).await;
    let mut clients = Clients::spawn();
    let sid = clients.connect("late", &pod_b.url).await;
    let socket = pod_b.io.get_socket(sid.parse().unwrap()).expect("socket on pod B");

    // The client goes away while a join handler is still waiting (for an auth lookup, say).
    clients.close("late").await;
    support::eventually("pod B to remove the socket", || {
        pod_b.io.get_socket(socket.id).is_none()
    })
    .await;
    socket.local().join("r1").await.unwrap();

    support::eventually("the late join's subscription to go", || {
        cluster.shard_channels().iter().all(|c| !c.ends_with(":r1"))
    })
    .await;
    let local = pod_b.io.local().rooms().await.unwrap();
    assert!(!local.iter().any(|r| r == "r1"), "local rooms: {local:?}");
    let fetched = pod_a.io.within("r1").fetch_sockets().await.unwrap();
    assert!(fetched.is_empty(), "fetched from pod A: {fetched:?}");
    let members = pod_b.io.local().within("r1").sockets();
    assert!(members.is_empty());
}
