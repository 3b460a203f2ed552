//! Client connections on the socket port: counting, the per-pod limit checked before the
//! websocket upgrade, the payload cap on websocket frames, and closing connections during a drain.
//!
//! Every accepted TCP connection is wrapped in a [`TrackedStream`], which counts it while it is
//! open and watches the client's websocket frames once the server has sent its 101 upgrade response.
//! The per-pod limit counts these TCP connections: with the websocket transport one client is one
//! connection, with long-polling a client may hold two.

mod frames;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

pub use frames::{
    CLOSE_GOING_AWAY, CLOSE_MESSAGE_TOO_BIG, CLOSE_PROTOCOL_ERROR, FrameInspector, Inspection, check_packet_prefix,
    client_close_frame,
};

use crate::metrics::{Metrics, RejectReason};

/// Retry-After value, in seconds, sent to a rejected client.
const RETRY_AFTER_SECONDS: u64 = 5;

/// Maximum time a connection closed with a close frame of the gateway's making keeps reading
/// and discarding what the client still sends; see [`linger`].
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes read from a client per read call; on the stack, so an idle connection costs nothing.
const SCRATCH_LEN: usize = 4096;

const CLOSE_NONE: u8 = 0;
const CLOSE_GOING_AWAY_REQUESTED: u8 = 1;

/// Open connections on the socket port and the per-pod limit.
pub struct Connections {
    max: usize,
    ready_below: usize,
    max_message_len: u64,
    open: AtomicUsize,
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
    pub fn new(max: u32, ready_below: u32, max_message_len: u64, metrics: Arc<Metrics>) -> Arc<Connections> {
        Arc::new(Connections {
            max: max as usize,
            ready_below: ready_below as usize,
            max_message_len,
            open: AtomicUsize::new(0),
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
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.update_capacity(open);
        (id, shared)
    }

    fn unregister(&self, id: u64) {
        self.handles.lock().expect("connection registry lock").remove(&id);
        let open = self.open.fetch_sub(1, Ordering::SeqCst) - 1;
        self.update_capacity(open);
    }

    fn update_capacity(&self, open: usize) {
        if open >= self.max {
            self.at_capacity.store(true, Ordering::SeqCst);
        } else if open < self.ready_below {
            self.at_capacity.store(false, Ordering::SeqCst);
        }
        self.metrics.set_open_connections(open);
    }

    /// Why a new client must be turned away, if it must. The connection making the request is
    /// already counted, so the pod is over its limit when more than `max` are open.
    fn admission(&self) -> Option<RejectReason> {
        if self.draining() {
            Some(RejectReason::Draining)
        } else if self.open() > self.max {
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
/// After the server answers `101 Switching Protocols`, reads pass through a [`FrameInspector`]:
/// a message over the payload cap is cut off at its frame header and replaced by a client close
/// frame with code 1009, which the websocket layer echoes to the client before closing. A drain
/// inserts a close frame with code 1001 the same way, at a frame boundary.
///
/// NOTE: engineioxide 0.17.9 sends no close frame when the client's close arrives before its
/// websocket writer task has started, right after the open packet; the client then sees 1006.
pub struct TrackedStream {
    /// Always `Some` until [`Drop`] takes it to [`linger`].
    stream: Option<TcpStream>,
    id: u64,
    shared: Arc<ConnectionShared>,
    connections: Arc<Connections>,
    inspector: Option<Box<FrameInspector>>,
    carry: [u8; frames::MAX_HEADER_LEN],
    carry_len: usize,
    /// Inspected bytes that did not fit in the caller's read buffer; empty (no allocation) while
    /// reads keep up.
    passed: Vec<u8>,
    synthetic: Option<Box<(Vec<u8>, usize)>>,
    finished: bool,
    /// Set once the client's stream was replaced by a close frame, because the client may still
    /// be sending the rest of a message that the gateway no longer reads.
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
            inspector: None,
            carry: [0; frames::MAX_HEADER_LEN],
            carry_len: 0,
            passed: Vec::new(),
            synthetic: None,
            finished: false,
            linger_on_drop: false,
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("the stream is only taken on drop"))
    }

    /// Replaces the rest of the client's stream with a close frame, then end of stream.
    fn end_with_close(&mut self, code: u16, reason: &str) {
        self.synthetic = Some(Box::new((client_close_frame(code, reason), 0)));
        self.carry_len = 0;
        self.linger_on_drop = true;
    }

    /// Moves inspected bytes into `buf` as far as they fit, and frees the store once it is empty.
    fn poll_passed(&mut self, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let count = buf.remaining().min(self.passed.len());
        buf.put_slice(&self.passed[..count]);
        self.passed.drain(..count);
        if self.passed.is_empty() {
            self.passed = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_synthetic(&mut self, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(synthetic) = self.synthetic.as_mut() {
            let (frame, sent) = &mut **synthetic;
            let count = buf.remaining().min(frame.len() - *sent);
            buf.put_slice(&frame[*sent..*sent + count]);
            *sent += count;
            if *sent == frame.len() {
                self.synthetic = None;
                self.finished = true;
            }
        }
        Poll::Ready(Ok(()))
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
        if !this.passed.is_empty() {
            return this.poll_passed(buf);
        }
        if this.synthetic.is_some() || this.finished {
            return this.poll_synthetic(buf);
        }

        this.shared.waker.register(cx.waker());
        if this.shared.close_request.load(Ordering::SeqCst) == CLOSE_GOING_AWAY_REQUESTED {
            match this.inspector.as_deref() {
                Some(inspector) if inspector.at_frame_boundary() && this.carry_len == 0 => {
                    this.end_with_close(CLOSE_GOING_AWAY, "server is shutting down");
                    return this.poll_synthetic(buf);
                }
                // NOTE: a connection in the middle of a frame, or not upgraded (HTTP and
                // long-polling), is closed without a close frame; clients see a transport error
                // and reconnect all the same.
                _ => {
                    this.finished = true;
                    return Poll::Ready(Ok(()));
                }
            }
        }

        let Some(inspector) = this.inspector.as_deref_mut() else {
            return this.stream().poll_read(cx, buf);
        };

        // Bytes a smaller buffer could not take last time go first, in order.
        if !this.passed.is_empty() {
            return this.poll_passed(buf);
        }

        // Reads go through a scratch buffer of our own, so the caller's buffer may be of any size
        // (hyper offers a few bytes at a time). A partial frame header held back by the previous
        // read goes first, so the inspector sees the whole header before any of it is passed on.
        let mut scratch = [0u8; SCRATCH_LEN];
        loop {
            let carried = this.carry_len;
            scratch[..carried].copy_from_slice(&this.carry[..carried]);
            // Read no more than the caller can take, so bytes rarely wait in `passed`, but enough
            // to complete a held-back header when the caller's buffer is tiny.
            let want = buf
                .remaining()
                .saturating_sub(carried)
                .max(frames::MAX_HEADER_LEN)
                .min(SCRATCH_LEN - carried);
            let mut read_buf = ReadBuf::new(&mut scratch[carried..carried + want]);
            let stream = this.stream.as_mut().expect("the stream is only taken on drop");
            match Pin::new(stream).poll_read(cx, &mut read_buf) {
                Poll::Ready(Ok(())) => {}
                // The held-back bytes stay in `carry` until a read succeeds.
                other => return other,
            }
            let read = read_buf.filled().len();
            if read == 0 {
                // End of stream; a partial header left at the end is dropped.
                this.carry_len = 0;
                return Poll::Ready(Ok(()));
            }
            this.carry_len = 0;

            let new_bytes = &scratch[..carried + read];
            match inspector.inspect(new_bytes) {
                Inspection::Pass { partial_header_at } => {
                    let held = new_bytes.len() - partial_header_at;
                    if held > 0 {
                        this.carry[..held].copy_from_slice(&new_bytes[partial_header_at..]);
                        this.carry_len = held;
                        inspector.forget_partial_header();
                    }
                    if partial_header_at > 0 {
                        let inspected = &new_bytes[..partial_header_at];
                        let direct = buf.remaining().min(inspected.len());
                        buf.put_slice(&inspected[..direct]);
                        this.passed.extend_from_slice(&inspected[direct..]);
                        return Poll::Ready(Ok(()));
                    }
                    // Only part of a header has arrived; read again for the rest.
                }
                Inspection::TooLarge { header_at, message_len } => {
                    tracing::debug!(
                        message_len,
                        max = this.connections.max_message_len,
                        "websocket message over the payload cap"
                    );
                    this.connections.metrics.count_rejected(RejectReason::PayloadTooLarge);
                    this.passed.extend_from_slice(&new_bytes[..header_at]);
                    this.end_with_close(CLOSE_MESSAGE_TOO_BIG, "payload too large");
                    if this.passed.is_empty() {
                        return this.poll_synthetic(buf);
                    }
                    return this.poll_passed(buf);
                }
                Inspection::InvalidPacket { header_at, reason } => {
                    tracing::debug!(reason, "closing websocket that sent an invalid socket.io packet");
                    this.connections.metrics.count_rejected(RejectReason::InvalidPacket);
                    this.passed.extend_from_slice(&new_bytes[..header_at]);
                    this.end_with_close(CLOSE_PROTOCOL_ERROR, reason);
                    if this.passed.is_empty() {
                        return this.poll_synthetic(buf);
                    }
                    return this.poll_passed(buf);
                }
            }
        }
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(this.stream().poll_write(cx, data))?;

        // hyper writes the whole response head at once, so the status line starts the buffer.
        // NOTE: bytes a client sends before it has read the 101 response reach the websocket
        // layer uninspected; RFC 6455 forbids clients from sending frames that early.
        if this.inspector.is_none() && data.starts_with(b"HTTP/1.1 101 ") {
            this.inspector = Some(Box::new(FrameInspector::new(this.connections.max_message_len)));
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_shutdown(cx)
    }
}
