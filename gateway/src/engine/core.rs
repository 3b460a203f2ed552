//! The engine: the socket port's HTTP entry (engine.io handshake and websocket upgrade) and the
//! dispatch of decoded Socket.IO packets to namespaces, shared by both transports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use socketioxide_core::adapter::CoreAdapter;
use socketioxide_core::{Sid, Uid};

use super::local::LocalAdapter;
use super::namespace::{Emitter, Handler, Namespace, SocketRef};
use super::packet::{Incoming, PacketDecoder, PacketError};
use super::session::{DisconnectReason, QueueLimit, Session};
use super::socket::{AckSender, Enqueued, QueuedEvent, Socket};
use super::websocket::{CLOSE_POLICY_VIOLATION, CLOSE_PROTOCOL_ERROR};
use super::{polling, ws_transport};
use crate::connection::{Connections, TrackedStream};
use crate::metrics::Metrics;

/// Client events of one socket that may wait to be handled; a client that sends more before the
/// gateway catches up is disconnected.
const MAX_PENDING_EVENTS: usize = 1024;

/// Settings of the engine, from the gateway's flags.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Largest message a client may send, in bytes.
    pub max_payload: u64,
    /// Binary attachments one packet may carry.
    pub max_attachments: usize,
    /// Time a packet may wait for its binary attachments.
    pub attachment_timeout: Duration,
    /// Time a client has to connect to a namespace after the engine.io handshake.
    pub connect_timeout: Duration,
    /// Time the server waits for a client's ack.
    pub ack_timeout: Duration,
    pub websocket: bool,
    pub polling: bool,
    /// Packets that may wait for one client before it is disconnected as a slow consumer.
    pub queue_limit: usize,
    /// Bytes that may wait for one client before it is disconnected as a slow consumer.
    pub queue_limit_bytes: usize,
}

impl Default for EngineConfig {
    /// socket.io's defaults, websocket only.
    fn default() -> EngineConfig {
        EngineConfig {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            max_attachments: 64,
            attachment_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(45),
            ack_timeout: Duration::from_secs(5),
            websocket: true,
            polling: false,
            queue_limit: 1024,
            queue_limit_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Cause of a session ending, found while handling what the client sent.
#[derive(Debug)]
pub struct Fault {
    pub reason: DisconnectReason,
    pub code: u16,
    pub message: String,
}

impl Fault {
    fn protocol(err: &PacketError) -> Fault {
        Fault {
            reason: DisconnectReason::ProtocolError,
            code: CLOSE_PROTOCOL_ERROR,
            message: err.to_string(),
        }
    }
}

pub struct Engine<A> {
    pub config: EngineConfig,
    pub server_id: Uid,
    namespaces: HashMap<String, Arc<Namespace<A>>>,
    pub(crate) polling: Mutex<HashMap<Sid, Arc<polling::PollingSession>>>,
    pub metrics: Arc<Metrics>,
    /// Counter of long-polling sessions under the per-pod limit, if any.
    connections: Option<Arc<Connections>>,
}

/// The engine on the in-memory adapter.
pub type LocalEngine = Engine<LocalAdapter>;

impl<A: CoreAdapter<Emitter>> Engine<A> {
    pub fn new(config: EngineConfig, metrics: Arc<Metrics>) -> Engine<A> {
        Engine {
            config,
            server_id: Uid::new(),
            namespaces: HashMap::new(),
            polling: Mutex::new(HashMap::new()),
            metrics,
            connections: None,
        }
    }

    /// Counts this engine's long-polling sessions under `connections`' per-pod limit.
    pub fn count_sessions_in(&mut self, connections: Arc<Connections>) {
        self.connections = Some(connections);
    }

    pub(crate) fn polling_session_opened(&self) {
        if let Some(connections) = &self.connections {
            connections.add_polling_session();
        }
    }

    /// Removes `sid` from the long-polling sessions, once; returns whether it was one.
    pub(crate) fn forget_polling_session(&self, sid: &Sid) -> Option<Arc<polling::PollingSession>> {
        let removed = self.polling.lock().unwrap_or_else(|p| p.into_inner()).remove(sid);
        if removed.is_some()
            && let Some(connections) = &self.connections
        {
            connections.remove_polling_session();
        }
        removed
    }

    /// Asks every long-polling session to close, so a waiting GET gets a close packet instead of
    /// its connection being cut. Websockets close with the TCP connections.
    pub fn close_polling_sessions(&self) {
        let sessions: Vec<_> = self
            .polling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for entry in sessions {
            polling::close(&entry, DisconnectReason::ServerShuttingDown);
        }
    }

    /// Serves namespace `path` with `handler`; returns the adapter's init result, which the
    /// caller awaits or spawns.
    pub fn add_namespace(&mut self, path: &str, adapter_state: &A::State, handler: Arc<dyn Handler<A>>) -> A::InitRes {
        let ns = Namespace::new(path, self.server_id, self.config.ack_timeout, adapter_state, handler);
        let init = ns.adapter.clone().init(|| {});
        self.namespaces.insert(path.to_string(), ns);
        init
    }

    pub fn namespace(&self, path: &str) -> Option<&Arc<Namespace<A>>> {
        self.namespaces.get(path)
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &Arc<Namespace<A>>> {
        self.namespaces.values()
    }

    /// Closes every namespace's adapter.
    pub async fn close(&self) {
        for ns in self.namespaces.values() {
            if let Err(err) = ns.adapter.close().await {
                tracing::warn!(ns = %ns.path, error = %err.into(), "failed to close the adapter");
            }
        }
    }

    pub(crate) fn new_session(&self) -> Arc<Session> {
        let limit = QueueLimit {
            packets: self.config.queue_limit,
            bytes: self.config.queue_limit_bytes,
        };
        Session::new(Sid::new(), limit)
    }

    pub(crate) fn open_packet(&self, sid: Sid, upgrades: &[&str]) -> String {
        super::eio::open_packet(
            &sid.to_string(),
            upgrades,
            self.config.ping_interval.as_millis() as u64,
            self.config.ping_timeout.as_millis() as u64,
            self.config.max_payload,
        )
    }

    pub(crate) fn new_decoder(&self) -> PacketDecoder {
        let max_bytes = usize::try_from(self.config.max_payload).unwrap_or(usize::MAX);
        PacketDecoder::new(self.config.max_attachments, max_bytes)
    }

    /// Handles a request on the socket port.
    pub async fn handle(self: Arc<Self>, request: Request) -> Response {
        let query = Query::parse(request.uri().query().unwrap_or(""));
        let path = request.uri().path();
        if path != "/socket.io/" && path != "/socket.io" {
            return StatusCode::NOT_FOUND.into_response();
        }
        if query.eio.as_deref() != Some("4") {
            return engine_error(StatusCode::BAD_REQUEST, 5, "Unsupported protocol version");
        }
        match query.transport.as_deref() {
            Some("websocket") if self.config.websocket => self.upgrade(request, query.sid),
            Some("polling") if self.config.polling => polling::handle(self, request, query.sid).await,
            _ => engine_error(StatusCode::BAD_REQUEST, 0, "Transport unknown"),
        }
    }

    fn upgrade(self: Arc<Self>, mut request: Request, sid: Option<String>) -> Response {
        let headers = request.headers();
        let Some(key) = websocket_key(request.method(), headers) else {
            return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
        };
        // A websocket that names a session upgrades a long-polling session of this pod.
        let upgrading = match sid {
            None => None,
            Some(sid) => match polling::find(&self, &sid) {
                Some(session) => Some(session),
                None => return engine_error(StatusCode::BAD_REQUEST, 1, "Session ID unknown"),
            },
        };
        let accept = super::websocket::accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut request);
        drop(request);
        let engine = self.clone();
        tokio::spawn(async move {
            // The websocket gets a task of its own, sized for it alone, once the upgrade is done.
            if let Some((stream, leftover)) = upgraded_stream(on_upgrade).await {
                let serve = ws_transport::serve(engine, stream, leftover, upgrading);
                tokio::spawn(serve);
            }
        });

        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(value) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
        }
        response
    }

    /// Handles a Socket.IO packet the client sent as engine.io text.
    pub(crate) async fn on_text(
        self: &Arc<Self>,
        session: &Arc<Session>,
        decoder: &mut PacketDecoder,
        text: &str,
    ) -> Result<(), Fault> {
        match decoder.decode_text(text) {
            Ok(Some(incoming)) => self.dispatch(session, incoming).await,
            Ok(None) => Ok(()),
            // A CONNECT whose namespace contains a comma gets CONNECT_ERROR like an unknown namespace,
            // and the client's other namespaces on this connection stay.
            Err(PacketError::TextAfterNamespace { ns }) if text.starts_with('0') => {
                self.metrics
                    .count_rejected(crate::metrics::RejectReason::InvalidConnect);
                let message = PacketError::TextAfterNamespace { ns: ns.clone() }.to_string();
                session.push_text(connect_error_text(&ns, &message));
                Ok(())
            }
            Err(err) => Err(self.protocol_fault(&err)),
        }
    }

    /// Handles a binary attachment the client sent.
    pub(crate) async fn on_binary(
        self: &Arc<Self>,
        session: &Arc<Session>,
        decoder: &mut PacketDecoder,
        bytes: Bytes,
    ) -> Result<(), Fault> {
        match decoder.decode_binary(bytes) {
            Ok(Some(incoming)) => self.dispatch(session, incoming).await,
            Ok(None) => Ok(()),
            Err(err) => Err(self.protocol_fault(&err)),
        }
    }

    /// Counts a protocol error of `kind` that is not a packet error and returns its fault.
    pub(crate) fn protocol_fault_kind(&self, kind: &'static str) -> Fault {
        self.metrics.count_protocol_error(kind);
        Fault {
            reason: DisconnectReason::ProtocolError,
            code: CLOSE_PROTOCOL_ERROR,
            message: format!("protocol error: {kind}"),
        }
    }

    fn protocol_fault(&self, err: &PacketError) -> Fault {
        self.metrics.count_protocol_error(err.kind());
        tracing::debug!(error = %err, "closing a session that broke the protocol");
        Fault::protocol(err)
    }

    async fn dispatch(self: &Arc<Self>, session: &Arc<Session>, incoming: Incoming) -> Result<(), Fault> {
        match incoming {
            Incoming::Connect { ns, auth } => {
                self.connect(session, ns, auth).await;
                Ok(())
            }
            Incoming::Disconnect { ns } => {
                if let Some(socket) = session.socket(&ns) {
                    socket.end(DisconnectReason::ClientDisconnect);
                }
                Ok(())
            }
            Incoming::Event { ns, id, event, args } => {
                let (Some(socket), Some(namespace)) = (session.socket(&ns), self.namespaces.get(&ns)) else {
                    self.metrics.count_protocol_error("event_without_connect");
                    return Ok(());
                };
                match socket.queue_event(QueuedEvent { event, args, ack: id }, MAX_PENDING_EVENTS) {
                    Enqueued::Waiting => Ok(()),
                    Enqueued::StartTask => {
                        tokio::spawn(handle_events(namespace.clone(), socket));
                        Ok(())
                    }
                    Enqueued::Full => {
                        self.metrics.count_protocol_error("too_many_pending_events");
                        Err(Fault {
                            reason: DisconnectReason::TooManyPendingEvents,
                            code: CLOSE_POLICY_VIOLATION,
                            message: format!("more than {MAX_PENDING_EVENTS} events wait to be handled"),
                        })
                    }
                }
            }
            Incoming::Ack { ns, id, data } => {
                if let Some(socket) = session.socket(&ns) {
                    socket.resolve_ack(id, data);
                }
                Ok(())
            }
        }
    }

    /// Connects the session to namespace `path`: authorizes, then registers the socket and
    /// queues the CONNECT reply, in that order, so the client's first events find it in place.
    async fn connect(self: &Arc<Self>, session: &Arc<Session>, path: String, auth: Option<serde_json::Value>) {
        let Some(ns) = self.namespaces.get(&path) else {
            self.metrics
                .count_rejected(crate::metrics::RejectReason::InvalidConnect);
            session.push_text(connect_error_text(&path, "Invalid namespace"));
            return;
        };
        if session.socket(&path).is_some() {
            self.metrics.count_protocol_error("duplicate_connect");
            return;
        }
        let socket = ns.new_socket(session.clone());
        let socket_ref = SocketRef {
            socket: socket.clone(),
            ns: ns.clone(),
        };
        if let Err(message) = ns.handler.authorize(socket_ref.clone(), auth).await {
            session.push_text(connect_error_text(&path, &message));
            return;
        }
        if session.is_finished() || !socket.mark_connected() {
            // The client left while it was being authorized: undo what authorization did.
            tokio::spawn(ns.handler.on_disconnect(socket_ref, DisconnectReason::TransportClose));
            return;
        }
        ns.insert(socket.clone());
        session.add_socket(socket.clone());
        session.push_text(connect_text(&path, socket.id));
        if session.is_finished() {
            socket.end(DisconnectReason::TransportClose);
            return;
        }
        tokio::spawn(ns.handler.on_connected(socket_ref));
    }

    /// Ends `session` and every socket on it.
    pub(crate) fn finish_session(&self, session: &Session, reason: DisconnectReason) {
        for socket in session.finish() {
            socket.end(reason);
        }
        self.forget_polling_session(&session.sid);
    }
}

/// Runs the handler for each queued event of `socket`, one at a time, so a client's events take
/// effect in the order it sent them (a publish right after a join reaches the joined room).
async fn handle_events<A: CoreAdapter<Emitter>>(ns: Arc<Namespace<A>>, socket: Arc<Socket>) {
    while let Some(queued) = socket.next_event() {
        let ack = queued.ack.map(|id| AckSender::new(socket.clone(), id));
        let socket_ref = SocketRef {
            socket: socket.clone(),
            ns: ns.clone(),
        };
        ns.handler.on_event(socket_ref, queued.event, queued.args, ack).await;
    }
}

/// Waits for hyper to hand over the upgraded connection; returns the gateway's tracked stream and
/// the bytes hyper read past the request.
async fn upgraded_stream(on_upgrade: hyper::upgrade::OnUpgrade) -> Option<(TrackedStream, Bytes)> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            tracing::debug!(error = %err, "websocket upgrade failed");
            return None;
        }
    };
    match upgraded.downcast::<TokioIo<TrackedStream>>() {
        // Copied, so the leftover bytes do not keep hyper's read buffer alive.
        Ok(parts) => Some((parts.io.into_inner(), Bytes::copy_from_slice(&parts.read_buf))),
        Err(_) => {
            tracing::error!("upgraded connection is not the gateway's tracked stream");
            None
        }
    }
}

/// Builds the CONNECT reply for namespace `path`.
fn connect_text(path: &str, sid: Sid) -> String {
    if path == "/" {
        format!("0{{\"sid\":\"{sid}\"}}")
    } else {
        format!("0{path},{{\"sid\":\"{sid}\"}}")
    }
}

/// Builds a CONNECT_ERROR packet for namespace `path`.
fn connect_error_text(path: &str, message: &str) -> String {
    let data = serde_json::json!({ "message": message });
    if path == "/" {
        format!("4{data}")
    } else {
        format!("4{path},{data}")
    }
}

/// Builds an engine.io error response, as engine.io servers send it.
pub(crate) fn engine_error(status: StatusCode, code: u8, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Returns the Sec-WebSocket-Key of a valid websocket upgrade request.
fn websocket_key<'a>(method: &Method, headers: &'a HeaderMap) -> Option<&'a str> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|value| value.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
        })
    };
    if method != Method::GET
        || !has_token(header::UPGRADE, "websocket")
        || !has_token(header::CONNECTION, "upgrade")
        || headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13")
    {
        return None;
    }
    headers.get(header::SEC_WEBSOCKET_KEY)?.to_str().ok()
}

/// The engine.io query parameters.
struct Query {
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Query {
        let mut parsed = Query {
            eio: None,
            transport: None,
            sid: None,
        };
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "EIO" => &mut parsed.eio,
                "transport" => &mut parsed.transport,
                "sid" => &mut parsed.sid,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.to_string());
            }
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_read() {
        let query = Query::parse("EIO=4&transport=websocket&sid=abc&t=1");
        assert_eq!(query.eio.as_deref(), Some("4"));
        assert_eq!(query.transport.as_deref(), Some("websocket"));
        assert_eq!(query.sid.as_deref(), Some("abc"));
        assert!(Query::parse("").eio.is_none());
    }

    #[test]
    fn connect_packets_name_their_namespace() {
        let sid = Sid::new();
        assert_eq!(connect_text("/", sid), format!("0{{\"sid\":\"{sid}\"}}"));
        assert_eq!(connect_text("/chat", sid), format!("0/chat,{{\"sid\":\"{sid}\"}}"));
        assert_eq!(connect_error_text("/x", "no"), "4/x,{\"message\":\"no\"}");
    }
}
