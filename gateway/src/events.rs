//! Per-socket behaviour: auth at connect, the `join`, `leave` and `publish` events with their
//! acks, and leaving rooms on disconnect.
//!
//! Joins and leaves go through the adapter, so the fleet adapter subscribes and unsubscribes the
//! rooms' Redis channels.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{Value, json};
use socketioxide_core::adapter::CoreAdapter;

use crate::auth::{Grants, Verifier};
use crate::engine::namespace::{BoxFuture, Emitter, Handler, SocketRef};
use crate::engine::packet::RESERVED_EVENTS;
use crate::engine::session::DisconnectReason;
use crate::engine::socket::AckSender;
use crate::metrics::{Metrics, RejectReason};
use crate::payload::Payload;
use crate::user_limit::UserLimiter;

/// Maximum room name length in bytes.
pub const MAX_ROOM_LEN: usize = 256;
/// Maximum event name length in bytes.
pub const MAX_EVENT_LEN: usize = 128;

const COUNT_NEW: u8 = 0;
const COUNT_COUNTED: u8 = 1;
const COUNT_GONE: u8 = 2;

/// What every socket handler needs.
pub struct SocketContext {
    pub metrics: Arc<Metrics>,
    pub verifier: Option<Arc<Verifier>>,
    pub user_limiter: Option<Arc<UserLimiter>>,
}

/// Per-socket state kept in the socket's extension.
struct SocketState {
    grants: Arc<Grants>,
    /// Whether the socket is counted in `socket_io_connected`: [`COUNT_NEW`], [`COUNT_COUNTED`]
    /// or [`COUNT_GONE`]. The connect and disconnect handlers may run in either order.
    count: AtomicU8,
}

struct RoomRequest {
    room: String,
}

struct PublishRequest {
    room: String,
    event: String,
    data: Payload,
}

/// The gateway's handler of every namespace it serves.
pub struct Gateway {
    context: Arc<SocketContext>,
    /// Shared by every socket without restrictions, so such a socket allocates no grants.
    unrestricted: Arc<Grants>,
}

impl Gateway {
    pub fn new(context: Arc<SocketContext>) -> Arc<Gateway> {
        Arc::new(Gateway {
            context,
            unrestricted: Arc::new(Grants::unrestricted()),
        })
    }
}

impl<A: CoreAdapter<Emitter>> Handler<A> for Gateway {
    fn authorize(&self, socket: SocketRef<A>, auth: Option<Value>) -> BoxFuture<Result<(), String>> {
        let context = self.context.clone();
        let unrestricted = self.unrestricted.clone();
        Box::pin(async move { authorize(socket, auth, context, unrestricted).await })
    }

    fn on_connected(&self, socket: SocketRef<A>) -> BoxFuture<()> {
        let context = self.context.clone();
        Box::pin(async move { on_connected(socket, context).await })
    }

    fn on_event(
        &self,
        socket: SocketRef<A>,
        event: String,
        args: Vec<Payload>,
        ack: Option<AckSender>,
    ) -> BoxFuture<()> {
        let context = self.context.clone();
        Box::pin(async move { on_event(socket, event, args, ack, context).await })
    }

    fn on_disconnect(&self, socket: SocketRef<A>, reason: DisconnectReason) -> BoxFuture<()> {
        let context = self.context.clone();
        Box::pin(async move { on_disconnect(socket, reason, context).await })
    }
}

/// Verifies the token and applies the per-user limit. It runs before the CONNECT reply, and the
/// engine holds the client's later packets until it returns, so a client that emits inside its
/// `connect` callback finds the socket ready.
async fn authorize<A: CoreAdapter<Emitter>>(
    socket: SocketRef<A>,
    auth: Option<Value>,
    context: Arc<SocketContext>,
    unrestricted: Arc<Grants>,
) -> Result<(), String> {
    let grants = match &context.verifier {
        None => unrestricted,
        Some(verifier) => match verifier.verify(auth.as_ref()) {
            Ok(grants) => Arc::new(grants),
            Err(err) => {
                context.metrics.count_rejected(RejectReason::Unauthorized);
                tracing::debug!(sid = %socket.id(), ns = socket.ns(), error = %err, "rejected socket");
                return Err(err.to_string());
            }
        },
    };

    if let (Some(limiter), Some(subject)) = (&context.user_limiter, &grants.subject) {
        match limiter.acquire(subject, &socket.id().to_string()).await {
            Ok(true) => {}
            Ok(false) => {
                context.metrics.count_rejected(RejectReason::UserLimit);
                return Err(format!(
                    "user {subject} has reached the limit of {} connections",
                    limiter.limit()
                ));
            }
            Err(err) => {
                context.metrics.count_rejected(RejectReason::UserLimitUnavailable);
                tracing::warn!(sid = %socket.id(), error = %err, "failed to check the per-user connection limit");
                return Err("connection limit check failed; retry later".into());
            }
        }
    }

    socket.socket.set_extension(SocketState {
        grants,
        count: AtomicU8::new(COUNT_NEW),
    });
    Ok(())
}

async fn on_connected<A: CoreAdapter<Emitter>>(socket: SocketRef<A>, context: Arc<SocketContext>) {
    let Some(state) = socket.socket.extension::<SocketState>() else {
        return;
    };
    // Counting first and taking it back keeps the gauge from dipping below zero when the
    // disconnect handler runs in between.
    context.metrics.socket_connected();
    if state
        .count
        .compare_exchange(COUNT_NEW, COUNT_COUNTED, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        context.metrics.undo_connected();
        return;
    }

    // Every socket joins a room named after its id, through the adapter, so an emit to a socket id
    // reaches it from any pod.
    let private_room = socket.id().to_string();
    if let Err(err) = socket.join(private_room.clone()).await {
        tracing::warn!(sid = %socket.id(), error = %err.into(), "failed to join the private room");
    }
    if socket.socket.has_ended() {
        leave_through_adapter(&socket, vec![private_room]).await;
    }
    tracing::debug!(sid = %socket.id(), ns = socket.ns(), "socket connected");
}

async fn on_event<A: CoreAdapter<Emitter>>(
    socket: SocketRef<A>,
    event: String,
    args: Vec<Payload>,
    ack: Option<AckSender>,
    context: Arc<SocketContext>,
) {
    let data = args.into_iter().next();
    let reply = match event.as_str() {
        "join" => join(&socket, data, &context).await,
        "leave" => leave(&socket, data, &context).await,
        "publish" => publish(&socket, data, &context).await,
        // Reserved names never get here: the packet decoder rejects them.
        _ => {
            context.metrics.count_event("unknown", "ignored");
            return;
        }
    };
    if let Some(ack) = ack {
        send_ack(ack, reply);
    }
}

async fn join<A: CoreAdapter<Emitter>>(
    socket: &SocketRef<A>,
    data: Option<Payload>,
    context: &SocketContext,
) -> Result<(), String> {
    let request = parse_room_request(data, "join", context)?;
    check_room_name(&request.room).map_err(|err| rejected(context, "join", "invalid_room", err))?;
    if !grants(socket).join.allows(&request.room) {
        return Err(rejected(
            context,
            "join",
            "forbidden",
            format!("not allowed to join room {:?}", request.room),
        ));
    }

    socket
        .join(request.room.clone())
        .await
        .map_err(|err| adapter_failed(context, "join", err.into()))?;

    // The socket may have disconnected while the adapter was joining; its disconnect handler has
    // then already left its rooms, so this join would outlive it.
    if socket.socket.has_ended() {
        leave_through_adapter(socket, vec![request.room]).await;
        return Err(rejected(
            context,
            "join",
            "disconnected",
            "socket disconnected during join".into(),
        ));
    }
    context.metrics.count_event("join", "ok");
    Ok(())
}

async fn leave<A: CoreAdapter<Emitter>>(
    socket: &SocketRef<A>,
    data: Option<Payload>,
    context: &SocketContext,
) -> Result<(), String> {
    let request = parse_room_request(data, "leave", context)?;
    check_room_name(&request.room).map_err(|err| rejected(context, "leave", "invalid_room", err))?;
    socket
        .leave(request.room)
        .await
        .map_err(|err| adapter_failed(context, "leave", err.into()))?;
    context.metrics.count_event("leave", "ok");
    Ok(())
}

async fn publish<A: CoreAdapter<Emitter>>(
    socket: &SocketRef<A>,
    data: Option<Payload>,
    context: &SocketContext,
) -> Result<(), String> {
    let request = parse_publish_request(data, context)?;
    check_room_name(&request.room).map_err(|err| rejected(context, "publish", "invalid_room", err))?;
    check_event_name(&request.event).map_err(|err| rejected(context, "publish", "invalid_event", err))?;
    if !grants(socket).publish.allows(&request.room) {
        return Err(rejected(
            context,
            "publish",
            "forbidden",
            format!("not allowed to publish to room {:?}", request.room),
        ));
    }

    socket
        .emit_to_room(request.room.into(), &request.event, &request.data)
        .await
        .map_err(|err| adapter_failed(context, "publish", err))?;
    context.metrics.count_event("publish", "ok");
    Ok(())
}

async fn on_disconnect<A: CoreAdapter<Emitter>>(
    socket: SocketRef<A>,
    reason: DisconnectReason,
    context: Arc<SocketContext>,
) {
    // Rooms are left through the adapter, so the fleet adapter drops their subscriptions.
    let rooms: Vec<String> = socket.rooms().into_iter().map(|room| room.to_string()).collect();
    if !rooms.is_empty() {
        leave_through_adapter(&socket, rooms).await;
    }

    if let Some(state) = socket.socket.extension::<SocketState>() {
        if let (Some(limiter), Some(subject)) = (&context.user_limiter, &state.grants.subject) {
            limiter.release(subject, &socket.id().to_string()).await;
        }
        if state.count.swap(COUNT_GONE, Ordering::SeqCst) == COUNT_COUNTED {
            context.metrics.socket_disconnected(reason.as_str());
        }
    }
    tracing::debug!(sid = %socket.id(), ns = socket.ns(), reason = reason.as_str(), "socket disconnected");
}

async fn leave_through_adapter<A: CoreAdapter<Emitter>>(socket: &SocketRef<A>, rooms: Vec<String>) {
    if let Err(err) = socket.leave(rooms).await {
        let err: socketioxide_core::adapter::errors::AdapterError = err.into();
        tracing::warn!(sid = %socket.id(), error = %err, "failed to leave rooms through the adapter");
    }
}

fn grants<A: CoreAdapter<Emitter>>(socket: &SocketRef<A>) -> Arc<Grants> {
    socket
        .socket
        .extension::<SocketState>()
        .map(|state| state.grants.clone())
        .unwrap_or_else(|| Arc::new(Grants::unrestricted()))
}

/// Reads `{room}` from a join or leave payload.
fn parse_room_request(
    data: Option<Payload>,
    event: &'static str,
    context: &SocketContext,
) -> Result<RoomRequest, String> {
    let data = checked_payload(data, event, "{room}", context)?;
    let room = string_field(&data, "room");
    room.map(|room| RoomRequest { room }).ok_or_else(|| {
        rejected(
            context,
            event,
            "invalid_payload",
            "invalid payload: expected {room}".into(),
        )
    })
}

/// Reads `{room, event, data}` from a publish payload; `data` may hold binary attachments.
fn parse_publish_request(data: Option<Payload>, context: &SocketContext) -> Result<PublishRequest, String> {
    let expected = "{room, event, data}";
    let Payload::Object(entries) = checked_payload(data, "publish", expected, context)? else {
        return Err(rejected(
            context,
            "publish",
            "invalid_payload",
            format!("invalid payload: expected {expected}"),
        ));
    };
    let mut room = None;
    let mut event = None;
    let mut payload = Payload::Null;
    for (key, value) in entries {
        match (key.as_str(), value) {
            ("room", Payload::String(text)) => room = Some(text),
            ("event", Payload::String(text)) => event = Some(text),
            ("data", value) => payload = value,
            _ => {}
        }
    }
    match (room, event) {
        (Some(room), Some(event)) => Ok(PublishRequest {
            room,
            event,
            data: payload,
        }),
        _ => Err(rejected(
            context,
            "publish",
            "invalid_payload",
            format!("invalid payload: expected {expected}"),
        )),
    }
}

fn checked_payload(
    data: Option<Payload>,
    event: &'static str,
    expected: &str,
    context: &SocketContext,
) -> Result<Payload, String> {
    let Some(data) = data else {
        return Err(rejected(
            context,
            event,
            "invalid_payload",
            format!("invalid payload: expected {expected}"),
        ));
    };
    if data.has_unresolved_placeholder() {
        return Err(rejected(
            context,
            event,
            "invalid_attachment",
            "invalid payload: a binary attachment placeholder has no attachment".into(),
        ));
    }
    Ok(data)
}

fn string_field(data: &Payload, name: &str) -> Option<String> {
    let Payload::Object(entries) = data else {
        return None;
    };
    entries.iter().find_map(|(key, value)| match value {
        Payload::String(text) if key == name => Some(text.clone()),
        _ => None,
    })
}

fn rejected(context: &SocketContext, event: &'static str, kind: &'static str, message: String) -> String {
    context.metrics.count_event(event, kind);
    message
}

fn adapter_failed(context: &SocketContext, event: &'static str, err: impl std::fmt::Display) -> String {
    tracing::warn!(event, error = %err, "adapter failed");
    context.metrics.count_event(event, "adapter_error");
    format!("{event} failed in the adapter; retry later")
}

fn send_ack(ack: AckSender, reply: Result<(), String>) {
    let body = match reply {
        Ok(()) => json!({ "ok": true }),
        Err(error) => json!({ "error": error }),
    };
    if let Err(err) = ack.send(&body) {
        tracing::debug!(error = %err, "failed to send ack");
    }
}

/// Checks a room name a client sent. Names of 16 URL-safe base64 characters are socket ids,
/// each socket's private room, so clients cannot join, leave or publish to them.
pub fn check_room_name(room: &str) -> Result<(), String> {
    check_server_room_name(room)?;
    if room.len() == 16
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "room name {room:?} has the form of a socket id, which is reserved"
        ));
    }
    Ok(())
}

/// Checks a room name the publish API sent. The API speaks for the application's servers, so it
/// may name a socket id to reach that one socket through its private room.
pub fn check_server_room_name(room: &str) -> Result<(), String> {
    if room.is_empty() {
        return Err("room name is empty".into());
    }
    if room.len() > MAX_ROOM_LEN {
        return Err(format!(
            "room name is {} bytes; the maximum is {MAX_ROOM_LEN}",
            room.len()
        ));
    }
    if room.chars().any(char::is_control) {
        return Err("room name contains control characters".into());
    }
    Ok(())
}

/// Checks an event name a client or the publish API sent.
pub fn check_event_name(event: &str) -> Result<(), String> {
    if event.is_empty() {
        return Err("event name is empty".into());
    }
    if event.len() > MAX_EVENT_LEN {
        return Err(format!(
            "event name is {} bytes; the maximum is {MAX_EVENT_LEN}",
            event.len()
        ));
    }
    if RESERVED_EVENTS.contains(&event) {
        return Err(format!("event name {event:?} is reserved by socket.io"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_checked() {
        assert!(check_room_name("lobby").is_ok());
        assert!(check_room_name("room with spaces/and:colons").is_ok());
        assert!(check_room_name("").is_err());
        assert!(check_room_name(&"r".repeat(MAX_ROOM_LEN + 1)).is_err());
        assert!(check_room_name("a\nb").is_err());
        assert!(
            check_room_name("AbCdEfGhIjKlMn_-").is_err(),
            "socket id form must be reserved"
        );
    }

    #[test]
    fn server_room_names_may_be_socket_ids() {
        assert!(check_server_room_name("AbCdEfGhIjKlMn_-").is_ok());
        assert!(check_server_room_name("").is_err());
        assert!(check_server_room_name("a\nb").is_err());
        assert!(check_server_room_name(&"r".repeat(MAX_ROOM_LEN + 1)).is_err());
    }

    #[test]
    fn event_names_are_checked() {
        assert!(check_event_name("message").is_ok());
        assert!(check_event_name("").is_err());
        assert!(check_event_name("disconnect").is_err());
        assert!(check_event_name(&"e".repeat(MAX_EVENT_LEN + 1)).is_err());
    }
}
