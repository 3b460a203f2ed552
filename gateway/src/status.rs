//! Adapter health and metrics, as `/readyz` and `/metrics` report them.

/// Health and metrics of the adapter that carries broadcasts between pods.
///
/// `/readyz` reports not ready while [`AdapterStatus::healthy`] is false (for example while Redis
/// subscriptions are being restored), and `/metrics` appends [`AdapterStatus::render_metrics`].
pub trait AdapterStatus: Send + Sync + 'static {
    /// Returns whether the adapter can deliver broadcasts to and from other pods right now.
    fn healthy(&self) -> bool;

    /// A short reason for `/readyz` while unhealthy, e.g. "redis subscriptions are being restored".
    fn unhealthy_reason(&self) -> Option<String> {
        None
    }

    /// Appends Prometheus text-format metrics (with `# HELP` and `# TYPE` lines) to `out`.
    fn render_metrics(&self, out: &mut String);
}

/// Status of socketioxide's in-memory `LocalAdapter`: always healthy, never drops a message.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalAdapterStatus;

impl AdapterStatus for LocalAdapterStatus {
    fn healthy(&self) -> bool {
        true
    }

    fn render_metrics(&self, out: &mut String) {
        // The dropped-message counter has the fleet adapter's name and labels on every gateway, so
        // alerts work the same with or without Redis. The in-memory adapter delivers in-process
        // and has nothing to drop.
        out.push_str(
            "# HELP socketfleet_adapter_dropped_total Messages the adapter dropped, by reason; \
             any non-zero value is lost traffic.\n",
        );
        out.push_str("# TYPE socketfleet_adapter_dropped_total counter\n");
        out.push_str("socketfleet_adapter_dropped_total{reason=\"queue_full\"} 0\n");
        out.push_str("socketfleet_adapter_dropped_total{reason=\"decode_failed\"} 0\n");
        out.push_str("# HELP redis_pubsub_channels Redis pub/sub channels this pod is subscribed to.\n");
        out.push_str("# TYPE redis_pubsub_channels gauge\n");
        out.push_str("redis_pubsub_channels 0\n");
    }
}
