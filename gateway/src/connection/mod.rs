//! Client connections on the socket port: counting, the per-pod limit checked before the
//! websocket upgrade, and closing connections during a drain.
//!
//! Every accepted TCP connection is wrapped in a [`TrackedStream`], which counts it while it is
//! open. The per-pod limit counts these TCP connections: with the websocket transport one client is one
//! connection, with long-polling a client may hold two.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::{Metrics, RejectReason};

/// Retry-After value, in seconds, sent to a rejected client.
const RETRY_AFTER_SECONDS: u64 = 5;

/// Maximum time a connection closed with a close frame of the gateway's making keeps reading
/// and discarding what the client still sends; see [`linger`].
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

const CLOSE_NONE: u8 = 0;
const CLOSE_GOING_AWAY_REQUESTED: u8 = 1;

/// Open connections on the socket port and the per-pod limit.
pub struct Connections {
    max: usize,
    ready_below: usize,
    open: AtomicUsize,
    /// Long-polling sessions; each takes a slot under the limit, because its TCP connections come
    /// and go between requests.
    polling_sessions: AtomicUsize,
    at_capacity: AtomicBool,
    draining: AtomicBool,
    next_id: AtomicU64,
    handles: Mutex<HashMap<u64, Arc<ConnectionShared>>>,
    metrics: Arc<Metrics>,
}

/// State one connection shares with the registry.
struct ConnectionShared {
    close_request: AtomicU8,
    waker: AtomicWaker,
}

impl Connections {
    pub fn new(max: u32, ready_below: u32, metrics: Arc<Metrics>) -> Arc<Connections> {
        Arc::new(Connections {
            max: max as usize,
            ready_below: ready_below as usize,
            open: AtomicUsize::new(0),
            polling_sessions: AtomicUsize::new(0),
            at_capacity: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            handles: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Number of open TCP connections on the socket port.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Slots taken under the per-pod limit: open TCP connections plus long-polling sessions.
    pub fn in_use(&self) -> usize {
        self.open() + self.polling_sessions.load(Ordering::SeqCst)
    }

    /// Counts a new long-polling session under the limit.
    pub fn add_polling_session(&self) {
        self.polling_sessions.fetch_add(1, Ordering::SeqCst);
        self.update_capacity();
    }

    /// Stops counting a long-polling session that ended or moved to a websocket.
    pub fn remove_polling_session(&self) {
        self.polling_sessions.fetch_sub(1, Ordering::SeqCst);
        self.update_capacity();
    }

    /// Whether the pod is full: set at the limit and cleared only below the low-water mark, so
    /// readiness does not flap around the limit.
    pub fn at_capacity(&self) -> bool {
        self.at_capacity.load(Ordering::SeqCst)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Stops admitting new clients; existing connections stay until [`Connections::close_batch`].
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Asks up to `count` open connections to close, websocket ones with close code 1001 so
    /// clients reconnect elsewhere. Returns how many were asked.
    pub fn close_batch(&self, count: usize) -> usize {
        let handles = self.handles.lock().expect("connection registry lock");
        let mut asked = 0;
        for shared in handles.values() {
            if asked == count {
                break;
            }
            let previous = shared.close_request.swap(CLOSE_GOING_AWAY_REQUESTED, Ordering::SeqCst);
            if previous == CLOSE_NONE {
                shared.waker.wake();
                asked += 1;
            }
        }
        asked
    }

    fn register(self: &Arc<Self>) -> (u64, Arc<ConnectionShared>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(ConnectionShared {
            close_request: AtomicU8::new(CLOSE_NONE),
            waker: AtomicWaker::new(),
        });
        self.handles
            .lock()
            .expect("connection registry lock")
            .insert(id, shared.clone());
        self.open.fetch_add(1, Ordering::SeqCst);
        self.update_capacity();
        (id, shared)
    }

    fn unregister(&self, id: u64) {
        self.handles.lock().expect("connection registry lock").remove(&id);
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.update_capacity();
    }

    fn update_capacity(&self) {
        let in_use = self.in_use();
        if in_use >= self.max {
            self.at_capacity.store(true, Ordering::SeqCst);
        } else if in_use < self.ready_below {
            self.at_capacity.store(false, Ordering::SeqCst);
        }
        self.metrics.set_open_connections(self.open());
    }

    /// Why a new client must be turned away, if it must. The connection making the request is
    /// already counted, so the pod is over its limit when more than `max` are open.
    fn admission(&self) -> Option<RejectReason> {
        if self.draining() {
            Some(RejectReason::Draining)
        } else if self.in_use() > self.max {
            Some(RejectReason::AtCapacity)
        } else {
            None
        }
    }
}

/// Axum middleware on the socket port: answers a new Engine.IO handshake with HTTP 503 and
/// Retry-After when the pod is full or draining, before any upgrade or session is created.
/// Requests that carry a `sid` belong to an admitted session and always pass.
pub async fn admit(connections: Arc<Connections>, request: Request, next: Next) -> Response {
    if is_new_session(&request)
        && let Some(reason) = connections.admission()
    {
        connections.metrics.count_rejected(reason);
        tracing::debug!(
            reason = reason.as_str(),
            open = connections.open(),
            "rejected new connection"
        );
        return rejection_response(reason);
    }
    next.run(request).await
}

fn is_new_session(request: &Request) -> bool {
    let query = request.uri().query().unwrap_or("");
    !query.split('&').any(|pair| pair.starts_with("sid="))
}

fn rejection_response(reason: RejectReason) -> Response {
    let message = match reason {
        RejectReason::Draining => "server is shutting down; retry to reach another server",
        RejectReason::AtCapacity => "server is at its connection limit; retry to reach another server",
        _ => "connection rejected",
    };
    let body = serde_json::json!({ "error": message, "reason": reason.as_str() });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    // hyper closes the connection after a response with this header, which frees the slot the
    // rejected client's connection takes under the limit.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Accepts TCP connections and wraps each in a [`TrackedStream`].
pub struct TrackedListener {
    listener: TcpListener,
    connections: Arc<Connections>,
}

impl TrackedListener {
    pub fn new(listener: TcpListener, connections: Arc<Connections>) -> TrackedListener {
        TrackedListener { listener, connections }
    }
}

impl axum::serve::Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TrackedStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, address)) => {
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(error = %err, "failed to set TCP_NODELAY");
                    }
                    return (TrackedStream::new(stream, self.connections.clone()), address);
                }
                Err(err) => {
                    // Running out of file descriptors is the usual cause; waiting lets closing
                    // connections free some instead of spinning.
                    tracing::warn!(error = %err, "failed to accept connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A client TCP connection, counted while open.
///
/// During a drain, a connection that is still plain HTTP (a request or long-polling) reads end
/// of stream. A websocket's task watches [`TrackedStream::poll_close_requested`] instead and ends
/// the websocket with close code 1001 itself.
pub struct TrackedStream {
    /// Always `Some` until [`Drop`] takes it to [`linger`].
    stream: Option<TcpStream>,
    id: u64,
    shared: Arc<ConnectionShared>,
    connections: Arc<Connections>,
    /// Set when the connection became a websocket, whose task handles close requests.
    upgraded: bool,
    /// Set when the gateway closed the websocket while the client may still be sending the rest of
    /// a message the gateway no longer reads.
    linger_on_drop: bool,
}

impl TrackedStream {
    fn new(stream: TcpStream, connections: Arc<Connections>) -> TrackedStream {
        let (id, shared) = connections.register();
        TrackedStream {
            stream: Some(stream),
            id,
            shared,
            connections,
            upgraded: false,
            linger_on_drop: false,
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("the stream is only taken on drop"))
    }

    /// Marks the connection as a websocket: reads pass through during a drain, and the
    /// websocket's task polls [`TrackedStream::poll_close_requested`].
    pub fn mark_upgraded(&mut self) {
        self.upgraded = true;
    }

    /// Returns whether a drain asked this connection to close, registering the task to be woken
    /// when one does.
    pub fn poll_close_requested(&self, cx: &mut Context<'_>) -> bool {
        self.shared.waker.register(cx.waker());
        self.shared.close_request.load(Ordering::SeqCst) == CLOSE_GOING_AWAY_REQUESTED
    }

    /// Makes dropping the stream send FIN and discard what the client still sends for a while,
    /// so the client reads the gateway's close frame instead of a reset; see [`linger`].
    pub fn linger_after_close(&mut self) {
        self.linger_on_drop = true;
    }
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        if self.linger_on_drop
            && let Some(stream) = self.stream.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let connections = self.connections.clone();
            let id = self.id;
            runtime.spawn(async move {
                linger(stream).await;
                connections.unregister(id);
            });
            return;
        }
        self.connections.unregister(self.id);
    }
}

/// Sends FIN after the gateway's close frame, then reads and discards what the client still
/// sends until it closes too or [`LINGER_TIMEOUT`] passes.
///
/// Closing a socket with unread bytes in its receive buffer makes Linux send RST instead of FIN
/// (counted as TcpExtTCPAbortOnClose). A client still sending the rest of an oversized message
/// then gets ECONNRESET on its write and may drop the connection before it reads the close
/// frame, so it reports close code 1006 where it should see 1009.
async fn linger(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    if let Err(err) = stream.shutdown().await {
        tracing::debug!(error = %err, "failed to shut down the write side of a closed websocket");
        return;
    }
    let mut discard = [0u8; 8192];
    let drained = tokio::time::timeout(LINGER_TIMEOUT, async {
        loop {
            match stream.read(&mut discard).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::debug!(timeout = ?LINGER_TIMEOUT, "client kept sending after the close frame; closing");
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.upgraded && this.poll_close_requested(cx) {
            // End of stream: hyper finishes the connection.
            return Poll::Ready(Ok(()));
        }
        this.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().stream().poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_shutdown(cx)
    }
}
