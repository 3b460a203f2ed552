//! Counters of the adapter, rendered in Prometheus text format, and the health that `/readyz` reads.

use std::{
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::channel::ChannelKind;

const KINDS: [ChannelKind; 4] = [
    ChannelKind::Room,
    ChannelKind::Namespace,
    ChannelKind::Pod,
    ChannelKind::Response,
];

/// How long readiness stays false after the incoming queue overflowed.
pub const QUEUE_FULL_HOLD: Duration = Duration::from_secs(30);

/// Reason a message was dropped, a label of `socketfleet_adapter_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The incoming queue was full.
    QueueFull,
    /// The payload could not be decoded.
    DecodeFailed,
}

impl DropReason {
    const ALL: [Self; 2] = [Self::QueueFull, Self::DecodeFailed];

    fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::DecodeFailed => "decode_failed",
        }
    }
}

/// Way a lost subscription was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The server sent SUNSUBSCRIBE (or UNSUBSCRIBE) on its own, e.g. after a slot moved.
    ServerUnsubscribe,
    /// A connection to a node closed.
    Disconnection,
    /// The periodic health check counted fewer subscriptions on a node than expected.
    HealthCheck,
}

impl LossReason {
    const ALL: [Self; 3] = [Self::ServerUnsubscribe, Self::Disconnection, Self::HealthCheck];

    fn label(self) -> &'static str {
        match self {
            Self::ServerUnsubscribe => "server_unsubscribe",
            Self::Disconnection => "disconnection",
            Self::HealthCheck => "health_check",
        }
    }
}

/// Request kinds that wait for responses from other pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Fetch sockets.
    FetchSockets,
    /// List rooms.
    Rooms,
    /// Broadcast with acknowledgements.
    BroadcastWithAck,
}

impl RequestKind {
    const ALL: [Self; 3] = [Self::FetchSockets, Self::Rooms, Self::BroadcastWithAck];

    /// Label value used in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::FetchSockets => "fetch_sockets",
            Self::Rooms => "rooms",
            Self::BroadcastWithAck => "broadcast_with_ack",
        }
    }
}

#[derive(Default)]
struct PerKind {
    published: AtomicU64,
    published_bytes: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
}

/// All counters of one adapter state (one Redis connection, shared by its namespaces).
#[derive(Default)]
pub struct Metrics {
    per_kind: [PerKind; 4],
    dropped: [AtomicU64; 2],
    lost: [AtomicU64; 3],
    partial: [AtomicU64; 3],
    resubscribed: AtomicU64,
    publish_errors: AtomicU64,
    publish_retries: AtomicU64,
    undelivered_publishes: AtomicU64,
    short_publishes: AtomicU64,
    last_loss: Mutex<Option<Instant>>,
    sweep_subscribed: AtomicU64,
    sweep_unsubscribed: AtomicU64,
    channels: AtomicI64,
    lost_channels: AtomicI64,
    queue_depth: AtomicI64,
    last_queue_full: Mutex<Option<Instant>>,
    health_check_failed: AtomicBool,
    /// Resubscriptions so far, and how many of them a later health check found in place.
    resubscribed_generation: AtomicU64,
    verified_generation: AtomicU64,
}

fn kind_index(kind: ChannelKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Metrics {
    /// Counts one published message.
    pub fn record_published(&self, kind: ChannelKind, bytes: usize) {
        let entry = &self.per_kind[kind_index(kind)];
        entry.published.fetch_add(1, Ordering::Relaxed);
        entry.published_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts one received message.
    pub fn record_received(&self, kind: ChannelKind, bytes: usize) {
        let entry = &self.per_kind[kind_index(kind)];
        entry.received.fetch_add(1, Ordering::Relaxed);
        entry.received_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Returns (messages, bytes) received on channels of `kind`.
    pub fn received(&self, kind: ChannelKind) -> (u64, u64) {
        let entry = &self.per_kind[kind_index(kind)];
        (
            entry.received.load(Ordering::Relaxed),
            entry.received_bytes.load(Ordering::Relaxed),
        )
    }

    /// Counts a dropped message.
    pub fn record_dropped(&self, reason: DropReason) {
        let index = DropReason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.dropped[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Returns the number of dropped messages over all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Counts a message dropped because the incoming queue was full and starts the readiness hold.
    pub fn record_queue_full(&self) {
        self.record_dropped(DropReason::QueueFull);
        let mut last = self.last_queue_full.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() > Duration::from_secs(1)) {
            tracing::warn!(
                hold_seconds = QUEUE_FULL_HOLD.as_secs(),
                "adapter incoming queue is full: dropping messages and reporting not ready"
            );
        }
        *last = Some(Instant::now());
    }

    /// Counts subscriptions found lost.
    pub fn record_lost(&self, reason: LossReason, count: usize) {
        let index = LossReason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.lost[index].fetch_add(count as u64, Ordering::Relaxed);
        *self.last_loss.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Returns whether this pod found a subscription lost within `window`, a sign that the
    /// cluster's topology changed and other pods may still be subscribing again.
    pub fn lost_within(&self, window: Duration) -> bool {
        self.last_loss
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < window)
    }

    /// Counts a publish that reached fewer subscribers than the previous one on its channel while
    /// subscriptions were being restored.
    pub fn record_short_publish(&self) {
        self.short_publishes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request that ended at its timeout with responses missing.
    pub fn record_partial(&self, kind: RequestKind) {
        let index = RequestKind::ALL.iter().position(|r| *r == kind).unwrap_or(0);
        self.partial[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a channel subscribed again after it was lost; readiness waits for a health check.
    pub fn record_resubscribed(&self) {
        self.resubscribed.fetch_add(1, Ordering::Relaxed);
        self.resubscribed_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Returns the resubscription count a health check starting now covers.
    pub fn resubscribed_generation(&self) -> u64 {
        self.resubscribed_generation.load(Ordering::SeqCst)
    }

    /// Records that a health check that started at `generation` found every subscription.
    pub fn record_verified(&self, generation: u64) {
        self.verified_generation.fetch_max(generation, Ordering::SeqCst);
    }

    /// Returns how many channels were subscribed again after a loss.
    pub fn resubscribed_total(&self) -> u64 {
        self.resubscribed.load(Ordering::Relaxed)
    }

    /// Counts a failed publish (the caller gets the error).
    pub fn record_publish_error(&self) {
        self.publish_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a publish sent again because it reached no subscriber of a channel this pod
    /// subscribes to.
    pub fn record_publish_retry(&self) {
        self.publish_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a publish that still reached no subscriber of a channel this pod subscribes to when
    /// its retries ran out; the caller got an error.
    pub fn record_undelivered_publish(&self) {
        self.undelivered_publishes.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns how many publishes reached no subscriber after their retries.
    pub fn undelivered_publishes_total(&self) -> u64 {
        self.undelivered_publishes.load(Ordering::Relaxed)
    }

    /// Counts a repair made by the periodic sweep.
    pub fn record_sweep(&self, subscribed: bool) {
        let counter = if subscribed {
            &self.sweep_subscribed
        } else {
            &self.sweep_unsubscribed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the number of subscribed channels and of channels waiting to be subscribed again.
    pub fn set_channels(&self, subscribed: usize, lost: usize) {
        self.channels.store(subscribed as i64, Ordering::Relaxed);
        self.lost_channels.store(lost as i64, Ordering::Relaxed);
    }

    /// Changes the incoming queue depth gauge.
    pub fn queue_depth_add(&self, delta: i64) {
        self.queue_depth.fetch_add(delta, Ordering::Relaxed);
    }

    /// Records whether the last health check could reach every primary.
    pub fn set_health_check_failed(&self, failed: bool) {
        self.health_check_failed.store(failed, Ordering::Relaxed);
    }

    /// Returns why the adapter is not ready, or `None` when it is.
    pub fn unhealthy_reason(&self) -> Option<String> {
        let lost = self.lost_channels.load(Ordering::Relaxed);
        if lost > 0 {
            return Some(format!("{lost} redis subscriptions are being restored"));
        }
        if self.health_check_failed.load(Ordering::Relaxed) {
            return Some("redis health check failed".to_owned());
        }
        // A resubscription can land on a connection that redis-rs replaces right after, so it
        // counts only once a health check saw it on the server.
        if self.resubscribed_generation.load(Ordering::SeqCst) > self.verified_generation.load(Ordering::SeqCst) {
            return Some("restored redis subscriptions are not verified yet".to_owned());
        }
        let last_full = *self.last_queue_full.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = last_full
            && at.elapsed() < QUEUE_FULL_HOLD
        {
            return Some("adapter incoming queue overflowed recently".to_owned());
        }
        None
    }

    /// Appends the metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let mut counter = |name: &str, help: &str, kind: &str, lines: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let per_kind = |read: fn(&PerKind) -> u64| -> Vec<(String, u64)> {
            KINDS
                .iter()
                .map(|kind| {
                    (
                        format!("{{channel=\"{}\"}}", kind.label()),
                        read(&self.per_kind[kind_index(*kind)]),
                    )
                })
                .collect()
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);

        counter(
            "socketfleet_adapter_published_total",
            "Messages this pod published to Redis, by channel kind.",
            "counter",
            per_kind(|k| k.published.load(Ordering::Relaxed)),
        );
        counter(
            "socketfleet_adapter_published_bytes_total",
            "Payload bytes this pod published to Redis, by channel kind.",
            "counter",
            per_kind(|k| k.published_bytes.load(Ordering::Relaxed)),
        );
        counter(
            "socketfleet_adapter_received_total",
            "Messages this pod read from Redis, by channel kind.",
            "counter",
            per_kind(|k| k.received.load(Ordering::Relaxed)),
        );
        counter(
            "socketfleet_adapter_received_bytes_total",
            "Payload bytes this pod read from Redis, by channel kind.",
            "counter",
            per_kind(|k| k.received_bytes.load(Ordering::Relaxed)),
        );
        counter(
            "socketfleet_adapter_dropped_total",
            "Messages the adapter dropped, by reason; any non-zero value is lost traffic.",
            "counter",
            DropReason::ALL
                .iter()
                .zip(&self.dropped)
                .map(|(reason, c)| (format!("{{reason=\"{}\"}}", reason.label()), load(c)))
                .collect(),
        );
        counter(
            "socketfleet_adapter_subscriptions_lost_total",
            "Redis subscriptions found lost, by how they were found.",
            "counter",
            LossReason::ALL
                .iter()
                .zip(&self.lost)
                .map(|(reason, c)| (format!("{{reason=\"{}\"}}", reason.label()), load(c)))
                .collect(),
        );
        counter(
            "socketfleet_adapter_resubscribed_total",
            "Redis channels subscribed again after a loss (one SSUBSCRIBE each).",
            "counter",
            vec![(String::new(), load(&self.resubscribed))],
        );
        counter(
            "socketfleet_adapter_partial_responses_total",
            "Requests to other pods that ended at the timeout with answers missing, by request.",
            "counter",
            RequestKind::ALL
                .iter()
                .zip(&self.partial)
                .map(|(kind, c)| (format!("{{request=\"{}\"}}", kind.label()), load(c)))
                .collect(),
        );
        counter(
            "socketfleet_adapter_publish_errors_total",
            "Publishes that failed; the caller got an error.",
            "counter",
            vec![(String::new(), load(&self.publish_errors))],
        );
        counter(
            "socketfleet_adapter_publish_retries_total",
            "Publishes sent again because Redis delivered them to no subscriber although this pod subscribes to the channel (its shard lost its subscriptions, e.g. in a failover).",
            "counter",
            vec![(String::new(), load(&self.publish_retries))],
        );
        counter(
            "socketfleet_adapter_undelivered_publishes_total",
            "Publishes that still reached no subscriber of a channel this pod subscribes to after their retries; the caller got an error.",
            "counter",
            vec![(String::new(), load(&self.undelivered_publishes))],
        );
        counter(
            "socketfleet_adapter_short_publishes_total",
            "Publishes within 30 s of a lost subscription that Redis delivered to fewer subscribers than the most seen on the channel in that time, so some pods likely missed them.",
            "counter",
            vec![(String::new(), load(&self.short_publishes))],
        );
        counter(
            "socketfleet_adapter_sweep_repairs_total",
            "Subscriptions the periodic room sweep added or removed because they disagreed with local rooms.",
            "counter",
            vec![
                ("{action=\"subscribed\"}".to_owned(), load(&self.sweep_subscribed)),
                ("{action=\"unsubscribed\"}".to_owned(), load(&self.sweep_unsubscribed)),
            ],
        );
        let gauge = |value: &AtomicI64| value.load(Ordering::Relaxed).max(0) as u64;
        counter(
            "redis_pubsub_channels",
            "Redis pub/sub channels this pod is subscribed to.",
            "gauge",
            vec![(String::new(), gauge(&self.channels))],
        );
        counter(
            "socketfleet_adapter_lost_channels",
            "Channels waiting to be subscribed again; readiness is false while this is above 0.",
            "gauge",
            vec![(String::new(), gauge(&self.lost_channels))],
        );
        counter(
            "socketfleet_adapter_queue_depth",
            "Messages read from Redis and not yet dispatched.",
            "gauge",
            vec![(String::new(), gauge(&self.queue_depth))],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_drop_reason_at_zero() {
        let metrics = Metrics::default();
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains("socketfleet_adapter_dropped_total{reason=\"queue_full\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("socketfleet_adapter_dropped_total{reason=\"decode_failed\"} 0"),
            "{out}"
        );
        assert!(out.contains("redis_pubsub_channels 0"), "{out}");
    }

    #[test]
    fn render_lists_publish_retries_and_undelivered() {
        let metrics = Metrics::default();
        metrics.record_publish_retry();
        metrics.record_publish_retry();
        metrics.record_undelivered_publish();
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("socketfleet_adapter_publish_retries_total 2"), "{out}");
        assert!(
            out.contains("socketfleet_adapter_undelivered_publishes_total 1"),
            "{out}"
        );
        assert_eq!(metrics.undelivered_publishes_total(), 1);
    }

    #[test]
    fn queue_full_turns_readiness_false() {
        let metrics = Metrics::default();
        assert_eq!(metrics.unhealthy_reason(), None);
        metrics.record_queue_full();
        assert_eq!(metrics.dropped_total(), 1);
        assert!(metrics.unhealthy_reason().is_some());
    }

    #[test]
    fn resubscriptions_need_a_health_check() {
        let metrics = Metrics::default();
        let generation = metrics.resubscribed_generation();
        metrics.record_resubscribed();
        assert!(metrics.unhealthy_reason().unwrap().contains("not verified"));
        metrics.record_verified(generation);
        assert!(
            metrics.unhealthy_reason().is_some(),
            "a check that started before does not count"
        );
        metrics.record_verified(metrics.resubscribed_generation());
        assert_eq!(metrics.unhealthy_reason(), None);
    }

    #[test]
    fn lost_channels_turn_readiness_false() {
        let metrics = Metrics::default();
        metrics.set_channels(3, 1);
        assert!(metrics.unhealthy_reason().unwrap().contains("1 redis subscriptions"));
        metrics.set_channels(4, 0);
        assert_eq!(metrics.unhealthy_reason(), None);
    }
}
