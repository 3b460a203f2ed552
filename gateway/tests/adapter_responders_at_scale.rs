//! Responder counting with many sockets: three pods with 300 sockets each in one room. From each
//! pod, fetch sockets returns all 900 and a broadcast with ack yields 900 acks, each before the
//! request timeout (no partial result is recorded), and every socket gets each broadcast once.

#[path = "adapter_support/mod.rs"]
mod support;

use futures::StreamExt;
use serde_json::Value;
use support::{Clients, Cluster, Pod};

const PODS: usize = 3;
const SOCKETS_PER_POD: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_and_acks_count_all_sockets() {
    let cluster = Cluster::start(7250);
    let mut pods = Vec::new();
    for _ in 0..PODS {
        pods.push(Pod::start(cluster.options()).await);
    }
    let mut clients = Clients::spawn();
    for (index, pod) in pods.iter().enumerate() {
        clients
            .connect_many(&format!("p{index}-"), SOCKETS_PER_POD, &pod.url, "all")
            .await;
    }
    let total = PODS * SOCKETS_PER_POD;

    for (index, pod) in pods.iter().enumerate() {
        let sockets = pod.io.within("all").fetch_sockets().await.unwrap();
        assert_eq!(sockets.len(), total, "fetch sockets from pod {index}");

        let event = format!("ask-{index}");
        let stream = pod
            .io
            .within("all")
            .emit_with_ack::<_, Value>(&event, &index)
            .await
            .unwrap();
        let acks: Vec<_> = tokio::time::timeout(support::WAIT, stream.collect::<Vec<_>>())
            .await
            .expect("ack stream ends");
        assert_eq!(acks.len(), total, "acks of the broadcast from pod {index}");
        assert!(acks.iter().all(|(_, result)| result.is_ok()), "every ack without error");
        assert!(
            pod.state.partial_responses().is_empty(),
            "pod {index}: {:?}",
            pod.state.partial_responses()
        );
    }

    let counts = clients.bulk_counts().await;
    for index in 0..PODS {
        assert_eq!(
            counts[format!("ask-{index}")],
            total,
            "deliveries of ask-{index}: {counts}"
        );
    }
}
