//! The Redis connection of the adapter: Redis Cluster with sharded pub/sub, or one standalone server
//! with plain pub/sub, behind the same calls.

use std::{sync::Arc, time::Duration};

use redis::{
    AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, RedisResult, TlsCertificates, Value,
    aio::{AsyncPushSender, MultiplexedConnection, SendError},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr},
};
use tokio::sync::{Mutex, mpsc};

use super::{Error, channel::key_slot, metrics::Metrics};

/// Kind of Redis deployment behind the URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Redis Cluster: SSUBSCRIBE, SPUBLISH and PUBSUB SHARDNUMSUB.
    Cluster,
    /// One server: SUBSCRIBE, PUBLISH and PUBSUB NUMSUB.
    Standalone,
}

/// Redis endpoints and credentials of the adapter.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `redis://` or `rediss://` URLs; for a cluster any subset of the nodes.
    pub urls: Vec<String>,
    /// Kind of deployment.
    pub topology: Topology,
    /// ACL user name, if not given in the URL.
    pub username: Option<String>,
    /// Password, if not given in the URL.
    pub password: Option<String>,
    /// PEM CA certificates trusted for `rediss://` URLs in place of the built-in webpki roots.
    /// NOTE: no client certificate is sent, so a server with `tls-auth-clients yes` (Redis'
    /// default once TLS is on) rejects the connection with [`ConnectError::ClientCertificate`].
    pub ca_certificates: Option<Vec<u8>>,
}

/// Reasons a connection to Redis could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TLS handshake reached the server's certificate and rustls rejected it: an unknown
    /// issuer, another host name, or an expired certificate.
    #[error("the redis server's TLS certificate was rejected ({reason}); {hint}")]
    Certificate { reason: String, hint: &'static str },
    /// The server requires a client certificate, and the gateway has none to send.
    #[error(
        "the redis server requires a TLS client certificate ({reason}), and the gateway sends none; \
         set tls-auth-clients to no or optional on the redis servers"
    )]
    ClientCertificate { reason: String },
    /// The server's reply was not TLS, or it closed the connection during the handshake.
    #[error(
        "TLS handshake with redis failed ({reason}); check that the port in --redis-url is the \
         server's tls-port, or use redis:// for a server without TLS"
    )]
    Handshake { reason: String },
    /// A rediss:// URL names a port where Redis speaks plain RESP. Redis waits for a line end
    /// that a TLS ClientHello need not contain, so the handshake times out instead of failing.
    #[error(
        "redis at {address} speaks plain text, not TLS, so the TLS handshake timed out; use the \
         server's tls-port in --redis-url, or redis:// if the server has no TLS"
    )]
    PlainText { address: String },
    /// Any other failure, such as a refused connection, a timeout or a rejected password.
    #[error("failed to connect to redis: {0}")]
    Redis(redis::RedisError),
}

/// A push from Redis, reduced to what the dispatcher handles.
#[derive(Debug)]
pub enum Incoming {
    /// A message on a subscribed channel.
    Message { channel: String, payload: Vec<u8> },
    /// The server ended a subscription (a slot moved, or a reply to our own unsubscribe).
    Unsubscribed { channel: String },
    /// A connection to a node closed; its subscriptions are gone.
    Disconnected,
}

/// The bounded queue between the Redis connections and the dispatcher.
///
/// Redis calls the sender from its read loop, which must not block, so a full queue drops the
/// message. The drop is counted as `queue_full` and turns readiness false for a while (see
/// [`Metrics::record_queue_full`]).
struct PushQueue {
    tx: mpsc::Sender<Incoming>,
    metrics: Arc<Metrics>,
}

impl AsyncPushSender for PushQueue {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        let Some(incoming) = to_incoming(info) else {
            return Ok(());
        };
        match self.tx.try_send(incoming) {
            Ok(()) => {
                self.metrics.queue_depth_add(1);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(dropped)) => {
                self.metrics.record_queue_full();
                if !matches!(dropped, Incoming::Message { .. }) {
                    // A dropped SUNSUBSCRIBE or disconnection would hide a lost subscription; the
                    // health check finds it on its next run.
                    tracing::warn!(push = ?dropped, "adapter queue full, dropped a subscription push");
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError),
        }
    }
}

fn to_incoming(info: PushInfo) -> Option<Incoming> {
    let mut data = info.data.into_iter();
    match info.kind {
        PushKind::Message | PushKind::SMessage => {
            let channel = value_to_string(data.next()?)?;
            let payload = match data.next()? {
                Value::BulkString(bytes) => bytes,
                other => {
                    tracing::warn!(?other, "pub/sub message without a bulk string payload");
                    return None;
                }
            };
            Some(Incoming::Message { channel, payload })
        }
        PushKind::Unsubscribe | PushKind::SUnsubscribe => {
            let channel = value_to_string(data.next()?)?;
            Some(Incoming::Unsubscribed { channel })
        }
        PushKind::Disconnection => Some(Incoming::Disconnected),
        _ => None,
    }
}

fn value_to_string(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

/// A connection to Redis that subscribes, publishes and counts subscribers.
pub enum Driver {
    /// Redis Cluster through redis-rs' cluster connection (one multiplexed connection per node).
    Cluster(ClusterConnection),
    /// One server; the connection is replaced after it breaks. Boxed because it is the larger
    /// variant by far, and the enum is moved while the adapter starts.
    Standalone(Box<Standalone>),
}

/// The standalone connection and what is needed to open it again.
pub struct Standalone {
    client: Client,
    config: AsyncConnectionConfig,
    connection: Mutex<Option<MultiplexedConnection>>,
}

/// Subscription count of one connection, as the health check compares it.
#[derive(Debug)]
pub struct NodeSubscriptions {
    /// Slot ranges the primary serves; empty for a standalone server.
    pub slot_ranges: Vec<(u16, u16)>,
    /// Channel subscriptions the server has for this pod's connection.
    pub subscribed: SubscriptionReading,
}

/// Result of reading one node's subscription count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionReading {
    /// `ssub` (cluster) or `sub` (standalone) of CLIENT INFO.
    Count(usize),
    /// The node did not reply, or its reply had no count.
    Failed,
    /// Every attempt reached another node because redis-rs' slot map is stale, so nothing is known.
    NotRouted,
}

const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound of one adapter command, including redis-rs' retries and redirections. No adapter
/// call waits forever on a cluster that lost its nodes, because the caller gets an error instead.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

async fn bounded<T>(command: impl std::future::Future<Output = RedisResult<T>>) -> RedisResult<T> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(result) => result,
        Err(_elapsed) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "redis command timed out after 10 s",
        ))),
    }
}

/// Installs rustls' crypto provider and returns the TLS settings for `ca_certificates`, or `None`
/// to keep redis-rs' defaults: TLS with the webpki roots for `rediss://` URLs, plain TCP for
/// `redis://` URLs.
pub(crate) fn tls_certificates(ca_certificates: Option<&[u8]>) -> Option<TlsCertificates> {
    install_crypto_provider();
    ca_certificates.map(|pem| TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.to_vec()),
    })
}

/// Installs ring as rustls' process-wide crypto provider, which redis-rs' TLS connections use.
/// rustls would pick it by itself while ring is its only provider compiled in; installing it
/// keeps TLS working if another dependency ever adds aws-lc-rs.
fn install_crypto_provider() {
    // An error means a provider is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Turns a failed connection attempt into a [`ConnectError`], naming the TLS cause when there is
/// one. For a cluster redis-rs keeps only the text of the node's error, so the first seed is
/// connected to again on its own to find the cause.
pub(crate) async fn connect_error(
    err: redis::RedisError,
    topology: Topology,
    urls: &[String],
    tls: Option<&TlsCertificates>,
) -> ConnectError {
    let tls_url = urls.first().filter(|url| url.starts_with("rediss://"));
    let Some(url) = tls_url else {
        return ConnectError::Redis(err);
    };
    if let Some(cause) = tls_cause(&err, tls.is_some()) {
        return cause;
    }
    // Checked before the TLS probe because it takes one round trip, while a TLS handshake with
    // a plain-text server lasts until the connection timeout.
    if let Some(address) = speaks_plain_text(url).await {
        return ConnectError::PlainText { address };
    }
    if topology == Topology::Cluster
        && let Some(cause) = probe_tls(url, tls).await
    {
        return cause;
    }
    ConnectError::Redis(err)
}

/// Sends an inline PING without TLS to the host and port of `url` and returns the address if a
/// RESP reply (`+PONG`, or an error such as `-NOAUTH`) comes back within the connection timeout.
async fn speaks_plain_text(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let info = redis::IntoConnectionInfo::into_connection_info(url).ok()?;
    let redis::ConnectionAddr::TcpTls { host, port, .. } = info.addr() else {
        return None;
    };
    let address = format!("{host}:{port}");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await.ok()?;
        Some(first[0])
    };
    match tokio::time::timeout(CONNECTION_TIMEOUT, exchange).await {
        Ok(Some(b'+' | b'-')) => Some(address),
        _ => None,
    }
}

/// Opens one standalone connection to `url` and returns the TLS cause if it fails with one.
async fn probe_tls(url: &str, tls: Option<&TlsCertificates>) -> Option<ConnectError> {
    let client = match tls {
        Some(certificates) => Client::build_with_tls(url, certificates.clone()),
        None => Client::open(url),
    }
    .ok()?;
    let config = AsyncConnectionConfig::new().set_connection_timeout(Some(CONNECTION_TIMEOUT));
    let err = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .err()?;
    tls_cause(&err, tls.is_some())
}

/// Finds a rustls error in `err`'s causes and describes it.
fn tls_cause(err: &redis::RedisError, ca_given: bool) -> Option<ConnectError> {
    let rustls_error = find_rustls_error(err)?;
    let reason = rustls_error.to_string();
    Some(match rustls_error {
        rustls::Error::InvalidCertificate(_) => ConnectError::Certificate {
            reason,
            hint: if ca_given {
                "check that --redis-ca-file contains the CA that signed the server's certificate, \
                 and that the certificate names the host of --redis-url"
            } else {
                "the built-in webpki roots do not trust it; set --redis-ca-file to the PEM file of \
                 the CA that signed it"
            },
        },
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            ConnectError::ClientCertificate { reason }
        }
        _ => ConnectError::Handshake { reason },
    })
}

fn find_rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        // redis-rs keeps its cause in an Arc, and an io::Error returns its payload's source rather
        // than the payload, so both are opened here instead of following `source`.
        current = if let Some(shared) = error.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
            Some(&**shared)
        } else if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(payload) = io.get_ref()
        {
            Some(payload)
        } else {
            error.source()
        };
    }
    None
}

impl Driver {
    /// Connects and returns the driver and the receiver of the pushes.
    pub async fn connect(
        options: &ConnectOptions,
        queue_capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, mpsc::Receiver<Incoming>), Error> {
        let (tx, rx) = mpsc::channel(queue_capacity);
        let queue = PushQueue { tx, metrics };
        let tls = tls_certificates(options.ca_certificates.as_deref());
        let driver = match options.topology {
            Topology::Cluster => {
                let mut builder = ClusterClientBuilder::new(options.urls.clone())
                    .use_protocol(ProtocolVersion::RESP3)
                    .push_sender(queue)
                    .connection_timeout(CONNECTION_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT);
                if let Some(username) = &options.username {
                    builder = builder.username(username);
                }
                if let Some(password) = &options.password {
                    builder = builder.password(password);
                }
                if let Some(certificates) = tls.clone() {
                    builder = builder.certs(certificates);
                }
                let client = builder.build()?;
                match client.get_async_connection().await {
                    Ok(connection) => Self::Cluster(connection),
                    Err(err) => {
                        return Err(connect_error(err, options.topology, &options.urls, tls.as_ref())
                            .await
                            .into());
                    }
                }
            }
            Topology::Standalone => {
                let url = options.urls.first().ok_or(Error::MissingUrl)?;
                let mut info: redis::ConnectionInfo = url.as_str().parse()?;
                let mut redis_settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
                if let Some(username) = &options.username {
                    redis_settings = redis_settings.set_username(username);
                }
                if let Some(password) = &options.password {
                    redis_settings = redis_settings.set_password(password);
                }
                info = info.set_redis_settings(redis_settings);
                let client = match tls.clone() {
                    Some(certificates) => Client::build_with_tls(info, certificates)?,
                    None => Client::open(info)?,
                };
                let config = AsyncConnectionConfig::new()
                    .set_push_sender(queue)
                    .set_connection_timeout(Some(CONNECTION_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                let connection = match client.get_multiplexed_async_connection_with_config(&config).await {
                    Ok(connection) => connection,
                    Err(err) => {
                        return Err(connect_error(err, options.topology, &options.urls, tls.as_ref())
                            .await
                            .into());
                    }
                };
                Self::Standalone(Box::new(Standalone {
                    client,
                    config,
                    connection: Mutex::new(Some(connection)),
                }))
            }
        };
        Ok((driver, rx))
    }

    /// Returns the kind of deployment.
    pub fn topology(&self) -> Topology {
        match self {
            Self::Cluster(_) => Topology::Cluster,
            Self::Standalone(_) => Topology::Standalone,
        }
    }

    /// Subscribes to one channel and returns once the server confirmed it.
    ///
    /// Always one channel per command: Redis rejects an SSUBSCRIBE whose channels hash to
    /// different slots (CROSSSLOT).
    pub async fn subscribe(&self, channel: &str) -> RedisResult<()> {
        bounded(self.subscribe_unbounded(channel)).await
    }

    async fn subscribe_unbounded(&self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Cluster(connection) => connection.clone().ssubscribe(channel).await,
            Self::Standalone(standalone) => {
                let mut connection = standalone.connection().await?;
                let result = connection.subscribe(channel).await;
                standalone.forget_if_broken(&result).await;
                result
            }
        }
    }

    /// Unsubscribes from one channel.
    pub async fn unsubscribe(&self, channel: &str) -> RedisResult<()> {
        bounded(self.unsubscribe_unbounded(channel)).await
    }

    async fn unsubscribe_unbounded(&self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Cluster(connection) => connection.clone().sunsubscribe(channel).await,
            Self::Standalone(standalone) => {
                let mut connection = standalone.connection().await?;
                let result = connection.unsubscribe(channel).await;
                standalone.forget_if_broken(&result).await;
                result
            }
        }
    }

    /// Publishes `payload` and returns how many subscriber connections received it.
    ///
    /// In a cluster SPUBLISH counts the subscribers of the shard's primary, where this adapter
    /// subscribes, so the count equals PUBSUB SHARDNUMSUB at the moment of publishing.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> RedisResult<usize> {
        bounded(self.publish_unbounded(channel, payload)).await
    }

    async fn publish_unbounded(&self, channel: &str, payload: &[u8]) -> RedisResult<usize> {
        match self {
            Self::Cluster(connection) => {
                redis::cmd("SPUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(&mut connection.clone())
                    .await
            }
            Self::Standalone(standalone) => {
                let mut connection = standalone.connection().await?;
                let result = redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(&mut connection)
                    .await;
                standalone.forget_if_broken(&result).await;
                result
            }
        }
    }

    /// Returns how many connections subscribe to `channel` (PUBSUB SHARDNUMSUB or NUMSUB).
    pub async fn subscriber_count(&self, channel: &str) -> RedisResult<usize> {
        bounded(self.subscriber_count_unbounded(channel)).await
    }

    async fn subscriber_count_unbounded(&self, channel: &str) -> RedisResult<usize> {
        let counts: Vec<(String, usize)> = match self {
            Self::Cluster(connection) => {
                redis::cmd("PUBSUB")
                    .arg("SHARDNUMSUB")
                    .arg(channel)
                    .query_async(&mut connection.clone())
                    .await?
            }
            Self::Standalone(standalone) => {
                let mut connection = standalone.connection().await?;
                let result = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(channel)
                    .query_async(&mut connection)
                    .await;
                standalone.forget_if_broken(&result).await;
                result?
            }
        };
        Ok(counts.into_iter().map(|(_, count)| count).sum())
    }

    /// Reads, per primary, how many channels this pod's connection subscribes to there.
    ///
    /// A primary that does not reply is listed with [`SubscriptionReading::Failed`].
    pub async fn node_subscriptions(&self) -> RedisResult<Vec<NodeSubscriptions>> {
        bounded(self.node_subscriptions_unbounded()).await
    }

    async fn node_subscriptions_unbounded(&self) -> RedisResult<Vec<NodeSubscriptions>> {
        match self {
            Self::Cluster(connection) => {
                let mut connection = connection.clone();
                let primaries = primaries_with_slots(&mut connection).await?;
                let mut nodes = Vec::with_capacity(primaries.len());
                for primary in primaries {
                    let subscribed = primary_subscriptions(&mut connection, &primary).await;
                    nodes.push(NodeSubscriptions {
                        slot_ranges: primary.slot_ranges,
                        subscribed,
                    });
                }
                Ok(nodes)
            }
            Self::Standalone(standalone) => {
                let mut connection = standalone.connection().await?;
                let result: RedisResult<Value> = redis::cmd("CLIENT").arg("INFO").query_async(&mut connection).await;
                standalone.forget_if_broken(&result).await;
                let subscribed = match client_info_field(&result?, "sub") {
                    Some(count) => SubscriptionReading::Count(count),
                    None => SubscriptionReading::Failed,
                };
                Ok(vec![NodeSubscriptions {
                    slot_ranges: Vec::new(),
                    subscribed,
                }])
            }
        }
    }
}

impl Standalone {
    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        tracing::info!("reconnected to standalone redis");
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Drops a connection that failed with an I/O error, so the next call opens a new one.
    async fn forget_if_broken<T>(&self, result: &RedisResult<T>) {
        if let Err(err) = result
            && (err.is_io_error() || err.is_connection_dropped() || err.is_unrecoverable_error())
        {
            self.connection.lock().await.take();
        }
    }
}

/// A primary as CLUSTER SLOTS lists it.
#[derive(Debug, PartialEq)]
struct Primary {
    id: String,
    address: String,
    slot_ranges: Vec<(u16, u16)>,
}

/// Attempts to reach a primary through redis-rs' slot routing in one health check.
const PRIMARY_ATTEMPTS: usize = 8;

/// Reads `ssub` of this pod's connection to `primary`.
///
/// redis-rs routes by its own slot map, which it refreshes only on MOVED or a connection error.
/// After a failover the map can still name the dead primary, and redis-rs 1.8 then sends a
/// primary-routed command to a random connected node (`get_connection`), so a plain CLIENT INFO
/// could read another node's connection. The reply is used only if CLUSTER MYID, sent in the same
/// pipeline, names the primary from CLUSTER SLOTS. Otherwise a key read in the primary's slots
/// gets a MOVED reply, which makes redis-rs refresh its slot map, and the pipeline is sent again.
/// Routing by address is no way out: a request to a node without a connection makes redis-rs
/// reconnect to every node, which drops every subscription.
async fn primary_subscriptions(connection: &mut ClusterConnection, primary: &Primary) -> SubscriptionReading {
    let first_slot = primary.slot_ranges.first().map_or(0, |range| range.0);
    let route = SingleNodeRoutingInfo::SpecificNode(Route::new(first_slot, SlotAddr::Master));
    let mut pipeline = redis::pipe();
    pipeline.cmd("CLUSTER").arg("MYID").cmd("CLIENT").arg("INFO");
    for _ in 0..PRIMARY_ATTEMPTS {
        let replies = match connection.route_pipeline(pipeline.clone(), 0, 2, route.clone()).await {
            Ok(replies) => replies,
            Err(err) => {
                tracing::warn!(node = %primary.address, error = %err, "health check: CLIENT INFO failed on a primary");
                return SubscriptionReading::Failed;
            }
        };
        let (Some(id), Some(info)) = (replies.first(), replies.get(1)) else {
            return SubscriptionReading::Failed;
        };
        if value_text(id) == primary.id {
            return client_info_field(info, "ssub").map_or(SubscriptionReading::Failed, SubscriptionReading::Count);
        }
        tracing::debug!(
            node = %primary.address,
            replied = %value_text(id),
            "health check: another node replied to a primary-routed command, redis-rs' slot map is stale"
        );
        refresh_slot_map(connection, primary).await;
    }
    tracing::info!(
        node = %primary.address,
        attempts = PRIMARY_ATTEMPTS,
        "health check: could not reach a primary through redis-rs' stale slot map, skipped it"
    );
    SubscriptionReading::NotRouted
}

/// Sends EXISTS on a key in `primary`'s slots, so that a stale slot map gets the MOVED reply that
/// makes redis-rs refresh it. The key is never written.
///
/// NOTE: an ACL user without read access to keys gets NOPERM instead of MOVED, and the health
/// check then skips this primary until something else refreshes the map.
async fn refresh_slot_map(connection: &mut ClusterConnection, primary: &Primary) {
    let Some(key) = probe_key(&primary.slot_ranges) else {
        return;
    };
    let result: RedisResult<Value> = redis::cmd("EXISTS").arg(&key).query_async(connection).await;
    if let Err(err) = result {
        tracing::debug!(key, error = %err, "health check: slot map probe failed");
    }
}

/// Returns a key whose slot lies in one of `slot_ranges`.
fn probe_key(slot_ranges: &[(u16, u16)]) -> Option<String> {
    // A range of n slots is hit by about one key in 16384 / n, so a few thousand tries cover even
    // a primary that owns a single slot with high probability.
    (0..200_000u32)
        .map(|i| format!("socketfleet:slot-probe:{i}"))
        .find(|key| {
            let slot = key_slot(key.as_bytes());
            slot_ranges.iter().any(|(start, end)| (*start..=*end).contains(&slot))
        })
}

/// Reads CLUSTER SLOTS and returns each primary with its slot ranges.
async fn primaries_with_slots(connection: &mut ClusterConnection) -> RedisResult<Vec<Primary>> {
    let value: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(connection).await?;
    Ok(parse_primaries(value))
}

fn parse_primaries(value: Value) -> Vec<Primary> {
    let mut primaries: Vec<Primary> = Vec::new();
    let Value::Array(entries) = value else {
        return primaries;
    };
    for entry in entries {
        let Value::Array(fields) = entry else { continue };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let (Some(host), Some(Value::Int(port)), Some(id)) = (node.first(), node.get(1), node.get(2)) else {
            continue;
        };
        let (address, id) = (format!("{}:{port}", value_text(host)), value_text(id));
        let range = (*start as u16, *end as u16);
        match primaries.iter_mut().find(|known| known.id == id) {
            Some(known) => known.slot_ranges.push(range),
            None => primaries.push(Primary {
                id,
                address,
                slot_ranges: vec![range],
            }),
        }
    }
    primaries
}

fn value_text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

/// Reads `field=N` from a CLIENT INFO reply.
fn client_info_field(value: &Value, field: &str) -> Option<usize> {
    let text = value_text(value);
    text.split_whitespace()
        .find_map(|pair| pair.strip_prefix(field)?.strip_prefix('='))
        .and_then(|count| count.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_info_field_reads_counts() {
        let info = Value::VerbatimString {
            format: redis::VerbatimFormat::Text,
            text: "id=10 addr=127.0.0.1:1 sub=2 psub=0 ssub=7 multi=-1\n".into(),
        };
        assert_eq!(client_info_field(&info, "ssub"), Some(7));
        assert_eq!(client_info_field(&info, "sub"), Some(2));
        assert_eq!(client_info_field(&info, "missing"), None);
    }

    #[test]
    fn cluster_slots_group_by_primary_id() {
        let node = |host: &str, port: i64, id: &str| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(id.as_bytes().to_vec()),
            ])
        };
        let range = |start: i64, end: i64, primary: Value, replica: Value| {
            Value::Array(vec![Value::Int(start), Value::Int(end), primary, replica])
        };
        let slots = Value::Array(vec![
            range(0, 99, node("10.0.0.1", 7000, "a1"), node("10.0.0.4", 7000, "b1")),
            range(100, 5460, node("10.0.0.2", 7000, "a2"), node("10.0.0.5", 7000, "b2")),
            range(5461, 16383, node("10.0.0.1", 7000, "a1"), node("10.0.0.4", 7000, "b1")),
        ]);
        let primaries = parse_primaries(slots);
        assert_eq!(primaries.len(), 2, "{primaries:?}");
        assert_eq!(primaries[0].id, "a1");
        assert_eq!(primaries[0].address, "10.0.0.1:7000");
        assert_eq!(primaries[0].slot_ranges, vec![(0, 99), (5461, 16383)]);
        assert_eq!(primaries[1].id, "a2");
        assert_eq!(primaries[1].slot_ranges, vec![(100, 5460)]);
    }

    #[test]
    fn probe_key_lands_in_the_ranges() {
        for ranges in [vec![(0, 5460)], vec![(16383, 16383)], vec![(100, 100), (9000, 9001)]] {
            let key = probe_key(&ranges).expect("a key for the ranges");
            let slot = key_slot(key.as_bytes());
            assert!(
                ranges.iter().any(|(start, end)| (*start..=*end).contains(&slot)),
                "{key} in slot {slot}"
            );
        }
    }

    #[test]
    fn pushes_map_to_incoming() {
        let message = PushInfo {
            kind: PushKind::SMessage,
            data: vec![Value::BulkString(b"chan".to_vec()), Value::BulkString(vec![1, 2])],
        };
        match to_incoming(message) {
            Some(Incoming::Message { channel, payload }) => {
                assert_eq!(channel, "chan");
                assert_eq!(payload, vec![1, 2]);
            }
            other => panic!("unexpected {other:?}"),
        }

        let unsubscribe = PushInfo {
            kind: PushKind::SUnsubscribe,
            data: vec![Value::BulkString(b"chan".to_vec()), Value::Int(0)],
        };
        assert!(matches!(to_incoming(unsubscribe), Some(Incoming::Unsubscribed { channel }) if channel == "chan"));

        let gone = PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        };
        assert!(matches!(to_incoming(gone), Some(Incoming::Disconnected)));

        let confirmation = PushInfo {
            kind: PushKind::SSubscribe,
            data: vec![Value::BulkString(b"chan".to_vec()), Value::Int(1)],
        };
        assert!(to_incoming(confirmation).is_none());
    }
}
