//! Gateway metrics, rendered in the Prometheus text format on the admin port.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Cause of a rejected connection, socket or message: the `reason` label of
/// `socketfleet_rejected_connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RejectReason {
    /// The pod has --max-connections open connections.
    AtCapacity,
    /// The pod is shutting down.
    Draining,
    /// The JWT in the `auth` payload is missing or invalid.
    Unauthorized,
    /// The user (JWT `sub`) has --max-connections-per-user sockets across the fleet.
    UserLimit,
    /// The per-user count could not be checked because Redis failed.
    UserLimitUnavailable,
    /// A websocket message exceeded --max-payload-bytes; the connection is closed with code 1009.
    PayloadTooLarge,
    /// A CONNECT to a namespace this gateway does not serve, or whose name contains a comma.
    InvalidConnect,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::AtCapacity => "at_capacity",
            RejectReason::Draining => "draining",
            RejectReason::Unauthorized => "unauthorized",
            RejectReason::UserLimit => "user_limit",
            RejectReason::UserLimitUnavailable => "user_limit_unavailable",
            RejectReason::PayloadTooLarge => "payload_too_large",
            RejectReason::InvalidConnect => "invalid_connect",
        }
    }
}

/// Counters and gauges of one gateway process.
#[derive(Default)]
pub struct Metrics {
    connected: AtomicUsize,
    connect_total: AtomicU64,
    open_connections: AtomicUsize,
    disconnects: Mutex<BTreeMap<&'static str, u64>>,
    rejects: Mutex<BTreeMap<&'static str, u64>>,
    events: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    protocol_errors: Mutex<BTreeMap<&'static str, u64>>,
    published: AtomicU64,
}

impl Metrics {
    /// Counts a socket as connected; see [`Metrics::undo_connected`].
    pub fn socket_connected(&self) {
        self.connected.fetch_add(1, Ordering::SeqCst);
        self.connect_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes back [`Metrics::socket_connected`] for a socket whose disconnect came first.
    pub fn undo_connected(&self) {
        self.connected.fetch_sub(1, Ordering::SeqCst);
        self.connect_total.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn socket_disconnected(&self, reason: &'static str) {
        self.connected.fetch_sub(1, Ordering::SeqCst);
        *self
            .disconnects
            .lock()
            .expect("metrics lock")
            .entry(reason)
            .or_default() += 1;
    }

    /// Sockets connected to a namespace on this pod.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::SeqCst)
    }

    pub fn set_open_connections(&self, open: usize) {
        self.open_connections.store(open, Ordering::Relaxed);
    }

    pub fn count_rejected(&self, reason: RejectReason) {
        *self
            .rejects
            .lock()
            .expect("metrics lock")
            .entry(reason.as_str())
            .or_default() += 1;
    }

    /// Counts a client event (`join`, `leave`, `publish`) by result (`ok` or an error kind).
    pub fn count_event(&self, event: &'static str, result: &'static str) {
        *self
            .events
            .lock()
            .expect("metrics lock")
            .entry((event, result))
            .or_default() += 1;
    }

    /// Counts a packet or frame that broke the protocol, by kind.
    pub fn count_protocol_error(&self, kind: &'static str) {
        *self
            .protocol_errors
            .lock()
            .expect("metrics lock")
            .entry(kind)
            .or_default() += 1;
    }

    pub fn count_api_publish(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends this gateway's metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        gauge(
            out,
            "socket_io_connected",
            "Sockets connected to a namespace on this pod.",
            self.connected(),
        );
        counter(
            out,
            "socket_io_connect_total",
            "Sockets that connected to a namespace.",
            self.connect_total.load(Ordering::Relaxed),
        );
        labelled(
            out,
            "socket_io_disconnect_total",
            "Sockets that left a namespace, by reason.",
            "reason",
            &self.disconnects.lock().expect("metrics lock"),
        );
        gauge(
            out,
            "socketfleet_open_connections",
            "Open TCP connections on the socket port; the per-pod limit counts these.",
            self.open_connections.load(Ordering::Relaxed),
        );
        labelled(
            out,
            "socketfleet_rejected_connections_total",
            "Connections, sockets and messages the gateway turned away, by reason.",
            "reason",
            &self.rejects.lock().expect("metrics lock"),
        );

        labelled(
            out,
            "socketfleet_protocol_errors_total",
            "Packets and frames from clients that broke the engine.io, Socket.IO or websocket protocol, by kind.",
            "kind",
            &self.protocol_errors.lock().expect("metrics lock"),
        );

        let events = self.events.lock().expect("metrics lock");
        let _ = writeln!(
            out,
            "# HELP socketfleet_client_events_total Client join, leave and publish events, by result."
        );
        let _ = writeln!(out, "# TYPE socketfleet_client_events_total counter");
        for ((event, result), value) in events.iter() {
            let _ = writeln!(
                out,
                "socketfleet_client_events_total{{event=\"{event}\",result=\"{result}\"}} {value}"
            );
        }
        drop(events);

        counter(
            out,
            "socketfleet_api_publish_total",
            "Messages accepted by the publish API.",
            self.published.load(Ordering::Relaxed),
        );
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: usize) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

fn labelled(out: &mut String, name: &str, help: &str, label: &str, values: &BTreeMap<&'static str, u64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (key, value) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{key}\"}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_design_metric_names() {
        let metrics = Metrics::default();
        metrics.socket_connected();
        metrics.socket_disconnected("ping_timeout");
        metrics.count_rejected(RejectReason::PayloadTooLarge);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("socket_io_connected 0\n"), "{out}");
        assert!(out.contains("socket_io_connect_total 1\n"), "{out}");
        assert!(
            out.contains("socket_io_disconnect_total{reason=\"ping_timeout\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("socketfleet_rejected_connections_total{reason=\"payload_too_large\"} 1\n"),
            "{out}"
        );
    }
}
