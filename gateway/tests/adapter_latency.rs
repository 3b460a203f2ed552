//! Cross-pod broadcast latency, a measurement rather than a check (ignored by default):
//! pod A emits to a room whose only member is a socket.io client on pod B, at RATE events per
//! second for SECONDS seconds; the client's arrival time minus the send time gives the latency.
//! Run: cargo test -p socketfleet-gateway --test adapter_latency -- --ignored --nocapture
//! (with --release for optimised numbers). The client and both pods share this machine's cores.

#[path = "adapter_support/mod.rs"]
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::{Clients, Cluster, Pod};

const RATE: u64 = 200;
const SECONDS: u64 = 10;

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn cross_pod_broadcast_latency() {
    let cluster = Cluster::start(7240);
    let pod_a = Pod::start(cluster.options()).await;
    let pod_b = Pod::start(cluster.options()).await;
    let mut clients = Clients::spawn();
    clients.connect("m", &pod_b.url).await;
    clients.join("m", "latency").await;

    let total = RATE * SECONDS;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    for n in 0..total {
        ticker.tick().await;
        pod_a
            .io
            .to("latency")
            .emit("probe", &json!({"n": n, "sent": now_ms()}))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = clients.count_events("none", Duration::from_millis(500)).await;

    let mut latencies: Vec<f64> = clients
        .seen
        .iter()
        .filter(|v| v["type"] == "event" && v["event"] == "probe")
        .map(|v| v["at"].as_f64().unwrap() - v["data"]["sent"].as_f64().unwrap())
        .collect();
    assert_eq!(latencies.len() as u64, total, "every probe arrived");
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "cross-pod broadcast latency at {RATE}/s for {SECONDS} s ({total} events): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(0.50),
        percentile(0.99),
        latencies[latencies.len() - 1]
    );
}
