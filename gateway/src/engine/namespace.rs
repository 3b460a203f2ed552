//! A served namespace: its connected sockets, its adapter and its handler.
//!
//! The adapter is any `socketioxide_core` [`CoreAdapter`]; it reaches this pod's sockets through
//! [`Emitter`], this engine's [`SocketEmitter`]. The socket map lives outside [`Namespace`] so the
//! emitter does not depend on the adapter type.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{FusedStream, FuturesUnordered, Stream};
use serde::{Deserialize, Serialize};
use socketioxide_core::adapter::errors::{BroadcastError, SocketError};
use socketioxide_core::adapter::{
    AckStreamItem, BroadcastFlags, BroadcastIter, BroadcastOptions, CoreAdapter, CoreLocalAdapter, RemoteSocketData,
    Room, RoomParam, SocketEmitter,
};
use socketioxide_core::packet::Packet;
use socketioxide_core::parser::Parse;
use socketioxide_core::{Sid, Str, Uid, Value};
use socketioxide_parser_common::CommonParser;
use tokio::sync::oneshot;

use super::session::{DisconnectReason, Queued};
use super::socket::{AckSender, Socket, SocketOwner};
use super::websocket::CLOSE_NORMAL;
use crate::payload::Payload;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The gateway's callbacks for a namespace's sockets.
pub trait Handler<A>: Send + Sync + 'static {
    /// Runs before the CONNECT reply; an error is sent to the client as CONNECT_ERROR. Events
    /// the client sends meanwhile wait, so handlers are in place for the first one.
    fn authorize(&self, socket: SocketRef<A>, auth: Option<serde_json::Value>) -> BoxFuture<Result<(), String>>;
    /// Runs after the CONNECT reply is queued.
    fn on_connected(&self, socket: SocketRef<A>) -> BoxFuture<()>;
    /// Runs for each event from the client. A socket's events run one at a time, in order, in a
    /// task that ends when none is left.
    fn on_event(
        &self,
        socket: SocketRef<A>,
        event: String,
        args: Vec<Payload>,
        ack: Option<AckSender>,
    ) -> BoxFuture<()>;
    /// Runs once when the socket ends, after it stopped receiving broadcasts.
    fn on_disconnect(&self, socket: SocketRef<A>, reason: DisconnectReason) -> BoxFuture<()>;
}

/// The sockets of one namespace on this pod.
pub struct Sockets {
    map: RwLock<HashMap<Sid, Arc<Socket>>>,
}

impl Sockets {
    fn get(&self, sid: &Sid) -> Option<Arc<Socket>> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(sid).cloned()
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Cause of an ack from a client not arriving.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum AckError {
    #[error("no ack within the timeout")]
    Timeout,
    #[error("the socket disconnected before it acked")]
    Closed,
    #[error("the packet could not be queued for the socket")]
    NotSent,
}

type AckFuture = Pin<Box<dyn Future<Output = AckStreamItem<AckError>> + Send>>;

/// Acks from several local sockets, in the order they arrive.
pub struct AckStream {
    pending: FuturesUnordered<AckFuture>,
}

impl Stream for AckStream {
    type Item = AckStreamItem<AckError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.pending).poll_next(cx)
    }
}

impl FusedStream for AckStream {
    fn is_terminated(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The adapter's way to this pod's sockets of one namespace.
#[derive(Clone)]
pub struct Emitter {
    sockets: Weak<Sockets>,
    path: Str,
    server_id: Uid,
    ack_timeout: Duration,
}

impl Emitter {
    fn sockets(&self) -> Option<Arc<Sockets>> {
        self.sockets.upgrade()
    }
}

impl SocketEmitter for Emitter {
    type AckError = AckError;
    type AckStream = AckStream;

    fn get_all_sids(&self, filter: impl Fn(&Sid) -> bool) -> Vec<Sid> {
        let Some(sockets) = self.sockets() else {
            return Vec::new();
        };
        let map = sockets.map.read().unwrap_or_else(|p| p.into_inner());
        map.keys().filter(|sid| filter(sid)).copied().collect()
    }

    fn get_remote_sockets(&self, sids: BroadcastIter<'_>) -> Vec<RemoteSocketData> {
        let Some(sockets) = self.sockets() else {
            return Vec::new();
        };
        let map = sockets.map.read().unwrap_or_else(|p| p.into_inner());
        sids.filter(|sid| map.contains_key(sid))
            .map(|id| RemoteSocketData {
                id,
                server_id: self.server_id,
                ns: self.path.clone(),
            })
            .collect()
    }

    /// Queues `data` for each socket. A socket that is closing is skipped, and one whose queue
    /// overflows is disconnected as a slow consumer; neither fails the broadcast for the others.
    fn send_many(&self, sids: BroadcastIter<'_>, data: Value) -> Result<(), Vec<SocketError>> {
        let Some(sockets) = self.sockets() else {
            return Ok(());
        };
        let map = sockets.map.read().unwrap_or_else(|p| p.into_inner());
        for sid in sids {
            if let Some(socket) = map.get(&sid) {
                socket.send_value(&data);
            }
        }
        Ok(())
    }

    fn send_many_volatile(&self, sids: BroadcastIter<'_>, data: Value) {
        let _ = self.send_many(sids, data);
    }

    fn send_many_with_ack(
        &self,
        sids: BroadcastIter<'_>,
        packet: Packet,
        timeout: Option<Duration>,
    ) -> (Self::AckStream, u32) {
        let pending = FuturesUnordered::new();
        let timeout = timeout.unwrap_or(self.ack_timeout);
        let Some(sockets) = self.sockets() else {
            return (AckStream { pending }, 0);
        };
        let targets: Vec<Arc<Socket>> = {
            let map = sockets.map.read().unwrap_or_else(|p| p.into_inner());
            sids.filter_map(|sid| map.get(&sid).cloned()).collect()
        };
        for socket in targets {
            let (id, rx) = socket.register_ack();
            let mut packet = packet.clone();
            packet.inner.set_ack_id(i64::try_from(id).unwrap_or(i64::MAX));
            let sid = socket.id;
            let queued = socket.send_packet(packet);
            pending.push(Box::pin(wait_for_ack(sid, rx, timeout, queued)) as AckFuture);
        }
        let count = u32::try_from(pending.len()).unwrap_or(u32::MAX);
        (AckStream { pending }, count)
    }

    fn disconnect_many(&self, sids: Vec<Sid>) -> Result<(), Vec<SocketError>> {
        let Some(sockets) = self.sockets() else {
            return Ok(());
        };
        for sid in sids {
            if let Some(socket) = sockets.get(&sid) {
                socket.send_packet(Packet::disconnect(self.path.clone()));
                socket.end(DisconnectReason::ServerDisconnect);
            }
        }
        Ok(())
    }

    fn path(&self) -> &Str {
        &self.path
    }

    fn parser(&self) -> impl Parse {
        CommonParser
    }

    fn server_id(&self) -> Uid {
        self.server_id
    }

    fn ack_timeout(&self) -> Duration {
        self.ack_timeout
    }
}

async fn wait_for_ack(
    sid: Sid,
    rx: oneshot::Receiver<Value>,
    timeout: Duration,
    queued: Queued,
) -> AckStreamItem<AckError> {
    if queued != Queued::Yes {
        return (sid, Err(AckError::NotSent));
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(value)) => (sid, Ok(value)),
        Ok(Err(_)) => (sid, Err(AckError::Closed)),
        Err(_) => (sid, Err(AckError::Timeout)),
    }
}

/// One served namespace.
pub struct Namespace<A> {
    pub path: Str,
    sockets: Arc<Sockets>,
    pub adapter: Arc<A>,
    pub(crate) handler: Arc<dyn Handler<A>>,
    me: Weak<Namespace<A>>,
}

impl<A: CoreAdapter<Emitter>> Namespace<A> {
    /// Creates the namespace and its adapter; the caller runs `adapter.init`.
    pub fn new(
        path: &str,
        server_id: Uid,
        ack_timeout: Duration,
        adapter_state: &A::State,
        handler: Arc<dyn Handler<A>>,
    ) -> Arc<Namespace<A>> {
        let path = Str::from(path.to_string());
        let sockets = Arc::new(Sockets {
            map: RwLock::new(HashMap::new()),
        });
        let emitter = Emitter {
            sockets: Arc::downgrade(&sockets),
            path: path.clone(),
            server_id,
            ack_timeout,
        };
        let adapter = Arc::new(A::new(adapter_state, CoreLocalAdapter::new(emitter)));
        Arc::new_cyclic(|me| Namespace {
            path,
            sockets,
            adapter,
            handler,
            me: me.clone(),
        })
    }

    pub fn sockets(&self) -> &Sockets {
        &self.sockets
    }

    /// Creates a socket of this namespace on `session`, not yet connected.
    pub(crate) fn new_socket(&self, session: Arc<super::session::Session>) -> Arc<Socket> {
        let owner: Weak<dyn SocketOwner> = self.me.clone();
        Socket::new(self.path.clone(), session, owner)
    }

    pub(crate) fn insert(&self, socket: Arc<Socket>) {
        self.sockets
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(socket.id, socket);
    }

    pub(crate) fn remove(&self, sid: &Sid) -> Option<Arc<Socket>> {
        let mut map = self.sockets.map.write().unwrap_or_else(|p| p.into_inner());
        let removed = map.remove(sid);
        if map.capacity() > 64 && map.len() < map.capacity() / 4 {
            map.shrink_to_fit();
        }
        removed
    }

    /// Emits `event` with `data` to every socket in `rooms` across the fleet, or to the whole
    /// namespace when `rooms` is empty.
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        rooms: Vec<Room>,
        event: &str,
        data: &T,
    ) -> Result<(), BroadcastError> {
        let value = CommonParser.encode_value(data, Some(event))?;
        let mut opts = BroadcastOptions::default();
        if rooms.is_empty() {
            opts.add_flag(BroadcastFlags::Broadcast);
        }
        opts.rooms.extend(rooms);
        self.adapter
            .broadcast(Packet::event(self.path.clone(), value), opts)
            .await
    }

    /// Rooms with members on this pod, private rooms included.
    pub fn local_rooms(&self) -> usize {
        // socketioxide-core selects every local socket only with the broadcast flag.
        let mut opts = BroadcastOptions::default();
        opts.add_flag(BroadcastFlags::Local);
        opts.add_flag(BroadcastFlags::Broadcast);
        self.adapter.get_local().rooms(opts).len()
    }
}

impl<A: CoreAdapter<Emitter>> SocketOwner for Namespace<A> {
    fn socket_ended(&self, socket: Arc<Socket>, reason: DisconnectReason) {
        let Some(ns) = self.me.upgrade() else {
            return;
        };
        ns.remove(&socket.id);
        let handler = ns.handler.clone();
        let socket_ref = SocketRef { socket, ns };
        tokio::spawn(async move {
            let sid = socket_ref.socket.id;
            handler.on_disconnect(socket_ref.clone(), reason).await;
            // Whatever the handler did not leave goes now, on this pod only.
            socket_ref.ns.adapter.get_local().del_all(sid);
        });
    }
}

/// A socket together with its namespace: what handlers work with.
pub struct SocketRef<A> {
    pub socket: Arc<Socket>,
    pub ns: Arc<Namespace<A>>,
}

impl<A> Clone for SocketRef<A> {
    fn clone(&self) -> Self {
        SocketRef {
            socket: self.socket.clone(),
            ns: self.ns.clone(),
        }
    }
}

impl<A: CoreAdapter<Emitter>> SocketRef<A> {
    pub fn id(&self) -> Sid {
        self.socket.id
    }

    pub fn ns(&self) -> &str {
        self.socket.ns()
    }

    /// Joins `rooms` through the adapter, so other pods route the rooms' broadcasts here.
    pub async fn join(&self, rooms: impl RoomParam) -> Result<(), A::Error> {
        self.ns
            .adapter
            .add_sockets(BroadcastOptions::new(self.socket.id), rooms)
            .await
    }

    /// Leaves `rooms` through the adapter.
    pub async fn leave(&self, rooms: impl RoomParam) -> Result<(), A::Error> {
        self.ns
            .adapter
            .del_sockets(BroadcastOptions::new(self.socket.id), rooms)
            .await
    }

    /// Rooms this socket is in on this pod.
    pub fn rooms(&self) -> Vec<Room> {
        self.ns
            .adapter
            .get_local()
            .socket_rooms(self.socket.id)
            .into_iter()
            .collect()
    }

    /// Emits `event` with `data` to every socket in `room` across the fleet, this one included
    /// if it is a member.
    pub async fn emit_to_room<T: Serialize + ?Sized>(
        &self,
        room: Room,
        event: &str,
        data: &T,
    ) -> Result<(), BroadcastError> {
        self.ns.broadcast(vec![room], event, data).await
    }

    /// Disconnects the socket from its namespace and sends the client a DISCONNECT packet.
    pub fn disconnect(&self) {
        self.socket.send_packet(Packet::disconnect(self.ns.path.clone()));
        self.socket.end(DisconnectReason::ServerDisconnect);
    }

    /// Ends the whole connection with websocket close code `code`.
    pub fn close_connection(&self, reason: DisconnectReason) {
        self.socket.session().request_close(reason, CLOSE_NORMAL);
    }
}
