//! Prometheus metrics of the operator and the HTTP server for `/metrics`, `/livez`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of the error counter: the error variant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

/// Counters and gauges the controller updates.
pub struct Metrics {
    pub reconciles: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub status_writes: Counter,
    pub leader: Gauge,
    /// Set once the controller runs or waits for the Lease; `/readyz` reports it.
    pub ready: AtomicBool,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("socketfleet_operator");
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let status_writes = Counter::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error variant",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_seconds.clone(),
        );
        registry.register(
            "status_writes",
            "Status patches sent because the status changed",
            status_writes.clone(),
        );
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        Self {
            reconciles,
            failures,
            reconcile_seconds,
            status_writes,
            leader,
            ready: AtomicBool::new(false),
            registry,
        }
    }
}

impl Metrics {
    /// Counts a failed reconcile under its error variant.
    pub fn count_failure(&self, variant: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: variant.to_owned(),
            })
            .inc();
    }

    /// Renders every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Builds the router of the metrics and health port.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(serve_ready))
        .with_state(metrics)
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn serve_ready(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// Serves the router on `address` until `shutdown` completes.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_follows_the_ready_flag() {
        let metrics = Arc::new(Metrics::default());
        assert_eq!(
            get(router(metrics.clone()), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        metrics.ready.store(true, Ordering::Relaxed);
        assert_eq!(get(router(metrics.clone()), "/readyz").await.0, StatusCode::OK);
        assert_eq!(get(router(metrics), "/livez").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_endpoint_serves_the_registry() {
        let metrics = Arc::new(Metrics::default());
        metrics.reconciles.inc();
        let (status, body) = get(router(metrics), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("socketfleet_operator_reconciles_total 1"), "{body}");
    }

    #[test]
    fn failures_are_counted_by_variant() {
        let metrics = Metrics::default();
        metrics.count_failure("Apply");
        metrics.count_failure("Apply");
        metrics.count_failure("StatusPatch");
        let text = metrics.encode();
        assert!(
            text.contains("socketfleet_operator_reconcile_failures_total{error=\"Apply\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("socketfleet_operator_reconcile_failures_total{error=\"StatusPatch\"} 1"),
            "{text}"
        );
    }
}
