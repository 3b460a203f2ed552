//! One engine.io connection: the packets waiting to be sent, the Socket.IO sockets it carries and
//! the reason it closed.
//!
//! A session allocates nothing for its queue while no packet waits. The queue is a `VecDeque` that
//! starts empty, and the transport task is woken through an [`AtomicWaker`] instead of a channel,
//! because a tokio mpsc channel allocates a block of 32 slots up front.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::task::AtomicWaker;
use socketioxide_core::{Sid, Str, Value};

use super::outbound::Outbound;
use super::socket::Socket;
use super::websocket::{CLOSE_NORMAL, CLOSE_POLICY_VIOLATION};

/// Cause of a session or one of its sockets ending; its label is the `reason` of
/// `socket_io_disconnect_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the connection or the TCP connection ended.
    TransportClose,
    /// Reading from or writing to the connection failed.
    TransportError,
    /// The client sent no pong within the ping timeout.
    PingTimeout,
    /// The client sent a packet that breaks the protocol.
    ProtocolError,
    /// The client sent a message over the payload cap.
    PayloadTooLarge,
    /// Packets for the client piled up faster than it read them.
    SlowConsumer,
    /// The client left the namespace.
    ClientDisconnect,
    /// The server disconnected the socket.
    ServerDisconnect,
    /// The gateway is shutting down.
    ServerShuttingDown,
    /// A long-polling client sent two GET requests at once.
    MultiplePolling,
    /// The client sent events faster than the gateway handled them.
    TooManyPendingEvents,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport_close",
            DisconnectReason::TransportError => "transport_error",
            DisconnectReason::PingTimeout => "ping_timeout",
            DisconnectReason::ProtocolError => "packet_parsing_error",
            DisconnectReason::PayloadTooLarge => "payload_too_large",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::ClientDisconnect => "client_disconnect",
            DisconnectReason::ServerDisconnect => "server_disconnect",
            DisconnectReason::ServerShuttingDown => "server_shutting_down",
            DisconnectReason::MultiplePolling => "multiple_http_polling",
            DisconnectReason::TooManyPendingEvents => "too_many_pending_events",
        }
    }
}

/// A request to the transport to end the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseRequest {
    pub reason: DisconnectReason,
    /// Websocket close code sent to the client.
    pub code: u16,
}

struct Queue {
    packets: VecDeque<Outbound>,
    /// Payload bytes of `packets`.
    bytes: usize,
    close: Option<CloseRequest>,
}

/// Bound on one session's queue. A client that lets more pile up is disconnected as a slow
/// consumer, so it cannot grow the gateway's memory.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimit {
    pub packets: usize,
    pub bytes: usize,
}

fn payload_len(packet: &Outbound) -> usize {
    match packet {
        Outbound::Eio(text) => text.len(),
        Outbound::Message(text) => text.len(),
        Outbound::Binary(bytes) => bytes.len(),
    }
}

/// Result of queueing packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// The session is closing; the packets were dropped.
    Closed,
    /// The queue was full; the session is now closing as a slow consumer.
    Overflow,
}

pub struct Session {
    pub sid: Sid,
    queue: Mutex<Queue>,
    limit: QueueLimit,
    waker: AtomicWaker,
    sockets: Mutex<Vec<Arc<Socket>>>,
    /// Set once the session has closed and its sockets have ended.
    closed: AtomicBool,
}

impl Session {
    pub fn new(sid: Sid, limit: QueueLimit) -> Arc<Session> {
        Arc::new(Session {
            sid,
            queue: Mutex::new(Queue {
                packets: VecDeque::new(),
                bytes: 0,
                close: None,
            }),
            limit,
            waker: AtomicWaker::new(),
            sockets: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        })
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one engine.io packet of the gateway's own (ping, noop, probe response).
    pub fn push_eio(&self, packet: &'static str) -> Queued {
        self.push_all(&[Outbound::Eio(packet)])
    }

    /// Queues an encoded Socket.IO packet: its text, then each binary attachment.
    pub fn push_value(&self, value: &Value) -> Queued {
        match value {
            Value::Str(text, None) => self.push_all(&[Outbound::Message(text.clone())]),
            Value::Str(text, Some(attachments)) => {
                let packets: Vec<Outbound> = std::iter::once(Outbound::Message(text.clone()))
                    .chain(attachments.iter().cloned().map(Outbound::Binary))
                    .collect();
                self.push_all(&packets)
            }
            Value::Bytes(bytes) => self.push_all(&[Outbound::Binary(bytes.clone())]),
        }
    }

    /// Queues a Socket.IO packet given as text.
    pub fn push_text(&self, text: String) -> Queued {
        self.push_all(&[Outbound::Message(Str::from(text))])
    }

    fn push_all(&self, packets: &[Outbound]) -> Queued {
        let bytes: usize = packets.iter().map(payload_len).sum();
        let mut queue = self.queue();
        if queue.close.is_some() {
            return Queued::Closed;
        }
        // An empty queue takes any one packet, so a message up to the payload cap always fits.
        let over = queue.packets.len() + packets.len() > self.limit.packets
            || (!queue.packets.is_empty() && queue.bytes + bytes > self.limit.bytes);
        if over {
            queue.packets = VecDeque::new();
            queue.bytes = 0;
            queue.close = Some(CloseRequest {
                reason: DisconnectReason::SlowConsumer,
                code: CLOSE_POLICY_VIOLATION,
            });
            drop(queue);
            self.waker.wake();
            return Queued::Overflow;
        }
        queue.packets.extend(packets.iter().cloned());
        queue.bytes += bytes;
        drop(queue);
        self.waker.wake();
        Queued::Yes
    }

    /// Asks the transport to close with `reason`; the first request wins.
    pub fn request_close(&self, reason: DisconnectReason, code: u16) {
        let mut queue = self.queue();
        if queue.close.is_none() {
            queue.close = Some(CloseRequest { reason, code });
        }
        drop(queue);
        self.waker.wake();
    }

    /// Takes up to `max` queued packets into `into` and registers `waker` for more. Returns the
    /// close request once no packet queued before it is left.
    pub fn take(&self, into: &mut Vec<Outbound>, max: usize, waker: &std::task::Waker) -> Option<CloseRequest> {
        self.waker.register(waker);
        take_from(&mut self.queue(), into, max)
    }

    /// Returns whether packets wait to be sent.
    pub fn has_packets(&self) -> bool {
        !self.queue().packets.is_empty()
    }

    /// Takes up to `max` queued packets without registering a waker, for a long-polling response.
    pub fn drain(&self, max: usize) -> (Vec<Outbound>, Option<CloseRequest>) {
        let mut into = Vec::new();
        let close = take_from(&mut self.queue(), &mut into, max);
        (into, close)
    }

    pub fn register_waker(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    pub fn close_request(&self) -> Option<CloseRequest> {
        self.queue().close
    }

    pub fn add_socket(&self, socket: Arc<Socket>) {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner()).push(socket);
    }

    pub fn remove_socket(&self, sid: Sid) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        sockets.retain(|socket| socket.id != sid);
        if sockets.is_empty() {
            sockets.shrink_to_fit();
        }
    }

    /// Returns the socket connected to namespace `path` on this session.
    pub fn socket(&self, path: &str) -> Option<Arc<Socket>> {
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|socket| socket.ns() == path)
            .cloned()
    }

    /// Marks the session closed and returns its sockets, once; later calls return nothing.
    pub fn finish(&self) -> Vec<Arc<Socket>> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Vec::new();
        }
        let mut queue = self.queue();
        queue.packets = VecDeque::new();
        queue.bytes = 0;
        if queue.close.is_none() {
            queue.close = Some(CloseRequest {
                reason: DisconnectReason::TransportClose,
                code: CLOSE_NORMAL,
            });
        }
        drop(queue);
        // Wakes a long-polling GET waiting on this session, which responds with a close packet.
        self.waker.wake();
        std::mem::take(&mut *self.sockets.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Returns whether no socket is connected on this session.
    pub fn sockets_empty(&self) -> bool {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    pub fn is_finished(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Moves up to `max` packets from `queue` into `into`. Returns the close request once no packet
/// queued before it is left.
fn take_from(queue: &mut Queue, into: &mut Vec<Outbound>, max: usize) -> Option<CloseRequest> {
    let count = queue.packets.len().min(max);
    let start = into.len();
    into.extend(queue.packets.drain(..count));
    queue.bytes -= into[start..].iter().map(payload_len).sum::<usize>();
    if !queue.packets.is_empty() {
        return None;
    }
    // A small buffer stays for the next packets, so a busy socket does not allocate per write.
    if queue.packets.capacity() > 64 {
        queue.packets = VecDeque::new();
    }
    queue.close
}
