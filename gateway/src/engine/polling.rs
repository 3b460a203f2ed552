//! The long-polling transport (opt-in with `--transports`), and the upgrade of a long-polling
//! session to a websocket.
//!
//! A GET waits until packets are queued and answers with all of them; a POST carries the client's
//! packets. The heartbeat of a long-polling session runs in a task of its own until the session
//! ends or moves to a websocket, whose task then runs it.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use socketioxide_core::Sid;
use socketioxide_core::adapter::CoreAdapter;
use tokio::sync::Notify;

use super::core::{Engine, engine_error};
use super::eio::{self, EioPacket, PollingPacket};
use super::namespace::Emitter;
use super::outbound::Outbound;
use super::packet::PacketDecoder;
use super::session::{DisconnectReason, Session};

/// Packets one GET response or POST body may contain.
const MAX_PACKETS_PER_REQUEST: usize = 256;

pub(crate) struct PollingSession {
    session: Arc<Session>,
    decoder: tokio::sync::Mutex<PacketDecoder>,
    get_active: AtomicBool,
    /// Set when a websocket probe arrived: a waiting GET responds with a noop and no GET waits
    /// again.
    paused: AtomicBool,
    /// Set when the websocket took over.
    upgraded: AtomicBool,
    pong: Notify,
    wake_get: Notify,
}

/// Finds the session `sid` names, if it is a long-polling session of this pod that has not moved
/// to a websocket yet.
pub(crate) fn find<A: CoreAdapter<Emitter>>(engine: &Engine<A>, sid: &str) -> Option<Arc<Session>> {
    let sid = sid.parse::<Sid>().ok()?;
    let polling = engine.polling.lock().unwrap_or_else(|p| p.into_inner());
    polling
        .get(&sid)
        .filter(|entry| !entry.upgraded.load(Ordering::SeqCst))
        .map(|entry| entry.session.clone())
}

fn entry<A: CoreAdapter<Emitter>>(engine: &Engine<A>, session: &Session) -> Option<Arc<PollingSession>> {
    engine
        .polling
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&session.sid)
        .cloned()
}

/// Pauses long-polling for a websocket probe: the waiting GET responds with a noop.
pub(crate) fn pause<A: CoreAdapter<Emitter>>(engine: &Engine<A>, session: &Session) {
    if let Some(entry) = entry(engine, session) {
        entry.paused.store(true, Ordering::SeqCst);
        entry.wake_get.notify_waiters();
    }
}

/// Resumes long-polling after a websocket probe ended before the upgrade.
pub(crate) fn probe_failed<A: CoreAdapter<Emitter>>(engine: &Engine<A>, session: &Session) {
    if let Some(entry) = entry(engine, session) {
        entry.paused.store(false, Ordering::SeqCst);
        entry.wake_get.notify_waiters();
    }
}

/// Asks the session to close, and a waiting GET responds with the close packet.
pub(crate) fn close(entry: &PollingSession, reason: DisconnectReason) {
    entry.session.request_close(reason, super::websocket::CLOSE_GOING_AWAY);
    entry.wake_get.notify_waiters();
}

/// Hands the session over to the websocket that completed the upgrade.
pub(crate) fn upgraded<A: CoreAdapter<Emitter>>(engine: &Engine<A>, session: &Session) {
    if let Some(entry) = engine.forget_polling_session(&session.sid) {
        entry.upgraded.store(true, Ordering::SeqCst);
        entry.pong.notify_waiters();
        entry.wake_get.notify_waiters();
    }
}

/// Handles one long-polling request.
pub(crate) async fn handle<A: CoreAdapter<Emitter>>(
    engine: Arc<Engine<A>>,
    request: Request,
    sid: Option<String>,
) -> Response {
    let Some(sid) = sid else {
        if request.method() != Method::GET {
            return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
        }
        return open(engine);
    };
    let entry = {
        let polling = engine.polling.lock().unwrap_or_else(|p| p.into_inner());
        polling
            .values()
            .find(|entry| entry.session.sid.to_string() == sid)
            .cloned()
    };
    let Some(entry) = entry else {
        return engine_error(StatusCode::BAD_REQUEST, 1, "Session ID unknown");
    };
    match *request.method() {
        Method::GET => get(&engine, entry).await,
        Method::POST => post(&engine, entry, request).await,
        _ => engine_error(StatusCode::BAD_REQUEST, 2, "Bad handshake method"),
    }
}

fn open<A: CoreAdapter<Emitter>>(engine: Arc<Engine<A>>) -> Response {
    let session = engine.new_session();
    let upgrades: &[&str] = if engine.config.websocket { &["websocket"] } else { &[] };
    let open = engine.open_packet(session.sid, upgrades);
    let entry = Arc::new(PollingSession {
        session: session.clone(),
        decoder: tokio::sync::Mutex::new(engine.new_decoder()),
        get_active: AtomicBool::new(false),
        paused: AtomicBool::new(false),
        upgraded: AtomicBool::new(false),
        pong: Notify::new(),
        wake_get: Notify::new(),
    });
    engine
        .polling
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(session.sid, entry.clone());
    engine.polling_session_opened();
    tokio::spawn(heartbeat(engine, entry));
    text_response(open.into_bytes())
}

/// Pings the client every ping interval and ends the session when a pong does not arrive in
/// time. Stops when the session ends or moves to a websocket.
async fn heartbeat<A: CoreAdapter<Emitter>>(engine: Arc<Engine<A>>, entry: Arc<PollingSession>) {
    let config = engine.config.clone();
    let opened = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.ping_interval).await;
        if entry.upgraded.load(Ordering::SeqCst) || entry.session.is_finished() {
            return;
        }
        if entry.session.sockets_empty() && opened.elapsed() >= config.connect_timeout {
            engine.finish_session(&entry.session, DisconnectReason::TransportClose);
            return;
        }
        let pong = entry.pong.notified();
        entry.session.push_eio("2");
        if tokio::time::timeout(config.ping_timeout, pong).await.is_err() {
            if entry.upgraded.load(Ordering::SeqCst) {
                return;
            }
            engine.finish_session(&entry.session, DisconnectReason::PingTimeout);
            entry.wake_get.notify_waiters();
            return;
        }
    }
}

async fn get<A: CoreAdapter<Emitter>>(engine: &Engine<A>, entry: Arc<PollingSession>) -> Response {
    if entry.get_active.swap(true, Ordering::SeqCst) {
        engine.finish_session(&entry.session, DisconnectReason::MultiplePolling);
        entry.wake_get.notify_waiters();
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    }
    let session = entry.session.clone();
    loop {
        let woken = entry.wake_get.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (packets, close) = session.drain(MAX_PACKETS_PER_REQUEST);
        if !packets.is_empty() {
            entry.get_active.store(false, Ordering::SeqCst);
            let mut body = Vec::new();
            eio::encode_payload(&mut body, packets.into_iter());
            return text_response(body);
        }
        if close.is_some() || session.is_finished() {
            engine.finish_session(
                &session,
                close.map_or(DisconnectReason::TransportClose, |close| close.reason),
            );
            return text_response(b"1".to_vec());
        }
        if entry.paused.load(Ordering::SeqCst) || entry.upgraded.load(Ordering::SeqCst) {
            entry.get_active.store(false, Ordering::SeqCst);
            let mut body = Vec::new();
            eio::encode_payload(&mut body, std::iter::once(Outbound::Eio("6")));
            return text_response(body);
        }
        // Wait for a queued packet, a close request or a probe.
        let queued = poll_fn(|cx| {
            session.register_waker(cx.waker());
            if session.has_packets() || session.close_request().is_some() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        tokio::select! {
            () = queued => {}
            () = woken => {}
        }
    }
}

async fn post<A: CoreAdapter<Emitter>>(
    engine: &Arc<Engine<A>>,
    entry: Arc<PollingSession>,
    request: Request,
) -> Response {
    let limit = usize::try_from(engine.config.max_payload).unwrap_or(usize::MAX);
    let body = match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(body) => body,
        Err(_) => {
            engine
                .metrics
                .count_rejected(crate::metrics::RejectReason::PayloadTooLarge);
            engine.finish_session(&entry.session, DisconnectReason::PayloadTooLarge);
            entry.wake_get.notify_waiters();
            return engine_error(StatusCode::PAYLOAD_TOO_LARGE, 3, "Payload too large");
        }
    };
    let packets = match eio::decode_payload(&body, MAX_PACKETS_PER_REQUEST) {
        Ok(packets) => packets,
        Err(err) => {
            engine.metrics.count_protocol_error(err.kind());
            engine.finish_session(&entry.session, DisconnectReason::ProtocolError);
            entry.wake_get.notify_waiters();
            return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
        }
    };
    let session = entry.session.clone();
    let mut decoder = entry.decoder.lock().await;
    for packet in packets {
        let outcome = match &packet {
            PollingPacket::Binary(bytes) => engine.on_binary(&session, &mut decoder, bytes.clone()).await,
            PollingPacket::Text(text) => match eio::parse_text(text) {
                Ok(EioPacket::Message(packet)) => engine.on_text(&session, &mut decoder, packet).await,
                Ok(EioPacket::Pong(_)) => {
                    entry.pong.notify_waiters();
                    Ok(())
                }
                Ok(EioPacket::Close) => {
                    engine.finish_session(&session, DisconnectReason::TransportClose);
                    entry.wake_get.notify_waiters();
                    return text_response(b"ok".to_vec());
                }
                Ok(EioPacket::Noop) => Ok(()),
                Ok(_) | Err(_) => Err(engine.protocol_fault_kind("unexpected_engine_packet")),
            },
        };
        if let Err(fault) = outcome {
            tracing::debug!(sid = %session.sid, error = %fault.message, "closing a long-polling session");
            engine.finish_session(&session, fault.reason);
            entry.wake_get.notify_waiters();
            return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
        }
    }
    text_response(b"ok".to_vec())
}

fn text_response(body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    response
}
