//! Room-sharded Redis adapter: carries broadcasts and requests between the pods of a fleet.
//!
//! Each room with local members has its own channel (SSUBSCRIBE on Redis Cluster, SUBSCRIBE on a
//! standalone server). A pod subscribes when the first local socket joins the room and
//! unsubscribes when the last one leaves, so it reads only the traffic of rooms it serves. The
//! room channels spread over the cluster's shards (see [`channel`] for the names). Sockets join their own
//! id room through the adapter, so an emit to a socket id reaches the socket's pod.
//!
//! Besides room channels, every pod subscribes per namespace to a namespace channel (requests for
//! all pods: namespace-wide broadcasts, fetch sockets, rooms, heartbeats), a pod channel (requests
//! for this pod: operations on a remote socket handle) and a response channel. A request that
//! waits for responses waits for as many pods as Redis reports as receivers of the publish.
//! SPUBLISH returns the subscriber count of the shard, the same count as PUBSUB SHARDNUMSUB.
//!
//! Parts:
//! - [`channel`]: channel names and slots.
//! - `driver`: the Redis connection (cluster or standalone) and the bounded incoming queue.
//! - `subscriptions`: the channel set this pod wants, re-subscribed one channel per command.
//! - `core`: socketioxide's `CoreAdapter` for one namespace.
//! - `ack`: collecting answers of other pods, with partial results at the timeout.
//! - [`metrics`]: counters, gauges and the readiness reason.
//!
//! Delivery policy: a message read from Redis goes through one bounded queue (see
//! [`AdapterConfig::queue_capacity`]). When it is full the message is dropped, counted in
//! `socketfleet_adapter_dropped_total{reason="queue_full"}`, logged, and readiness is false for
//! [`metrics::QUEUE_FULL_HOLD`], so the Service sends new sockets elsewhere. A lost subscription
//! (server-sent SUNSUBSCRIBE, closed connection, or a health check that counts fewer subscriptions
//! than expected) is counted, subscribed again, and keeps readiness false until it is back.
//! A publish to a room or namespace channel this pod subscribes to that reaches no subscriber (the
//! shard lost its subscriptions) waits for this pod's subscription, is sent again until the
//! request timeout, and is then counted and returned to the caller as an error. A message that
//! reached some pods while others were still subscribing again is lost for those; within 30 s of
//! a lost subscription such a publish is counted as short when it reached fewer subscribers than
//! the channel's recent maximum.

mod ack;
pub mod channel;
mod core;
mod driver;
pub mod metrics;
mod subscriptions;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use tokio::sync::mpsc;

pub use ack::PartialResponse;
pub use core::{InitFuture, RedisAdapter};
pub use driver::{ConnectError, ConnectOptions, Topology};
pub(crate) use driver::{connect_error, tls_certificates};
pub use metrics::RequestKind;

use channel::{ChannelKind, ChannelNames, key_slot};
use driver::{Driver, Incoming, SubscriptionReading};
use metrics::{LossReason, Metrics};
use subscriptions::Subscriptions;

/// Errors of the Redis adapter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Redis command failed.
    #[error("redis command failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// The first connection to Redis failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A publish reached no subscriber of a channel this pod subscribes to, even after retries:
    /// Redis lost the subscriptions of the channel's shard (a failover) and they are not back.
    #[error("publish to {channel} reached no subscriber because redis lost the shard's subscriptions; retry later")]
    NotDelivered { channel: String },
    /// A request could not be encoded.
    #[error("could not encode a request for other pods: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The channel prefix contains characters other than `[a-z0-9-]`.
    #[error("invalid channel prefix {0:?}: use lowercase letters, digits and '-'")]
    InvalidPrefix(String),
    /// No Redis URL was given.
    #[error("missing redis URL")]
    MissingUrl,
}

impl From<Error> for socketioxide_core::adapter::errors::AdapterError {
    fn from(err: Error) -> Self {
        Self(Box::new(err))
    }
}

/// Settings of the adapter; [`Default`] gives the values below.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    /// First part of every channel name, `[a-z0-9-]`. Fleets sharing one Redis need distinct
    /// prefixes only if they serve the same namespace path. Default `socketfleet`.
    pub prefix: String,
    /// How long fetch sockets, rooms and the count phase of a broadcast with ack wait for other
    /// pods. Default 5 s, as socket.io's Redis adapter.
    pub request_timeout: Duration,
    /// Messages read from Redis and not yet dispatched; beyond this they are dropped and counted.
    /// Default 65,536, about 64 MiB at 1 KiB per message.
    pub queue_capacity: usize,
    /// Period of the subscription health check (CLUSTER SLOTS, then CLIENT INFO per primary);
    /// it also runs 1 s after a channel was subscribed again. Default 2 s.
    pub health_interval: Duration,
    /// Period of the sweep that makes subscriptions agree with local rooms, and of heartbeats.
    /// A pod that sent a heartbeat within three periods is named when it misses a response.
    /// Default 5 s.
    pub heartbeat_interval: Duration,
    /// How long a join of a socket that is not connected is kept before it is removed (a join in
    /// a connect middleware lands before the socket is connected). Default 250 ms.
    pub join_grace: Duration,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            prefix: "socketfleet".to_owned(),
            request_timeout: Duration::from_secs(5),
            queue_capacity: 65_536,
            health_interval: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(5),
            join_grace: Duration::from_millis(250),
        }
    }
}

/// Interface of a namespace's adapter for the dispatcher and the sweep.
trait NamespaceHandler: Send + Sync {
    fn on_message(self: Arc<Self>, kind: ChannelKind, channel: &str, payload: Vec<u8>);
    fn sweep(self: Arc<Self>) -> futures::future::BoxFuture<'static, ()>;
    fn peers(&self) -> Vec<socketioxide_core::Uid>;
}

impl<E: socketioxide_core::adapter::SocketEmitter> NamespaceHandler for RedisAdapter<E> {
    fn on_message(self: Arc<Self>, kind: ChannelKind, channel: &str, payload: Vec<u8>) {
        self.handle_message(kind, channel, payload);
    }

    fn sweep(self: Arc<Self>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { RedisAdapter::sweep(&self).await })
    }

    fn peers(&self) -> Vec<socketioxide_core::Uid> {
        self.live_peers()
    }
}

/// State shared by the namespaces' adapters: one Redis connection and its channel set.
struct Shared {
    driver: Arc<Driver>,
    subscriptions: Arc<Subscriptions>,
    metrics: Arc<Metrics>,
    partials: Arc<ack::PartialLog>,
    names: ChannelNames,
    config: AdapterConfig,
    namespaces: RwLock<HashMap<String, Weak<dyn NamespaceHandler>>>,
}

impl Shared {
    fn register(&self, namespace: &str, handler: Weak<dyn NamespaceHandler>) {
        self.namespaces
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(namespace.to_owned(), handler);
    }

    fn unregister(&self, namespace: &str) {
        self.namespaces
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(namespace);
    }

    fn handler(&self, namespace: &str) -> Option<Arc<dyn NamespaceHandler>> {
        self.namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .and_then(Weak::upgrade)
    }

    fn handlers(&self) -> Vec<Arc<dyn NamespaceHandler>> {
        self.namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

/// The adapter state passed to `SocketIoBuilder::with_adapter::<RedisAdapter<_>>(state)`; it also
/// reports health and metrics to the gateway.
#[derive(Clone)]
pub struct RedisAdapterState {
    shared: Arc<Shared>,
}

impl RedisAdapterState {
    /// Connects to Redis and starts the dispatcher, the health check and the room sweep.
    pub async fn connect(options: ConnectOptions, config: AdapterConfig) -> Result<Self, Error> {
        let names = ChannelNames::new(&config.prefix).ok_or_else(|| Error::InvalidPrefix(config.prefix.clone()))?;
        let metrics = Arc::new(Metrics::default());
        let (driver, incoming) = Driver::connect(&options, config.queue_capacity, metrics.clone()).await?;
        let driver = Arc::new(driver);
        let subscriptions = Subscriptions::new(driver.clone(), metrics.clone());
        let shared = Arc::new(Shared {
            driver,
            subscriptions,
            metrics,
            partials: Arc::default(),
            names,
            config,
            namespaces: RwLock::new(HashMap::new()),
        });

        tokio::spawn(dispatch_loop(Arc::downgrade(&shared), incoming));
        tokio::spawn(health_loop(Arc::downgrade(&shared)));
        tokio::spawn(sweep_loop(Arc::downgrade(&shared)));
        tracing::info!(topology = ?options.topology, "connected to redis");
        Ok(Self { shared })
    }

    /// Counters and gauges of this adapter.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Returns the latest requests that ended at the timeout with responses missing.
    pub fn partial_responses(&self) -> Vec<PartialResponse> {
        self.shared.partials.entries()
    }

    /// Other pods serving namespace `path` that were heard from within three heartbeat intervals.
    pub fn peers(&self, path: &str) -> Vec<socketioxide_core::Uid> {
        self.shared
            .handler(&channel::escape(path))
            .map(|handler| handler.peers())
            .unwrap_or_default()
    }

    /// Runs the room sweep of every namespace now (it also runs every heartbeat interval).
    pub async fn sweep_now(&self) {
        for handler in self.shared.handlers() {
            handler.sweep().await;
        }
    }
}

impl crate::status::AdapterStatus for RedisAdapterState {
    fn healthy(&self) -> bool {
        self.shared.metrics.unhealthy_reason().is_none()
    }

    fn unhealthy_reason(&self) -> Option<String> {
        self.shared.metrics.unhealthy_reason()
    }

    fn render_metrics(&self, out: &mut String) {
        self.shared.metrics.render(out);
    }
}

impl crate::server::GatewayAdapter for RedisAdapter<crate::engine::namespace::Emitter> {
    fn namespace_ready(
        init: InitFuture,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> {
        Box::pin(async move { init.await.map_err(|err| err.to_string()) })
    }
}

// ==== Background tasks ====

async fn dispatch_loop(shared: Weak<Shared>, mut incoming: mpsc::Receiver<Incoming>) {
    while let Some(item) = incoming.recv().await {
        let Some(shared) = shared.upgrade() else { return };
        shared.metrics.queue_depth_add(-1);
        match item {
            Incoming::Message { channel, payload } => {
                let Some(parsed) = shared.names.parse(&channel) else {
                    tracing::debug!(channel, "message on a channel of another prefix, ignored");
                    continue;
                };
                shared.metrics.record_received(parsed.kind, payload.len());
                match shared.handler(parsed.namespace) {
                    Some(handler) => handler.on_message(parsed.kind, &channel, payload),
                    None => tracing::debug!(channel, "message for a namespace this pod does not serve"),
                }
            }
            Incoming::Unsubscribed { channel } => {
                // Our own unsubscribes remove the channel first, so a wanted channel here was
                // unsubscribed by the server (its slot moved to another shard).
                shared.subscriptions.mark_lost(&channel, LossReason::ServerUnsubscribe);
            }
            Incoming::Disconnected => shared.subscriptions.mark_all_lost(LossReason::Disconnection),
        }
    }
    tracing::debug!("redis push stream ended, dispatcher stopped");
}

async fn health_loop(shared: Weak<Shared>) {
    let interval = match shared.upgrade() {
        Some(shared) => shared.config.health_interval,
        None => return,
    };
    let recheck = match shared.upgrade() {
        Some(shared) => shared.subscriptions.clone(),
        None => return,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = recheck.resubscribed.notified() => {
                // Let the wave of resubscriptions and redis-rs' slot refreshes settle first.
                tokio::time::sleep(RECHECK_DELAY).await;
            }
        }
        let Some(shared) = shared.upgrade() else { return };
        check_subscriptions(&shared).await;
    }
}

/// Delay between a resubscription and the health check that verifies it.
const RECHECK_DELAY: Duration = Duration::from_secs(1);

/// Compares, per primary, the subscriptions Redis has for this pod with the ones it should have,
/// and marks the channels of a primary with fewer lost.
async fn check_subscriptions(shared: &Shared) {
    let generation = shared.metrics.resubscribed_generation();
    let before: HashSet<String> = shared.subscriptions.subscribed().into_iter().collect();
    let nodes = match shared.driver.node_subscriptions().await {
        Ok(nodes) => nodes,
        Err(err) => {
            tracing::warn!(error = %err, "redis health check failed");
            shared.metrics.set_health_check_failed(true);
            return;
        }
    };
    // A channel is expected only if it was subscribed both before and after the reading, so a
    // subscribe or unsubscribe racing the check is not taken for a loss.
    let after: HashSet<String> = shared.subscriptions.subscribed().into_iter().collect();
    let stable: Vec<&String> = before.intersection(&after).collect();

    let mut failed = false;
    let mut missing = false;
    let mut unverified = false;
    for node in nodes {
        let on_node: Vec<String> = match shared.driver.topology() {
            Topology::Standalone => stable.iter().map(|c| (*c).clone()).collect(),
            Topology::Cluster => stable
                .iter()
                .filter(|c| {
                    let slot = key_slot(c.as_bytes());
                    node.slot_ranges
                        .iter()
                        .any(|(start, end)| (*start..=*end).contains(&slot))
                })
                .map(|c| (*c).clone())
                .collect(),
        };
        match node.subscribed {
            SubscriptionReading::Failed => failed = true,
            SubscriptionReading::NotRouted => unverified = true,
            SubscriptionReading::Count(count) if count < on_node.len() => {
                tracing::warn!(
                    expected = on_node.len(),
                    found = count,
                    "redis has fewer subscriptions for this pod than expected"
                );
                shared.subscriptions.mark_many_lost(on_node, LossReason::HealthCheck);
                missing = true;
            }
            SubscriptionReading::Count(_) => {}
        }
    }
    shared.metrics.set_health_check_failed(failed);
    if !failed && !missing && !unverified {
        shared.metrics.record_verified(generation);
    }
}

async fn sweep_loop(shared: Weak<Shared>) {
    let interval = match shared.upgrade() {
        Some(shared) => shared.config.heartbeat_interval,
        None => return,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        for handler in shared.handlers() {
            handler.sweep().await;
        }
    }
}
