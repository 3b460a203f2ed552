//! How many pods a request waits for:
//! - with no other pod, fetch sockets returns the local sockets and records no timeout;
//! - with three pods, fetch sockets and rooms from each pod return every pod's sockets;
//! - a peer that subscribes to the namespace channel but never answers gives a partial result
//!   at the request timeout that names it.

#[path = "adapter_support/mod.rs"]
mod support;

use std::time::Duration;

use redis::{ProtocolVersion, cluster::ClusterClientBuilder};
use socketfleet_gateway::adapter::{AdapterConfig, RequestKind};
use socketioxide_core::{
    Uid,
    adapter::remote_packet::{RequestOut, RequestTypeOut},
};
use support::{Clients, Cluster, Pod};

#[tokio::test]
async fn fetch_sockets_names_silent_peers() {
    let cluster = Cluster::start(7140);
    let config = AdapterConfig {
        request_timeout: Duration::from_secs(1),
        ..AdapterConfig::default()
    };

    // Alone: local results at once, no partial response.
    let pod_a = Pod::start_with(cluster.options(), config.clone()).await;
    let mut clients = Clients::spawn();
    clients.connect("a1", &pod_a.url).await;
    let alone = pod_a.io.fetch_sockets().await.unwrap();
    assert_eq!(alone.len(), 1);
    assert!(pod_a.state.partial_responses().is_empty());

    // Three pods with sockets on each: every pod fetches all of them.
    let pod_b = Pod::start_with(cluster.options(), config.clone()).await;
    let pod_c = Pod::start_with(cluster.options(), config.clone()).await;
    clients.connect("b1", &pod_b.url).await;
    clients.connect("b2", &pod_b.url).await;
    clients.connect("c1", &pod_c.url).await;
    for pod in [&pod_a, &pod_b, &pod_c] {
        let sockets = pod.io.fetch_sockets().await.unwrap();
        assert_eq!(sockets.len(), 4, "fetch sockets from {}", pod.url);
        let rooms = pod.io.rooms().await.unwrap();
        assert_eq!(rooms.len(), 4, "each socket's own room, from {}: {rooms:?}", pod.url);
        assert!(
            pod.state.partial_responses().is_empty(),
            "{:?}",
            pod.state.partial_responses()
        );
    }

    // A silent peer: subscribed to the namespace channel, announced by a heartbeat, never responds.
    let silent = Uid::new();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let client = ClusterClientBuilder::new(cluster.urls())
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(tx)
        .build()
        .unwrap();
    let mut connection = client.get_async_connection().await.unwrap();
    connection.ssubscribe("socketfleet:ns:%2F").await.unwrap();
    let heartbeat = rmp_serde::to_vec_named(&RequestOut::new_empty(silent, RequestTypeOut::Heartbeat)).unwrap();
    let _: usize = redis::cmd("SPUBLISH")
        .arg("socketfleet:ns:%2F")
        .arg(heartbeat)
        .query_async(&mut connection)
        .await
        .unwrap();
    support::eventually("pod A to hear the silent peer's heartbeat", || {
        pod_a.state.peers("/").contains(&silent)
    })
    .await;

    let sockets = pod_a.io.fetch_sockets().await.unwrap();
    assert_eq!(sockets.len(), 4, "answers of the live pods are kept");
    let partials = pod_a.state.partial_responses();
    assert_eq!(partials.len(), 1, "{partials:?}");
    assert_eq!(partials[0].request, RequestKind::FetchSockets);
    assert_eq!(partials[0].missing, vec![silent]);
    assert_eq!(partials[0].unidentified, 0);
    assert_eq!(partials[0].answered.len(), 2);
}
