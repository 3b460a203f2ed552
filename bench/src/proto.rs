//! A minimal socketioxide server with the gateway's client events, used to measure which settings
//! change the memory an idle socket costs before the same change goes into the gateway.
//!
//! Heap bytes come from a counting global allocator (stats_alloc over the system allocator), served
//! as JSON on `GET /heap` of the admin port.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::TransportType;
use socketioxide::extract::{AckSender, Data, SocketRef};

#[derive(clap::Args, Debug, Clone)]
pub struct ProtoArgs {
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    #[arg(long, default_value_t = 9090)]
    pub admin_port: u16,
    /// Copies the handshake request's URI and headers out of hyper's read buffer.
    #[arg(long)]
    pub copy_request_parts: bool,
    /// socketioxide's websocket read buffer size in bytes (its default is 4096).
    #[arg(long)]
    pub ws_read_buffer: Option<usize>,
    /// socketioxide's per-socket packet queue length (its default is 128).
    #[arg(long)]
    pub max_buffer: Option<usize>,
    /// Serves with hyper's HTTP/1 builder and this max_buf_size instead of axum::serve.
    #[arg(long)]
    pub http1_max_buf: Option<usize>,
}

pub fn run(args: ProtoArgs) -> anyhow::Result<()> {
    crate::limits::raise_open_files_limit()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: ProtoArgs) -> anyhow::Result<()> {
    let mut builder = SocketIo::builder().transports([TransportType::Websocket]);
    if let Some(size) = args.ws_read_buffer {
        builder = builder.ws_read_buffer_size(size);
    }
    if let Some(size) = args.max_buffer {
        builder = builder.max_buffer_size(size);
    }
    let (layer, io) = builder.build_layer();
    io.ns("/", on_connect);

    let admin = Router::new().route("/heap", get(heap));
    let admin_listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.admin_port))).await?;
    tokio::spawn(async move { axum::serve(admin_listener, admin).await });

    let app = Router::new().layer(layer);
    let app = if args.copy_request_parts {
        app.layer(axum::middleware::map_request(copy_request_parts))
    } else {
        app
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    match args.http1_max_buf {
        None => axum::serve(listener, app).await?,
        Some(max_buf) => serve_http1(listener, app, max_buf).await?,
    }
    Ok(())
}

async fn serve_http1(listener: tokio::net::TcpListener, app: Router, max_buf: usize) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    let _ = TokioExecutor::new();
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.max_buf_size(max_buf);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Rebuilds the request's URI and header values in fresh allocations. hyper parses them as slices of
/// its connection read buffer, and engineioxide keeps the request parts for the socket's lifetime.
async fn copy_request_parts(request: axum::extract::Request) -> axum::extract::Request {
    let (mut parts, body) = request.into_parts();
    let uri: http::Uri = parts.uri.to_string().parse().unwrap_or_default();
    parts.uri = uri;
    let mut headers = http::HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in parts.headers.iter() {
        if let Ok(value) = http::HeaderValue::from_bytes(value.as_bytes()) {
            headers.append(name.clone(), value);
        }
    }
    parts.headers = headers;
    // axum's router stores a clone of the URI, which shares hyper's buffer as well.
    if parts.extensions.get::<axum::extract::OriginalUri>().is_some() {
        parts.extensions.insert(axum::extract::OriginalUri(parts.uri.clone()));
    }
    axum::extract::Request::from_parts(parts, body)
}

#[cfg(feature = "mimalloc")]
async fn heap() -> String {
    serde_json::json!({ "live": 0, "note": "built with mimalloc: heap bytes are not counted" }).to_string()
}

#[cfg(not(feature = "mimalloc"))]
async fn heap() -> String {
    let stats = crate::INSTRUMENTED.stats();
    serde_json::json!({
        "allocated": stats.bytes_allocated,
        "deallocated": stats.bytes_deallocated,
        "reallocated": stats.bytes_reallocated,
        "live": stats.bytes_allocated as i64 - stats.bytes_deallocated as i64,
        "allocations": stats.allocations,
        "deallocations": stats.deallocations,
    })
    .to_string()
}

async fn on_connect(socket: SocketRef) {
    socket.on(
        "join",
        async |socket: SocketRef, Data(payload): Data<Value>, ack: AckSender| match payload
            .get("room")
            .and_then(Value::as_str)
        {
            Some(room) => {
                socket.join(room.to_owned());
                let _ = ack.send(&serde_json::json!({"ok": true}));
            }
            None => {
                let _ = ack.send(&serde_json::json!({"error": "missing room"}));
            }
        },
    );
    socket.on(
        "publish",
        async |socket: SocketRef, Data(payload): Data<Value>, ack: AckSender| {
            let room = payload.get("room").and_then(Value::as_str).map(str::to_owned);
            let event = payload.get("event").and_then(Value::as_str).map(str::to_owned);
            match (room, event) {
                (Some(room), Some(event)) => {
                    let _ = socket.broadcast().to(room).emit(&event, &payload["data"]).await;
                    let _ = ack.send(&serde_json::json!({"ok": true}));
                }
                _ => {
                    let _ = ack.send(&serde_json::json!({"error": "missing room or event"}));
                }
            }
        },
    );
}
