//! The incoming queue's policy when a pod cannot keep up: messages beyond the queue capacity are
//! dropped, counted under `queue_full`, and the pod reports not ready; it never blocks Redis'
//! read loop and never drops silently.

#[path = "adapter_support/mod.rs"]
mod support;

use serde_json::json;
use socketfleet_gateway::{adapter::AdapterConfig, status::AdapterStatus};
use support::{Clients, Cluster, Pod};

#[tokio::test]
async fn full_queue_drops_are_counted_and_unready() {
    let cluster = Cluster::start(7230);
    let publisher = Pod::start(cluster.options()).await;
    let tiny = AdapterConfig {
        queue_capacity: 2,
        ..AdapterConfig::default()
    };
    let member_pod = Pod::start_with(cluster.options(), tiny).await;
    let mut clients = Clients::spawn();
    clients.connect("m", &member_pod.url).await;
    clients.join("m", "flood").await;
    assert!(member_pod.state.healthy());

    // Concurrent publishes arrive in bursts, more than two per read of the member pod's connection.
    let payload = "x".repeat(4096);
    let messages: Vec<_> = (0..500).map(|n| json!({"n": n, "pad": payload})).collect();
    let publishes = messages.iter().map(|data| publisher.io.to("flood").emit("flood", data));
    for result in futures::future::join_all(publishes).await {
        result.unwrap();
    }

    support::eventually("a queue_full drop to be counted", || {
        member_pod.state.metrics().dropped_total() > 0
    })
    .await;
    assert!(!member_pod.state.healthy(), "readiness is false after drops");
    let reason = member_pod.state.unhealthy_reason().unwrap();
    assert!(reason.contains("queue"), "{reason}");
    let mut metrics = String::new();
    member_pod.state.render_metrics(&mut metrics);
    assert!(
        !metrics.contains("socketfleet_adapter_dropped_total{reason=\"queue_full\"} 0\n"),
        "{metrics}"
    );
}
