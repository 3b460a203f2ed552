//! A Socket.IO socket: one client's membership of one namespace, carried by a session.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde::Serialize;
use socketioxide_core::packet::Packet;
use socketioxide_core::parser::Parse;
use socketioxide_core::{Sid, Str, Value};
use socketioxide_parser_common::CommonParser;
use tokio::sync::oneshot;

use super::session::{DisconnectReason, Queued, Session};

/// Acks the server waits for from this socket's client.
#[derive(Default)]
struct Acks {
    next_id: u64,
    /// Empty (no allocation) while nothing waits.
    waiting: Vec<(u64, oneshot::Sender<Value>)>,
}

/// The namespace side of a socket, notified when the socket ends.
pub(crate) trait SocketOwner: Send + Sync {
    /// Removes the connected `socket` and runs the handler's disconnect.
    fn socket_ended(&self, socket: Arc<Socket>, reason: DisconnectReason);
}

/// A client event waiting for the events before it to be handled.
pub(crate) struct QueuedEvent {
    pub event: String,
    pub args: Vec<crate::payload::Payload>,
    pub ack: Option<u64>,
}

/// Client events of one socket, handled one at a time in the order they arrived.
#[derive(Default)]
struct Inbox {
    /// Whether a task is handling this socket's events.
    running: bool,
    /// Empty (no allocation) while nothing waits.
    events: VecDeque<QueuedEvent>,
}

/// Outcome of [`Socket::queue_event`].
pub(crate) enum Enqueued {
    /// A task is already handling this socket's events and will take this one.
    Waiting,
    /// No task is running: the caller starts one.
    StartTask,
    /// More than the limit of events wait; the event was dropped.
    Full,
}

const AUTHORIZING: u8 = 0;
const CONNECTED: u8 = 1;
const ENDED: u8 = 2;

pub struct Socket {
    pub id: Sid,
    ns: Str,
    session: Arc<Session>,
    owner: Weak<dyn SocketOwner>,
    state: AtomicU8,
    acks: Mutex<Acks>,
    inbox: Mutex<Inbox>,
    extension: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl Socket {
    pub(crate) fn new(ns: Str, session: Arc<Session>, owner: Weak<dyn SocketOwner>) -> Arc<Socket> {
        Arc::new(Socket {
            id: Sid::new(),
            ns,
            session,
            owner,
            state: AtomicU8::new(AUTHORIZING),
            acks: Mutex::new(Acks::default()),
            inbox: Mutex::new(Inbox::default()),
            extension: OnceLock::new(),
        })
    }

    /// Path of the socket's namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Returns whether the socket is connected, from the CONNECT reply until it ends.
    pub fn is_connected(&self) -> bool {
        self.state.load(Ordering::SeqCst) == CONNECTED
    }

    /// Returns whether the socket has ended (it may have ended while it was being authorized).
    pub fn has_ended(&self) -> bool {
        self.state.load(Ordering::SeqCst) == ENDED
    }

    /// Moves an authorized socket to connected; false if it ended meanwhile.
    pub(crate) fn mark_connected(&self) -> bool {
        self.state
            .compare_exchange(AUTHORIZING, CONNECTED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Ends the socket once. A connected socket is removed from its namespace, which runs the
    /// handler's disconnect; a socket still being authorized is finished by its connect flow.
    pub fn end(self: &Arc<Self>, reason: DisconnectReason) {
        let previous = self.state.swap(ENDED, Ordering::SeqCst);
        if previous == CONNECTED {
            self.session.remove_socket(self.id);
            self.drop_acks();
            if let Some(owner) = self.owner.upgrade() {
                owner.socket_ended(self.clone(), reason);
            }
        }
    }

    /// Stores the handler's per-socket data; only the first call stores.
    pub fn set_extension<T: Any + Send + Sync>(&self, value: T) {
        let _ = self.extension.set(Box::new(value));
    }

    pub fn extension<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.extension.get().and_then(|value| value.downcast_ref::<T>())
    }

    /// Queues an encoded packet for this socket's client.
    pub fn send_value(&self, value: &Value) -> Queued {
        self.session.push_value(value)
    }

    /// Queues a packet for this socket's client.
    pub fn send_packet(&self, packet: Packet) -> Queued {
        self.send_value(&CommonParser.encode(packet))
    }

    /// Queues event `event` with `data` as its one argument.
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<Queued, socketioxide_core::parser::ParserError> {
        let value = CommonParser.encode_value(data, Some(event))?;
        Ok(self.send_packet(Packet::event(self.ns.clone(), value)))
    }

    /// Queues a client event behind the ones not yet handled; at most `limit` may wait.
    pub(crate) fn queue_event(&self, event: QueuedEvent, limit: usize) -> Enqueued {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if inbox.events.len() >= limit {
            return Enqueued::Full;
        }
        inbox.events.push_back(event);
        if inbox.running {
            Enqueued::Waiting
        } else {
            inbox.running = true;
            Enqueued::StartTask
        }
    }

    /// Takes the next event to handle; once none is left, the handling task ends.
    pub(crate) fn next_event(&self) -> Option<QueuedEvent> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let next = inbox.events.pop_front();
        if next.is_none() {
            inbox.running = false;
            inbox.events = VecDeque::new();
        }
        next
    }

    /// Registers an ack the server waits for; returns its id and the receiver of the client's ack.
    pub(crate) fn register_ack(&self) -> (u64, oneshot::Receiver<Value>) {
        let (tx, rx) = oneshot::channel();
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        acks.waiting.retain(|(_, waiting)| !waiting.is_closed());
        let id = acks.next_id;
        acks.next_id += 1;
        acks.waiting.push((id, tx));
        (id, rx)
    }

    /// Delivers the client's ack `id`. An ack no one waits for is ignored.
    pub(crate) fn resolve_ack(&self, id: u64, data: Value) {
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(index) = acks.waiting.iter().position(|(waiting, _)| *waiting == id) {
            let (_, tx) = acks.waiting.swap_remove(index);
            let _ = tx.send(data);
        }
        if acks.waiting.is_empty() {
            acks.waiting = Vec::new();
        }
    }

    /// Drops every waiting ack, so their receivers see the socket closed.
    pub(crate) fn drop_acks(&self) {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).waiting = Vec::new();
    }
}

/// Sends the ack of one client event that requested one.
pub struct AckSender {
    socket: Arc<Socket>,
    id: u64,
}

impl AckSender {
    pub(crate) fn new(socket: Arc<Socket>, id: u64) -> AckSender {
        AckSender { socket, id }
    }

    /// Sends `data` as the ack's one argument.
    pub fn send<T: Serialize + ?Sized>(self, data: &T) -> Result<Queued, socketioxide_core::parser::ParserError> {
        let value = CommonParser.encode_value(data, None)?;
        let id = i64::try_from(self.id).unwrap_or(i64::MAX);
        Ok(self.socket.send_packet(Packet::ack(self.socket.ns.clone(), value, id)))
    }
}
