//! Startup, serving and drain: binds both ports, picks the adapter, serves the namespaces and,
//! on shutdown, spreads disconnects over the drain window before exiting.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use socketioxide_core::adapter::CoreAdapter;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::adapter::{AdapterConfig, ConnectOptions, RedisAdapter, RedisAdapterState, Topology};
use crate::admin::{self, AdminState};
use crate::auth::{AuthError, Verifier};
use crate::config::{Config, ConfigError, RedisMode, Transport};
use crate::connection::{Connections, TrackedListener, admit};
use crate::engine::core::{Engine, EngineConfig};
use crate::engine::local::LocalAdapter;
use crate::engine::namespace::Emitter;
use crate::events::{Gateway, SocketContext};
use crate::http;
use crate::metrics::Metrics;
use crate::status::{AdapterStatus, LocalAdapterStatus};
use crate::user_limit::{UserLimitError, UserLimiter};

/// Interval between drain batches.
const DRAIN_TICK: Duration = Duration::from_millis(100);
/// Maximum binary attachments in one packet. socket.io clients send one per Buffer in the data,
/// so this bounds the attachments a packet may keep pending, not what applications send.
const MAX_ATTACHMENTS: usize = 64;
/// Time a client has to connect to a namespace after its engine.io handshake, as in socket.io.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);
/// Time the server waits for a client's ack of a server emit, as in socket.io.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Packets that may wait for one client; a client that lets more pile up is disconnected as a
/// slow consumer instead of growing the gateway's memory.
const QUEUE_LIMIT: usize = 1024;
/// Bytes that may wait for one client, for the same reason.
const QUEUE_LIMIT_BYTES: usize = 8 * 1024 * 1024;
/// Time left after the drain window for the last connections to close.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Reasons the gateway fails to start or stops with an error.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    UserLimit(#[from] UserLimitError),
    // `error` is part of the message and deliberately not a `source`, so it is printed once.
    #[error("failed to bind {port_flag} on {address}: {error}")]
    Bind {
        port_flag: &'static str,
        address: SocketAddr,
        error: std::io::Error,
    },
    #[error("namespace {namespace} failed to initialise in the adapter: {reason}")]
    NamespaceInit { namespace: String, reason: String },
    #[error("failed to start the fleet adapter on --redis-url: {0}")]
    FleetAdapter(crate::adapter::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// An adapter the gateway can serve namespaces with: the `socketioxide_core` adapter trait plus a
/// way to wait for a namespace's init result (the fleet adapter subscribes to Redis there).
pub trait GatewayAdapter: CoreAdapter<Emitter> {
    fn namespace_ready(init: Self::InitRes) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
}

impl GatewayAdapter for LocalAdapter {
    fn namespace_ready(_init: ()) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        Box::pin(async { Ok(()) })
    }
}

/// Listening sockets, bound before the adapter starts so a busy port fails fast.
pub struct Listeners {
    pub socket: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners, ServeError> {
        let bind = |port: u16, port_flag: &'static str| async move {
            let address = SocketAddr::new(config.bind_address, port);
            TcpListener::bind(address).await.map_err(|error| ServeError::Bind {
                port_flag,
                address,
                error,
            })
        };
        Ok(Listeners {
            socket: bind(config.port, "--port").await?,
            admin: bind(config.admin_port, "--admin-port").await?,
        })
    }
}

/// Runs the gateway until `shutdown` completes, then drains and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    match &config.redis_url {
        None => serve::<LocalAdapter>(config, listeners, (), Arc::new(LocalAdapterStatus), shutdown).await,
        Some(_) => serve_with_fleet_adapter(config, listeners, shutdown).await,
    }
}

/// Builds the fleet adapter from the Redis flags and serves with it; the only place that does.
async fn serve_with_fleet_adapter(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let url = config.redis_url.clone().unwrap_or_default();
    let options = ConnectOptions {
        // A cluster client needs one node that answers; several seeds may be given comma-separated.
        urls: url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect(),
        topology: match config.redis_mode {
            RedisMode::Cluster => Topology::Cluster,
            RedisMode::Standalone => Topology::Standalone,
        },
        username: config.redis_username.clone(),
        password: config.redis_password()?,
        ca_certificates: config.redis_ca_certificates()?,
    };
    let state = RedisAdapterState::connect(options, AdapterConfig::default())
        .await
        .map_err(ServeError::FleetAdapter)?;
    let status: Arc<dyn AdapterStatus> = Arc::new(state.clone());
    serve::<RedisAdapter<Emitter>>(config, listeners, state, status, shutdown).await
}

/// Serves every namespace with adapter `A` until `shutdown`, then drains.
pub async fn serve<A: GatewayAdapter>(
    config: Config,
    listeners: Listeners,
    adapter_state: A::State,
    adapter_status: Arc<dyn AdapterStatus>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::default());
    let connections = Connections::new(
        config.max_connections,
        config.ready_below_connections(),
        metrics.clone(),
    );
    let verifier = Verifier::from_config(&config)?.map(Arc::new);
    let user_limiter = UserLimiter::from_config(&config).await?;
    let context = Arc::new(SocketContext {
        metrics: metrics.clone(),
        verifier,
        user_limiter,
    });

    let handler = Gateway::new(context);
    let mut engine = Engine::<A>::new(engine_config(&config), metrics.clone());
    engine.count_sessions_in(connections.clone());
    for namespace in &config.namespaces {
        let init = engine.add_namespace(namespace, &adapter_state, handler.clone());
        A::namespace_ready(init)
            .await
            .map_err(|reason| ServeError::NamespaceInit {
                namespace: namespace.clone(),
                reason,
            })?;
    }

    let engine = Arc::new(engine);
    let admin_state = Arc::new(AdminState {
        engine: engine.clone(),
        namespaces: config.namespaces.clone(),
        publish_token: config.publish_token()?,
        connections: connections.clone(),
        metrics: metrics.clone(),
        adapter_status,
    });
    let max_payload = usize::try_from(config.max_payload_bytes).unwrap_or(usize::MAX);
    let admin_router = admin::router(admin_state, max_payload);
    let socket_router = Router::new()
        .fallback({
            let engine = engine.clone();
            move |request| engine.clone().handle(request)
        })
        .layer(axum::middleware::from_fn({
            let connections = connections.clone();
            move |request, next| admit(connections.clone(), request, next)
        }));

    let stop_serving = CancellationToken::new();
    let socket_address = listeners.socket.local_addr().map_err(ServeError::Serve)?;
    let admin_address = listeners.admin.local_addr().map_err(ServeError::Serve)?;
    let socket_server = tokio::spawn(http::serve(
        TrackedListener::new(listeners.socket, connections.clone()),
        socket_router,
        config.header_read_timeout,
        stop_serving.clone(),
    ));
    let admin_server = tokio::spawn(http::serve(
        listeners.admin,
        admin_router,
        config.header_read_timeout,
        stop_serving.clone(),
    ));
    tracing::info!(
        socket = %socket_address,
        admin = %admin_address,
        namespaces = ?config.namespaces,
        max_connections = config.max_connections,
        auth = config.auth_key_file.is_some(),
        "gateway started"
    );

    shutdown.await;
    connections.start_draining();
    engine.close_polling_sessions();
    drain(&connections, Duration::from_secs(config.drain_seconds)).await;
    engine.close().await;
    stop_serving.cancel();

    for server in [socket_server, admin_server] {
        server
            .await
            .map_err(|err| ServeError::Serve(std::io::Error::other(err)))?;
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// Builds the engine's settings from the gateway's flags.
fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        ping_interval: config.ping_interval,
        ping_timeout: config.ping_timeout,
        max_payload: config.max_payload_bytes,
        max_attachments: MAX_ATTACHMENTS,
        attachment_timeout: config.attachment_timeout,
        connect_timeout: CONNECT_TIMEOUT,
        ack_timeout: ACK_TIMEOUT,
        websocket: config.transports.contains(&Transport::Websocket),
        polling: config.transports.contains(&Transport::Polling),
        queue_limit: QUEUE_LIMIT,
        queue_limit_bytes: QUEUE_LIMIT_BYTES,
    }
}

/// Marks the pod not ready, rejects new clients and closes open connections in batches spread
/// over `window`, so clients reconnect to other pods at a bounded rate.
pub async fn drain(connections: &Connections, window: Duration) {
    connections.start_draining();
    let total = connections.open();
    tracing::info!(connections = total, window_seconds = window.as_secs(), "draining");

    let ticks = (window.as_millis() / DRAIN_TICK.as_millis()).max(1) as usize;
    let batch = total.div_ceil(ticks).max(1);
    let started = tokio::time::Instant::now();
    let mut interval = tokio::time::interval(DRAIN_TICK);
    while connections.open() > 0 && started.elapsed() < window {
        interval.tick().await;
        connections.close_batch(batch);
    }

    // Whatever is left (for example a client that connected between batches) closes now.
    connections.close_batch(usize::MAX);
    let deadline = started + window + DRAIN_GRACE;
    while connections.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(DRAIN_TICK).await;
    }
    tracing::info!(left_open = connections.open(), "drain finished");
}
