//! The adapter of one namespace: socketioxide's `CoreAdapter` on top of the shared Redis state.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock, Weak},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde::Serialize;
use socketioxide_core::{
    Sid, Uid,
    adapter::{
        BroadcastFlags, BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter, RemoteSocketData, Room,
        RoomParam, SocketEmitter, Spawnable,
        errors::BroadcastError,
        remote_packet::{RequestIn, RequestOut, RequestTypeIn, RequestTypeOut, Response, ResponseType, ResponseTypeId},
    },
    packet::Packet,
};

use super::{
    Error, RedisAdapterState, Shared,
    ack::{AckStream, Expected, PendingGuard, PendingRequests, Reporter, collect_responses, response_request_id},
    channel::{ChannelKind, escape},
    metrics::{DropReason, RequestKind},
};

/// How long after a lost subscription publishes are compared with the channel's recent maximum.
const RECOVERY_WINDOW: Duration = Duration::from_secs(30);
/// Channels whose recent receiver count is kept; older entries are dropped beyond this.
const RECENT_RECEIVERS_MAX: usize = 100_000;

/// Pause before a publish that reached no subscriber of a subscribed channel is sent again.
const UNDELIVERED_RETRY: Duration = Duration::from_millis(100);

/// How long a multi-room broadcast id is remembered to drop its copies from the other rooms' channels.
const RECENT_IDS_TTL: Duration = Duration::from_secs(60);
const RECENT_IDS_MAX: usize = 100_000;

/// Destination of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// This pod only.
    Local,
    /// One other pod, known by id (operations on a remote socket handle).
    Pod(Uid),
    /// The pod of a socket that is not on this pod: its private room channel reaches it.
    Socket(Sid),
    /// The channels of the listed rooms, and the local members.
    Rooms,
    /// Every pod of the namespace, and the local sockets.
    Namespace,
}

impl Target {
    fn includes_local(&self) -> bool {
        !matches!(self, Self::Pod(_) | Self::Socket(_))
    }
}

/// Redis adapter of one namespace.
pub struct RedisAdapter<E> {
    local: CoreLocalAdapter<E>,
    shared: Arc<Shared>,
    /// Escaped namespace path, as used in channel names.
    namespace: String,
    uid: Uid,
    this: OnceLock<Weak<Self>>,
    pending: PendingRequests,
    /// Other pods and when they were last heard from.
    peers: Mutex<Vec<(Uid, Instant)>>,
    recent_ids: Mutex<RecentIds>,
    /// Most subscribers a recent publish reached, per room and namespace channel.
    recent_receivers: Mutex<HashMap<String, (usize, Instant)>>,
    /// Sockets joined through this adapter, with the time of the join. The sweep removes the room
    /// entries of disconnected ones and drops them from this map.
    joined: Mutex<HashMap<Sid, Instant>>,
    /// Room of each room channel this namespace subscribes to.
    room_channels: Mutex<HashMap<String, Room>>,
}

#[derive(Default)]
struct RecentIds {
    ids: HashSet<Sid>,
    order: VecDeque<(Instant, Sid)>,
}

impl RecentIds {
    /// Remembers `id`; returns false if it was already seen.
    fn insert(&mut self, id: Sid) -> bool {
        let now = Instant::now();
        while let Some((at, old)) = self.order.front() {
            if now.duration_since(*at) < RECENT_IDS_TTL && self.order.len() < RECENT_IDS_MAX {
                break;
            }
            self.ids.remove(old);
            self.order.pop_front();
        }
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back((now, id));
        true
    }
}

/// Future returned by `SocketIo::ns` for this adapter: it subscribes the namespace's channels.
pub struct InitFuture(Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>);

impl Future for InitFuture {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl Spawnable for InitFuture {
    fn spawn(self) {
        tokio::spawn(async move {
            if let Err(err) = self.await {
                tracing::error!(error = %err, "redis adapter failed to start for a dynamic namespace");
            }
        });
    }
}

// ==== CoreAdapter ====

impl<E: SocketEmitter> CoreAdapter<E> for RedisAdapter<E> {
    type Error = Error;
    type State = RedisAdapterState;
    type AckStream = AckStream<E>;
    type InitRes = InitFuture;

    fn new(state: &Self::State, local: CoreLocalAdapter<E>) -> Self {
        let namespace = escape(local.path());
        let uid = local.server_id();
        Self {
            local,
            shared: state.shared.clone(),
            namespace,
            uid,
            this: OnceLock::new(),
            pending: PendingRequests::default(),
            peers: Mutex::new(Vec::new()),
            recent_ids: Mutex::new(RecentIds::default()),
            recent_receivers: Mutex::new(HashMap::new()),
            joined: Mutex::new(HashMap::new()),
            room_channels: Mutex::new(HashMap::new()),
        }
    }

    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) -> Self::InitRes {
        InitFuture(Box::pin(async move {
            let _ = self.this.set(Arc::downgrade(&self));
            let handler: Arc<dyn super::NamespaceHandler> = self.clone();
            self.shared.register(&self.namespace, Arc::downgrade(&handler));

            let names = &self.shared.names;
            for channel in [
                names.namespace(&self.namespace),
                names.pod(&self.namespace, self.uid),
                names.response(&self.namespace, self.uid),
            ] {
                self.shared.subscriptions.ensure(&channel).await?;
            }
            self.send_heartbeat(RequestTypeOut::InitHeartbeat, None).await;
            tracing::info!(namespace = %self.local.path(), uid = %self.uid, "redis adapter ready");
            on_success();
            Ok(())
        }))
    }

    async fn close(&self) -> Result<(), Self::Error> {
        self.shared.unregister(&self.namespace);
        // The channel of the empty room name is the common prefix of this namespace's room channels.
        let prefix = self.shared.names.room(&self.namespace, "");
        let names = &self.shared.names;
        let mut channels = self.shared.subscriptions.wanted_with_prefix(&prefix);
        channels.push(names.namespace(&self.namespace));
        channels.push(names.pod(&self.namespace, self.uid));
        channels.push(names.response(&self.namespace, self.uid));
        for channel in channels {
            self.shared.subscriptions.release_if_unused(&channel, || false).await;
        }
        Ok(())
    }

    async fn server_count(&self) -> Result<u16, Self::Error> {
        let channel = self.shared.names.namespace(&self.namespace);
        let count = self.shared.driver.subscriber_count(&channel).await?;
        Ok(u16::try_from(count).unwrap_or(u16::MAX).max(1))
    }

    async fn broadcast(&self, packet: Packet, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        let target = self.target(&opts);
        if target != Target::Local {
            let request = RequestOut::new(self.uid, RequestTypeOut::Broadcast(&packet), &opts);
            self.publish_fanout(&target, &opts, &request)
                .await
                .map_err(to_broadcast_error)?;
        }
        if target.includes_local() {
            self.local.broadcast(packet, opts)?;
        }
        Ok(())
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<Self::AckStream, Self::Error> {
        let target = self.target(&opts);
        if target == Target::Local {
            let (stream, _count) = self.local.broadcast_with_ack(packet, opts, timeout);
            return Ok(AckStream::local(stream));
        }

        let request =
            RequestOut::new(self.uid, RequestTypeOut::BroadcastWithAck(&packet), &opts).with_ack_timeout(timeout);
        let (guard, rx) = PendingGuard::register(&self.pending, request.id);
        let expected = self.publish_request(&target, &opts, &request).await?;

        let local_opts = if target.includes_local() { opts } else { nobody() };
        let (local_stream, _count) = self.local.broadcast_with_ack(packet, local_opts, timeout);
        let wait = self.shared.config.request_timeout + timeout.unwrap_or_else(|| self.local.ack_timeout());
        Ok(AckStream::new(local_stream, rx, guard, expected, wait, self.reporter()))
    }

    async fn add_sockets(&self, opts: BroadcastOptions, rooms: impl RoomParam) -> Result<(), Self::Error> {
        let rooms: Vec<Room> = rooms.into_room_iter().collect();
        let target = self.target(&opts);
        if target != Target::Local {
            let request = RequestOut::new(self.uid, RequestTypeOut::AddSockets(&rooms), &opts);
            self.publish_fanout(&target, &opts, &request).await?;
        }
        if target.includes_local() {
            self.add_local(opts, rooms).await?;
        }
        Ok(())
    }

    async fn del_sockets(&self, opts: BroadcastOptions, rooms: impl RoomParam) -> Result<(), Self::Error> {
        let rooms: Vec<Room> = rooms.into_room_iter().collect();
        let target = self.target(&opts);
        if target != Target::Local {
            let request = RequestOut::new(self.uid, RequestTypeOut::DelSockets(&rooms), &opts);
            self.publish_fanout(&target, &opts, &request).await?;
        }
        if target.includes_local() {
            self.del_local(opts, rooms).await;
        }
        Ok(())
    }

    async fn disconnect_socket(&self, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        let target = self.target(&opts);
        if target != Target::Local {
            let request = RequestOut::new(self.uid, RequestTypeOut::DisconnectSockets, &opts);
            self.publish_fanout(&target, &opts, &request)
                .await
                .map_err(to_broadcast_error)?;
        }
        if target.includes_local() {
            self.local.disconnect_socket(opts).map_err(BroadcastError::Socket)?;
        }
        Ok(())
    }

    async fn rooms(&self, opts: BroadcastOptions) -> Result<Vec<Room>, Self::Error> {
        let target = self.target(&opts);
        if target == Target::Local {
            return Ok(self.local.rooms(opts).into_iter().collect());
        }

        let request = RequestOut::new(self.uid, RequestTypeOut::AllRooms, &opts);
        let (_guard, rx) = PendingGuard::register(&self.pending, request.id);
        let expected = self.publish_request(&target, &opts, &request).await?;

        let mut rooms = if target.includes_local() {
            self.local.rooms(opts)
        } else {
            HashSet::new()
        };
        let responses = collect_responses::<()>(
            rx,
            ResponseTypeId::AllRooms,
            RequestKind::Rooms,
            expected,
            self.shared.config.request_timeout,
            &self.reporter(),
        )
        .await;
        for response in responses {
            if let ResponseType::AllRooms(remote) = response {
                rooms.extend(remote);
            }
        }
        Ok(rooms.into_iter().collect())
    }

    async fn fetch_sockets(&self, opts: BroadcastOptions) -> Result<Vec<RemoteSocketData>, Self::Error> {
        let target = self.target(&opts);
        if target == Target::Local {
            return Ok(self.local.fetch_sockets(opts));
        }

        let request = RequestOut::new(self.uid, RequestTypeOut::FetchSockets, &opts);
        let (_guard, rx) = PendingGuard::register(&self.pending, request.id);
        let expected = self.publish_request(&target, &opts, &request).await?;

        let mut sockets = if target.includes_local() {
            self.local.fetch_sockets(opts)
        } else {
            Vec::new()
        };
        let responses = collect_responses::<RemoteSocketData>(
            rx,
            ResponseTypeId::FetchSockets,
            RequestKind::FetchSockets,
            expected,
            self.shared.config.request_timeout,
            &self.reporter(),
        )
        .await;
        for response in responses {
            if let ResponseType::FetchSockets(remote) = response {
                sockets.extend(remote);
            }
        }
        Ok(sockets)
    }

    fn get_local(&self) -> &CoreLocalAdapter<E> {
        &self.local
    }
}

impl<E> DefinedAdapter for RedisAdapter<E> {}

fn to_broadcast_error(err: Error) -> BroadcastError {
    BroadcastError::Adapter(err.into())
}

/// Options that match no socket, for the local half of an operation aimed at another pod.
fn nobody() -> BroadcastOptions {
    let mut opts = BroadcastOptions::default();
    opts.add_flag(BroadcastFlags::Local);
    opts
}

// ==== Routing and publishing ====

impl<E: SocketEmitter> RedisAdapter<E> {
    fn target(&self, opts: &BroadcastOptions) -> Target {
        if opts.is_local(self.uid) {
            return Target::Local;
        }
        let broadcast = opts.has_flag(BroadcastFlags::Broadcast);
        if opts.rooms.is_empty() && !broadcast {
            if let Some(server_id) = opts.server_id {
                return Target::Pod(server_id);
            }
            return match opts.sid {
                Some(sid) if !self.is_connected(sid) => Target::Socket(sid),
                _ => Target::Local,
            };
        }
        if opts.rooms.is_empty() {
            Target::Namespace
        } else {
            Target::Rooms
        }
    }

    fn is_connected(&self, sid: Sid) -> bool {
        !self.local.fetch_sockets(BroadcastOptions::new(sid)).is_empty()
    }

    /// Returns the channels of a message that needs no response: one per room for [`Target::Rooms`].
    fn fanout_channels(&self, target: &Target, opts: &BroadcastOptions) -> Vec<(ChannelKind, String)> {
        let names = &self.shared.names;
        match target {
            Target::Local => Vec::new(),
            Target::Pod(uid) => vec![(ChannelKind::Pod, names.pod(&self.namespace, *uid))],
            Target::Socket(sid) => vec![(ChannelKind::Room, names.room(&self.namespace, sid.as_str()))],
            Target::Rooms => opts
                .rooms
                .iter()
                .map(|room| (ChannelKind::Room, names.room(&self.namespace, room)))
                .collect(),
            Target::Namespace => vec![(ChannelKind::Namespace, names.namespace(&self.namespace))],
        }
    }

    /// Returns the one channel of a request that waits for responses. Several rooms would reach a
    /// pod once per room, so such a request goes to the namespace channel instead.
    fn request_channel(&self, target: &Target, opts: &BroadcastOptions) -> (ChannelKind, String) {
        match target {
            Target::Rooms if opts.rooms.len() > 1 => {
                (ChannelKind::Namespace, self.shared.names.namespace(&self.namespace))
            }
            _ => self
                .fanout_channels(target, opts)
                .into_iter()
                .next()
                .unwrap_or_else(|| (ChannelKind::Namespace, self.shared.names.namespace(&self.namespace))),
        }
    }

    async fn publish_fanout(
        &self,
        target: &Target,
        opts: &BroadcastOptions,
        request: &RequestOut<'_>,
    ) -> Result<(), Error> {
        let payload = rmp_serde::to_vec_named(request)?;
        for (kind, channel) in self.fanout_channels(target, opts) {
            self.publish(kind, &channel, &payload).await?;
        }
        Ok(())
    }

    /// Publishes a request that waits for responses and returns the pods to wait for.
    async fn publish_request(
        &self,
        target: &Target,
        opts: &BroadcastOptions,
        request: &RequestOut<'_>,
    ) -> Result<Expected, Error> {
        let payload = rmp_serde::to_vec_named(request)?;
        let (kind, channel) = self.request_channel(target, opts);
        let known_peers = self.live_peers();
        let receivers = self.publish(kind, &channel, &payload).await?;
        // Redis counts this pod's own subscription too; its own copy is ignored on arrival.
        // NOTE: a room channel this pod is subscribing or unsubscribing at this moment may be
        // counted wrongly by one, which ends the request one response early or at the timeout.
        let own = usize::from(self.shared.subscriptions.is_subscribed(&channel));
        Ok(Expected {
            count: receivers.saturating_sub(own),
            known_peers,
        })
    }

    /// Publishes `payload` and returns how many subscribers Redis delivered it to.
    ///
    /// A room or namespace channel this pod subscribes to must count at least this pod. A reply of
    /// 0 there means the shard lost its subscriptions (after a failover the new primary has none
    /// until each pod subscribes again), so nobody received the message and it is sent again
    /// every [`UNDELIVERED_RETRY`] until the request timeout. A lost subscription of this pod is
    /// waited for first, because the other pods' subscriptions of that shard are likely lost too.
    /// Still undelivered at the timeout, it is counted and the caller gets
    /// [`Error::NotDelivered`].
    ///
    /// A reply above 0 is not sent again, because the pods that got it would get it twice. Within
    /// [`RECOVERY_WINDOW`] of a lost subscription a reply below the channel's recent maximum is
    /// counted as a short publish instead.
    /// NOTE: those pods still miss the message, and a reply is compared only with replies this
    /// pod saw, so a first publish after the failover is never counted short.
    async fn publish(&self, kind: ChannelKind, channel: &str, payload: &[u8]) -> Result<usize, Error> {
        if !matches!(kind, ChannelKind::Room | ChannelKind::Namespace) {
            return self.publish_once(kind, channel, payload).await;
        }
        let subscriptions = &self.shared.subscriptions;
        let deadline = Instant::now() + self.shared.config.request_timeout;
        while subscriptions.is_lost(channel) && Instant::now() < deadline {
            tokio::time::sleep(UNDELIVERED_RETRY).await;
        }
        // Once this pod was subscribed, a reply of 0 is a loss even if the subscription is marked
        // lost between two attempts.
        let mut expects_own = subscriptions.is_lost(channel) || subscriptions.is_confirmed(channel);
        loop {
            let receivers = self.publish_once(kind, channel, payload).await?;
            expects_own |= subscriptions.is_confirmed(channel);
            if receivers > 0 || !expects_own {
                self.check_receivers(channel, receivers);
                return Ok(receivers);
            }
            if Instant::now() >= deadline {
                self.shared.metrics.record_undelivered_publish();
                tracing::warn!(
                    channel,
                    "publish reached no subscriber after retries; redis lost the shard's subscriptions"
                );
                return Err(Error::NotDelivered {
                    channel: channel.to_owned(),
                });
            }
            self.shared.metrics.record_publish_retry();
            tracing::debug!(
                channel,
                "publish reached no subscriber of a subscribed channel, sending it again"
            );
            tokio::time::sleep(UNDELIVERED_RETRY).await;
            while subscriptions.is_lost(channel) && Instant::now() < deadline {
                tokio::time::sleep(UNDELIVERED_RETRY).await;
            }
        }
    }

    /// Counts a publish that reached fewer subscribers than the channel's recent maximum while
    /// this pod restores lost subscriptions: other pods are likely still subscribing again and
    /// missed it. Outside that window fewer receivers mean pods left the room, so the count only
    /// follows the reply.
    fn check_receivers(&self, channel: &str, receivers: usize) {
        let recovering = self.shared.metrics.lost_within(RECOVERY_WINDOW);
        let mut recent = self.recent_receivers.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= RECENT_RECEIVERS_MAX {
            recent.retain(|_, (_, at)| at.elapsed() < RECOVERY_WINDOW);
        }
        let now = Instant::now();
        let entry = recent.entry(channel.to_owned()).or_insert((receivers, now));
        let previous = if entry.1.elapsed() < RECOVERY_WINDOW {
            entry.0
        } else {
            receivers
        };
        if recovering && receivers < previous {
            self.shared.metrics.record_short_publish();
            tracing::warn!(
                channel,
                receivers,
                previous,
                "publish reached fewer subscribers than before the lost subscriptions; some pods likely missed it"
            );
            entry.1 = now;
        } else {
            *entry = (receivers, now);
        }
    }

    async fn publish_once(&self, kind: ChannelKind, channel: &str, payload: &[u8]) -> Result<usize, Error> {
        match self.shared.driver.publish(channel, payload).await {
            Ok(receivers) => {
                self.shared.metrics.record_published(kind, payload.len());
                Ok(receivers)
            }
            Err(err) => {
                self.shared.metrics.record_publish_error();
                tracing::warn!(channel, error = %err, "publish failed");
                Err(err.into())
            }
        }
    }

    async fn send_response<D: Serialize + std::fmt::Debug>(&self, origin: Uid, request_id: Sid, response: Response<D>) {
        let channel = self.shared.names.response(&self.namespace, origin);
        let payload = match rmp_serde::to_vec_named(&(request_id, response)) {
            Ok(payload) => payload,
            Err(err) => {
                tracing::warn!(error = %err, "could not encode a response");
                return;
            }
        };
        let _ = self.publish(ChannelKind::Response, &channel, &payload).await;
    }

    async fn send_heartbeat(&self, kind: RequestTypeOut<'_>, target: Option<Uid>) {
        let request = RequestOut::new_empty(self.uid, kind);
        let Ok(payload) = rmp_serde::to_vec_named(&request) else {
            return;
        };
        let names = &self.shared.names;
        let (kind, channel) = match target {
            Some(uid) => (ChannelKind::Pod, names.pod(&self.namespace, uid)),
            None => (ChannelKind::Namespace, names.namespace(&self.namespace)),
        };
        let _ = self.publish(kind, &channel, &payload).await;
    }

    pub(super) fn live_peers(&self) -> Vec<Uid> {
        let horizon = self.shared.config.heartbeat_interval * 3;
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.retain(|(_, seen)| seen.elapsed() < horizon);
        peers.iter().map(|(uid, _)| *uid).collect()
    }

    fn record_peer(&self, uid: Uid) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        match peers.iter_mut().find(|(known, _)| *known == uid) {
            Some((_, seen)) => *seen = Instant::now(),
            None => peers.push((uid, Instant::now())),
        }
    }

    fn reporter(&self) -> Reporter {
        Reporter {
            metrics: self.shared.metrics.clone(),
            partials: self.shared.partials.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

// ==== Rooms and subscriptions ====

impl<E: SocketEmitter> RedisAdapter<E> {
    fn room_channel(&self, room: &Room) -> String {
        self.shared.names.room(&self.namespace, room)
    }

    fn has_local_members(&self, room: &Room) -> bool {
        let mut opts = BroadcastOptions::default();
        opts.rooms.push(room.clone());
        !self.local.sockets(opts).is_empty()
    }

    /// Subscribes the room channels first, then adds the local sockets, so a member never exists
    /// without a subscription.
    async fn add_local(&self, opts: BroadcastOptions, rooms: Vec<Room>) -> Result<(), Error> {
        let sids = self.local.sockets(opts);
        if sids.is_empty() || rooms.is_empty() {
            return Ok(());
        }

        for (index, room) in rooms.iter().enumerate() {
            let channel = self.room_channel(room);
            self.room_channels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(channel.clone(), room.clone());
            if let Err(err) = self.shared.subscriptions.ensure(&channel).await {
                self.room_channels
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&channel);
                for subscribed in &rooms[..index] {
                    self.release_room(subscribed).await;
                }
                return Err(err.into());
            }
        }

        let now = Instant::now();
        let mut not_connected = Vec::new();
        for sid in sids {
            self.local.add_all(sid, rooms.clone());
            self.joined.lock().unwrap_or_else(|e| e.into_inner()).insert(sid, now);
            if !self.is_connected(sid) {
                not_connected.push(sid);
            }
        }

        // A join can land after its socket disconnected (socketioxide removes a socket's rooms once,
        // at disconnect), or before its socket is connected (in a connect middleware). After a short
        // grace, entries of sockets that are still not connected are removed.
        if !not_connected.is_empty()
            && let Some(this) = self.this.get().and_then(Weak::upgrade)
        {
            let grace = self.shared.config.join_grace;
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                for sid in not_connected {
                    if !this.is_connected(sid) {
                        this.forget_socket(sid).await;
                    }
                }
            });
        }
        Ok(())
    }

    async fn del_local(&self, opts: BroadcastOptions, rooms: Vec<Room>) {
        self.local.del_sockets(opts, rooms.clone());
        for room in &rooms {
            self.release_room(room).await;
        }
    }

    /// Unsubscribes the room's channel if no local socket is in the room any more.
    async fn release_room(&self, room: &Room) {
        let channel = self.room_channel(room);
        let released = self
            .shared
            .subscriptions
            .release_if_unused(&channel, || self.has_local_members(room))
            .await;
        if released {
            self.room_channels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&channel);
        }
    }

    /// Removes the room entries of a socket that is gone and releases its rooms' channels.
    async fn forget_socket(&self, sid: Sid) {
        let rooms = self.local.socket_rooms(sid);
        self.local.del_all(sid);
        self.joined.lock().unwrap_or_else(|e| e.into_inner()).remove(&sid);
        if !rooms.is_empty() {
            tracing::debug!(%sid, rooms = rooms.len(), "removed rooms of a socket that is not connected");
        }
        for room in &rooms {
            self.release_room(room).await;
        }
    }

    /// Makes subscriptions agree with local rooms. It removes the rooms of disconnected sockets,
    /// unsubscribes rooms without local members and subscribes rooms joined without the adapter
    /// (e.g. through the synchronous `socket.join`).
    pub(super) async fn sweep(&self) {
        let grace = self.shared.config.join_grace;
        let stale: Vec<Sid> = {
            let joined = self.joined.lock().unwrap_or_else(|e| e.into_inner());
            joined
                .iter()
                .filter(|(_, at)| at.elapsed() >= grace)
                .map(|(sid, _)| *sid)
                .collect()
        };
        for sid in stale {
            if !self.is_connected(sid) {
                self.forget_socket(sid).await;
            }
        }

        let mut all = BroadcastOptions::default();
        all.add_flag(BroadcastFlags::Broadcast);
        let rooms: HashSet<Room> = self.local.rooms(all);
        let wanted: HashMap<String, Room> = rooms.into_iter().map(|room| (self.room_channel(&room), room)).collect();

        let subscribed: Vec<(String, Room)> = self
            .room_channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(channel, room)| (channel.clone(), room.clone()))
            .collect();
        for (channel, room) in &subscribed {
            if !wanted.contains_key(channel) {
                let released = self
                    .shared
                    .subscriptions
                    .release_if_unused(channel, || self.has_local_members(room))
                    .await;
                if released {
                    self.room_channels
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(channel);
                    self.shared.metrics.record_sweep(false);
                }
            }
        }
        for (channel, room) in wanted {
            if self.shared.subscriptions.is_wanted(&channel) {
                continue;
            }
            self.room_channels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(channel.clone(), room.clone());
            match self.shared.subscriptions.ensure(&channel).await {
                Ok(()) => {
                    self.shared.metrics.record_sweep(true);
                    tracing::warn!(room = %room, "room had local members but no subscription (joined without the adapter), subscribed");
                }
                Err(err) => tracing::warn!(room = %room, error = %err, "sweep could not subscribe a room"),
            }
        }

        // Sent here rather than by its own timer: the sweep already runs per namespace.
        self.send_heartbeat(RequestTypeOut::Heartbeat, None).await;
    }
}

// ==== Requests from other pods ====

impl<E: SocketEmitter> RedisAdapter<E> {
    pub(super) fn handle_message(self: Arc<Self>, kind: ChannelKind, channel: &str, payload: Vec<u8>) {
        if kind == ChannelKind::Response {
            match response_request_id(&payload) {
                Ok(id) => {
                    let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    match pending.get(&id) {
                        Some(tx) => {
                            let _ = tx.send(payload);
                        }
                        None => tracing::debug!(%id, "response after its request ended, ignored"),
                    }
                }
                Err(err) => {
                    self.shared.metrics.record_dropped(DropReason::DecodeFailed);
                    tracing::warn!(channel, error = %err, "undecodable response");
                }
            }
            return;
        }

        let request: RequestIn = match rmp_serde::from_slice(&payload) {
            Ok(request) => request,
            Err(err) => {
                self.shared.metrics.record_dropped(DropReason::DecodeFailed);
                tracing::warn!(channel, error = %err, "undecodable request");
                return;
            }
        };
        if request.node_id == self.uid {
            return;
        }
        self.record_peer(request.node_id);

        let fanned_out = kind == ChannelKind::Room && request.opts.as_ref().is_some_and(|o| o.rooms.len() > 1);
        if fanned_out
            && !self
                .recent_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(request.id)
        {
            return;
        }
        if kind == ChannelKind::Room && !self.shared.subscriptions.is_wanted(channel) {
            // A failed unsubscribe left this channel; its messages have no local member to reach.
            let shared = self.shared.clone();
            let channel = channel.to_owned();
            tokio::spawn(async move { shared.subscriptions.drop_unwanted(&channel).await });
        }
        self.handle_request(request);
    }

    fn handle_request(self: Arc<Self>, request: RequestIn) {
        let RequestIn {
            node_id,
            id,
            r#type,
            opts,
            ack_timeout,
            ..
        } = request;
        match (r#type, opts) {
            (RequestTypeIn::Heartbeat, _) => {}
            (RequestTypeIn::InitHeartbeat, _) => {
                tokio::spawn(async move { self.send_heartbeat(RequestTypeOut::Heartbeat, Some(node_id)).await });
            }
            (RequestTypeIn::Broadcast(packet), Some(opts)) => {
                if let Err(err) = self.local.broadcast(packet, opts) {
                    tracing::debug!(error = ?err, "broadcast from another pod reached closed or full sockets");
                }
            }
            (RequestTypeIn::BroadcastWithAck(packet), Some(opts)) => {
                let (stream, count) = self.local.broadcast_with_ack(packet, opts, ack_timeout);
                tokio::spawn(async move {
                    let count = Response {
                        node_id: self.uid,
                        r#type: ResponseType::<()>::BroadcastAckCount(count),
                    };
                    self.send_response(node_id, id, count).await;
                    let mut stream = std::pin::pin!(stream);
                    while let Some(ack) = stream.next().await {
                        let response = Response {
                            node_id: self.uid,
                            r#type: ResponseType::BroadcastAck(ack),
                        };
                        self.send_response(node_id, id, response).await;
                    }
                });
            }
            (RequestTypeIn::DisconnectSockets, Some(opts)) => {
                if let Err(err) = self.local.disconnect_socket(opts) {
                    tracing::debug!(error = ?err, "disconnect from another pod failed for some sockets");
                }
            }
            (RequestTypeIn::AllRooms, Some(opts)) => {
                let rooms = self.local.rooms(opts);
                tokio::spawn(async move {
                    let response = Response {
                        node_id: self.uid,
                        r#type: ResponseType::<()>::AllRooms(rooms),
                    };
                    self.send_response(node_id, id, response).await;
                });
            }
            (RequestTypeIn::FetchSockets, Some(opts)) => {
                let sockets = self.local.fetch_sockets(opts);
                tokio::spawn(async move {
                    let response = Response {
                        node_id: self.uid,
                        r#type: ResponseType::FetchSockets(sockets),
                    };
                    self.send_response(node_id, id, response).await;
                });
            }
            (RequestTypeIn::AddSockets(rooms), Some(opts)) => {
                // NOTE: the join is applied after the room's SSUBSCRIBE, asynchronously, so a
                // broadcast sent right after a remote join may miss the sockets it added.
                tokio::spawn(async move {
                    if let Err(err) = self.add_local(opts, rooms).await {
                        tracing::warn!(error = %err, "join requested by another pod failed");
                    }
                });
            }
            (RequestTypeIn::DelSockets(rooms), Some(opts)) => {
                tokio::spawn(async move { self.del_local(opts, rooms).await });
            }
            (other, None) => tracing::warn!(node = %node_id, request = ?other, "request without options, ignored"),
            (other, Some(_)) => tracing::warn!(node = %node_id, request = ?other, "unknown request, ignored"),
        }
    }
}
