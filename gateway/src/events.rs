//! Per-socket behaviour: auth at connect, the `join`, `leave` and `publish` events with their
//! acks, and leaving rooms on disconnect.
//!
//! Joins and leaves go through the adapter (`socket.local().join(..).await`), never through
//! socketioxide's synchronous `socket.join`, which changes only this pod's room map and would hide
//! the membership from the fleet adapter's Redis subscriptions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;

use crate::auth::{Grants, Verifier};
use crate::metrics::{Metrics, RejectReason, disconnect_label};
use crate::payload::Payload;
use crate::user_limit::UserLimiter;

/// Maximum room name length in bytes.
pub const MAX_ROOM_LEN: usize = 256;
/// Maximum event name length in bytes.
pub const MAX_EVENT_LEN: usize = 128;

/// Event names the socket.io client gives a meaning of its own; publishing them would confuse it.
const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

const COUNT_NEW: u8 = 0;
const COUNT_COUNTED: u8 = 1;
const COUNT_GONE: u8 = 2;

/// What every socket handler needs.
pub struct SocketContext {
    pub metrics: Arc<Metrics>,
    pub verifier: Option<Arc<Verifier>>,
    pub user_limiter: Option<Arc<UserLimiter>>,
}

/// Per-socket state kept in the socket's extensions.
#[derive(Clone)]
struct SocketState {
    grants: Arc<Grants>,
    /// Whether the socket is counted in `socket_io_connected`: [`COUNT_NEW`], [`COUNT_COUNTED`]
    /// or [`COUNT_GONE`]. The connect and disconnect handlers may run in either order.
    count: Arc<AtomicU8>,
    /// Set when the disconnect handler starts, before it reads the socket's rooms. A join that
    /// completes and then finds this set must undo itself. `Socket::connected` cannot serve here:
    /// it is still false for events that arrive right after the CONNECT reply.
    disconnected: Arc<AtomicBool>,
}

impl SocketState {
    fn is_disconnected(&self) -> bool {
        self.disconnected.load(Ordering::SeqCst)
    }
}

struct RoomRequest {
    room: String,
}

struct PublishRequest {
    room: String,
    event: String,
    data: Payload,
}

/// Serves namespace `path` on `io` and returns the adapter's init result for the caller to await.
pub fn serve_namespace<A>(io: &SocketIo<A>, path: String, context: Arc<SocketContext>) -> A::InitRes
where
    A: Adapter + socketioxide_core::adapter::DefinedAdapter,
{
    let on_connect = {
        let context = context.clone();
        move |socket: SocketRef<A>| on_connect(socket, context.clone())
    };
    let middleware = move |socket: SocketRef<A>, TryData(auth): TryData<Value>| {
        let context = context.clone();
        async move {
            // Data after the namespace that is not JSON means the name itself held a comma
            // (`40/tenant,x,{..}`); serving it as `/tenant` would connect the client to a
            // namespace it did not name.
            let Ok(auth) = auth else {
                context.metrics.count_rejected(RejectReason::InvalidConnect);
                return Err("invalid CONNECT packet: the namespace name or auth payload is malformed".to_string());
            };
            authorize_and_prepare(socket, Some(auth), context).await
        }
    };
    io.ns(path, on_connect.with(middleware))
}

/// Connect middleware: verifies the token, applies the per-user limit and registers the
/// socket's event handlers. It runs before the CONNECT reply, so a client that emits inside its
/// `connect` callback finds the handlers in place.
async fn authorize_and_prepare<A: Adapter>(
    socket: SocketRef<A>,
    auth: Option<Value>,
    context: Arc<SocketContext>,
) -> Result<(), String> {
    let grants = match &context.verifier {
        None => Grants::unrestricted(),
        Some(verifier) => match verifier.verify(auth.as_ref()) {
            Ok(grants) => grants,
            Err(err) => {
                context.metrics.count_rejected(RejectReason::Unauthorized);
                tracing::debug!(sid = %socket.id, ns = socket.ns(), error = %err, "rejected socket");
                return Err(err.to_string());
            }
        },
    };

    if let (Some(limiter), Some(subject)) = (&context.user_limiter, &grants.subject) {
        match limiter.acquire(subject, &socket.id.to_string()).await {
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
                tracing::warn!(sid = %socket.id, error = %err, "failed to check the per-user connection limit");
                return Err("connection limit check failed; retry later".into());
            }
        }
    }

    socket.extensions.insert(SocketState {
        grants: Arc::new(grants),
        count: Arc::new(AtomicU8::new(COUNT_NEW)),
        disconnected: Arc::new(AtomicBool::new(false)),
    });
    register_handlers(&socket, context);
    Ok(())
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>, context: Arc<SocketContext>) {
    let Some(state) = socket.extensions.get::<SocketState>() else {
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
    let private_room = socket.id.to_string();
    if let Err(err) = socket.local().join(private_room.clone()).await {
        tracing::warn!(sid = %socket.id, error = %err.into(), "failed to join the private room");
    }
    if state.is_disconnected() {
        leave_through_adapter(&socket, vec![private_room]).await;
    }
    tracing::debug!(sid = %socket.id, ns = socket.ns(), "socket connected");
}

fn register_handlers<A: Adapter>(socket: &SocketRef<A>, context: Arc<SocketContext>) {
    let join_context = context.clone();
    socket.on(
        "join",
        move |socket: SocketRef<A>, TryData(data): TryData<Payload>, ack: AckSender<A>| {
            let context = join_context.clone();
            async move {
                let reply = join(&socket, data.ok(), &context).await;
                send_ack(ack, reply);
            }
        },
    );

    let leave_context = context.clone();
    socket.on(
        "leave",
        move |socket: SocketRef<A>, TryData(data): TryData<Payload>, ack: AckSender<A>| {
            let context = leave_context.clone();
            async move {
                let reply = leave(&socket, data.ok(), &context).await;
                send_ack(ack, reply);
            }
        },
    );

    let publish_context = context.clone();
    socket.on(
        "publish",
        move |socket: SocketRef<A>, TryData(data): TryData<Payload>, ack: AckSender<A>| {
            let context = publish_context.clone();
            async move {
                let reply = publish(&socket, data.ok(), &context).await;
                send_ack(ack, reply);
            }
        },
    );

    let fallback_context = context.clone();
    socket.on_fallback(move |socket: SocketRef<A>, Event(event): Event| {
        let context = fallback_context.clone();
        async move { on_unknown_event(socket, event, &context) }
    });

    socket.on_disconnect(move |socket: SocketRef<A>, reason: DisconnectReason| {
        let context = context.clone();
        async move { on_disconnect(socket, reason, context).await }
    });
}

async fn join<A: Adapter>(socket: &SocketRef<A>, data: Option<Payload>, context: &SocketContext) -> Result<(), String> {
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
        .local()
        .join(request.room.clone())
        .await
        .map_err(|err| adapter_failed(context, "join", Into::<socketioxide::adapter::AdapterError>::into(err)))?;

    // The socket may have disconnected while the adapter was joining; its disconnect handler has
    // then already left its rooms, so this join would outlive it.
    if socket
        .extensions
        .get::<SocketState>()
        .is_none_or(|state| state.is_disconnected())
    {
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

async fn leave<A: Adapter>(
    socket: &SocketRef<A>,
    data: Option<Payload>,
    context: &SocketContext,
) -> Result<(), String> {
    let request = parse_room_request(data, "leave", context)?;
    check_room_name(&request.room).map_err(|err| rejected(context, "leave", "invalid_room", err))?;
    socket
        .local()
        .leave(request.room)
        .await
        .map_err(|err| adapter_failed(context, "leave", Into::<socketioxide::adapter::AdapterError>::into(err)))?;
    context.metrics.count_event("leave", "ok");
    Ok(())
}

async fn publish<A: Adapter>(
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
        .within(request.room)
        .emit(&request.event, &request.data)
        .await
        .map_err(|err| adapter_failed(context, "publish", err))?;
    context.metrics.count_event("publish", "ok");
    Ok(())
}

/// Ignores events the gateway does not handle, as socket.io servers do, but disconnects a
/// socket that sends a reserved event name, which no socket.io client library sends.
fn on_unknown_event<A: Adapter>(socket: SocketRef<A>, event: String, context: &SocketContext) {
    if RESERVED_EVENTS.contains(&event.as_str()) {
        context.metrics.count_event("reserved", "protocol_error");
        tracing::debug!(sid = %socket.id, event, "disconnecting socket that sent a reserved event");
        if let Err(err) = socket.disconnect() {
            tracing::debug!(error = %err, "failed to disconnect socket");
        }
    } else {
        context.metrics.count_event("unknown", "ignored");
    }
}

async fn on_disconnect<A: Adapter>(socket: SocketRef<A>, reason: DisconnectReason, context: Arc<SocketContext>) {
    let state = socket.extensions.get::<SocketState>();
    if let Some(state) = &state {
        state.disconnected.store(true, Ordering::SeqCst);
    }

    // Rooms are left through the adapter before this handler returns; socketioxide clears its own
    // room map only afterwards, without telling the adapter.
    let rooms: Vec<String> = socket.rooms().into_iter().map(|room| room.to_string()).collect();
    if !rooms.is_empty() {
        leave_through_adapter(&socket, rooms).await;
    }

    if let Some(state) = state {
        if let (Some(limiter), Some(subject)) = (&context.user_limiter, &state.grants.subject) {
            limiter.release(subject, &socket.id.to_string()).await;
        }
        if state.count.swap(COUNT_GONE, Ordering::SeqCst) == COUNT_COUNTED {
            context.metrics.socket_disconnected(disconnect_label(reason));
        }
    }
    tracing::debug!(sid = %socket.id, ns = socket.ns(), reason = disconnect_label(reason), "socket disconnected");
}

async fn leave_through_adapter<A: Adapter>(socket: &SocketRef<A>, rooms: Vec<String>) {
    if let Err(err) = socket.local().leave(rooms).await {
        let err: socketioxide::adapter::AdapterError = err.into();
        tracing::warn!(sid = %socket.id, error = %err, "failed to leave rooms through the adapter");
    }
}

fn grants<A: Adapter>(socket: &SocketRef<A>) -> Arc<Grants> {
    socket
        .extensions
        .get::<SocketState>()
        .map(|state| state.grants)
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

fn send_ack<A: Adapter>(ack: AckSender<A>, reply: Result<(), String>) {
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
