//! The websocket transport: one task per connection reads frames, writes queued packets and runs
//! the heartbeat.
//!
//! Memory an idle connection keeps: this task's future, the session and the tracked stream. Reads
//! go through a stack buffer inside `poll`, so only the bytes of an unfinished frame are kept on
//! the heap. The write buffer is freed once written, and the heartbeat is a `Sleep` inside the
//! future.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use socketioxide_core::adapter::CoreAdapter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::core::Engine;
use super::eio::{self, EioPacket};
use super::namespace::Emitter;
use super::outbound::Outbound;
use super::packet::PacketDecoder;
use super::session::{CloseRequest, DisconnectReason, Session};
use super::websocket::{self, Decoder, FrameError, Message};
use crate::connection::TrackedStream;
use crate::metrics::RejectReason;

/// Bytes read from the client per read call, on the stack.
const SCRATCH_LEN: usize = 4096;
/// Packets taken from the queue per write.
const BATCH: usize = 256;
/// Time the closing handshake may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Cause of the task waking.
enum Event {
    Message(Message),
    /// The heartbeat timer fired.
    Tick,
    /// The session asked to close.
    Close(CloseRequest),
    /// The client's frames broke the websocket protocol.
    Frame(FrameError),
    /// The client closed the TCP connection.
    Eof,
    Failed(std::io::Error),
}

struct Connection {
    stream: TrackedStream,
    /// Bytes of frames not yet decoded; empty (no allocation) while idle.
    pending: Vec<u8>,
    frames: Decoder,
    /// Bytes being written; empty (no allocation) while idle.
    out: Vec<u8>,
    written: usize,
    /// Whether a close frame is in `out` or written.
    close_sent: bool,
}

impl Connection {
    /// Writes what is buffered and what the session has queued, until the socket would block or
    /// nothing is left. Returns the session's close request once everything before it is written.
    fn poll_write_queue(
        &mut self,
        cx: &mut Context<'_>,
        session: &Session,
    ) -> Poll<Result<Option<CloseRequest>, std::io::Error>> {
        loop {
            match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    // A client that does not read must not hold back its own disconnect (a slow
                    // consumer's queue overflowed), so the close goes out behind what is buffered
                    // or not at all.
                    session.register_waker(cx.waker());
                    return match session.close_request() {
                        Some(close) => Poll::Ready(Ok(Some(close))),
                        None => Poll::Pending,
                    };
                }
            }
            if self.close_sent {
                return Poll::Pending;
            }
            let mut batch = Vec::new();
            let close = session.take(&mut batch, BATCH, cx.waker());
            if batch.is_empty() {
                return match close {
                    Some(close) => Poll::Ready(Ok(Some(close))),
                    None => Poll::Pending,
                };
            }
            for packet in batch {
                match packet {
                    Outbound::Eio(text) => websocket::write_text(&mut self.out, &[text.as_bytes()]),
                    Outbound::Message(text) => websocket::write_text(&mut self.out, &[b"4", text.as_bytes()]),
                    Outbound::Binary(bytes) => websocket::write_binary(&mut self.out, &bytes),
                }
            }
        }
    }

    /// Writes what is buffered without taking from the session's queue.
    fn poll_write_own(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<CloseRequest>, std::io::Error>> {
        match self.poll_write_out(cx) {
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
        }
    }

    /// Writes `out` until it is empty, then frees it.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.out.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Decodes one message from `pending`, then reads from the client until one is complete.
    fn poll_read_message(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            if !self.pending.is_empty() {
                match self.frames.decode(&self.pending) {
                    Ok((consumed, message)) => {
                        self.pending.drain(..consumed);
                        if self.pending.is_empty() {
                            self.pending = Vec::new();
                        }
                        if let Some(message) = message {
                            return Poll::Ready(Event::Message(message));
                        }
                        if consumed > 0 {
                            continue;
                        }
                    }
                    Err(err) => return Poll::Ready(Event::Frame(err)),
                }
            }

            let mut scratch = [0u8; SCRATCH_LEN];
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Event::Failed(err)),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Event::Eof),
                Poll::Ready(Ok(())) => {
                    let read = buf.filled();
                    if !self.pending.is_empty() {
                        self.pending.extend_from_slice(read);
                        continue;
                    }
                    // Decode straight from the stack; only what is left over goes to the heap.
                    let mut at = 0;
                    loop {
                        match self.frames.decode(&read[at..]) {
                            Ok((consumed, message)) => {
                                at += consumed;
                                if let Some(message) = message {
                                    self.pending.extend_from_slice(&read[at..]);
                                    return Poll::Ready(Event::Message(message));
                                }
                                if consumed == 0 || at == read.len() {
                                    self.pending.extend_from_slice(&read[at..]);
                                    break;
                                }
                            }
                            Err(err) => return Poll::Ready(Event::Frame(err)),
                        }
                    }
                }
            }
        }
    }

    /// Waits for the next event. While a long-polling session is upgrading, its queue stays with
    /// the long-polling transport and only this connection's own frames are written.
    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        session: &Session,
        heartbeat: Pin<&mut Sleep>,
        upgrading: bool,
    ) -> Poll<Event> {
        let written = if upgrading {
            self.poll_write_own(cx)
        } else {
            self.poll_write_queue(cx, session)
        };
        match written {
            Poll::Ready(Ok(Some(close))) => return Poll::Ready(Event::Close(close)),
            Poll::Ready(Ok(None)) | Poll::Pending => {}
            Poll::Ready(Err(err)) => return Poll::Ready(Event::Failed(err)),
        }
        if !self.close_sent && self.stream.poll_close_requested(cx) {
            return Poll::Ready(Event::Close(CloseRequest {
                reason: DisconnectReason::ServerShuttingDown,
                code: websocket::CLOSE_GOING_AWAY,
            }));
        }
        if heartbeat.poll(cx).is_ready() {
            return Poll::Ready(Event::Tick);
        }
        self.poll_read_message(cx)
    }

    /// Queues a close frame and writes everything buffered, for at most [`CLOSE_TIMEOUT`]. Callers
    /// box this future where they await it, so the idle task does not carry its timer.
    async fn close(&mut self, code: u16, reason: &str) {
        if !self.close_sent {
            websocket::write_close(&mut self.out, code, reason);
            self.close_sent = true;
        }
        let flush = poll_fn(|cx| self.poll_write_out(cx));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, flush).await;
    }
}

/// Serves one websocket connection until it ends. `upgrading` is the long-polling session this
/// websocket takes over; without it a new session starts.
///
/// The connection state is built here, outside the returned future, which captures it once and
/// works on it in place. An async fn would keep its arguments and the state built from them side
/// by side in the task for the connection's whole life.
pub(crate) fn serve<A: CoreAdapter<Emitter>>(
    engine: Arc<Engine<A>>,
    mut stream: TrackedStream,
    leftover: Bytes,
    upgrading: Option<Arc<Session>>,
) -> impl Future<Output = ()> + Send {
    stream.mark_upgraded();
    let max_message = usize::try_from(engine.config.max_payload).unwrap_or(usize::MAX);
    let mut connection = Connection {
        stream,
        pending: leftover.to_vec(),
        frames: Decoder::new(max_message),
        out: Vec::new(),
        written: 0,
        close_sent: false,
    };
    let upgraded = upgrading.is_some();
    let session = match upgrading {
        Some(session) => session,
        None => {
            let session = engine.new_session();
            let open = engine.open_packet(session.sid, &[]);
            websocket::write_text(&mut connection.out, &[open.as_bytes()]);
            session
        }
    };
    // NOTE: a websocket that takes over a long-polling session starts with a fresh decoder, so a
    // binary packet whose attachments straddle the upgrade is lost.
    let mut decoder = engine.new_decoder();
    async move {
        let mut upgrading = upgraded;
        let reason = run(&engine, &session, &mut connection, &mut decoder, &mut upgrading).await;
        if upgrading {
            // A probe that fails leaves the session on long-polling, as engine.io clients expect.
            tracing::debug!(sid = %session.sid, reason = reason.as_str(), "websocket probe failed");
            super::polling::probe_failed(&engine, &session);
            return;
        }
        engine.finish_session(&session, reason);
        tracing::debug!(sid = %session.sid, reason = reason.as_str(), "websocket session ended");
    }
}

async fn run<A: CoreAdapter<Emitter>>(
    engine: &Arc<Engine<A>>,
    session: &Arc<Session>,
    connection: &mut Connection,
    decoder: &mut PacketDecoder,
    upgrading: &mut bool,
) -> DisconnectReason {
    let config = &engine.config;
    let opened = Instant::now();
    let heartbeat = tokio::time::sleep(config.ping_interval);
    tokio::pin!(heartbeat);
    let mut awaiting_pong = false;

    loop {
        let event = poll_fn(|cx| connection.poll_event(cx, session, heartbeat.as_mut(), *upgrading)).await;
        let outcome = match event {
            Event::Message(Message::Text(text)) => {
                let text = std::str::from_utf8(&text).unwrap_or_default();
                match eio::parse_text(text) {
                    // Boxed, so the idle task does not carry the dispatch future's size.
                    Ok(EioPacket::Message(packet)) if !*upgrading => {
                        Box::pin(engine.on_text(session, decoder, packet)).await
                    }
                    Ok(EioPacket::Pong(_)) => {
                        awaiting_pong = false;
                        heartbeat.as_mut().reset(Instant::now() + config.ping_interval);
                        Ok(())
                    }
                    Ok(EioPacket::Ping("probe")) if *upgrading => {
                        websocket::write_text(&mut connection.out, &[b"3probe"]);
                        super::polling::pause(engine, session);
                        Ok(())
                    }
                    Ok(EioPacket::Upgrade) if *upgrading => {
                        *upgrading = false;
                        super::polling::upgraded(engine, session);
                        Ok(())
                    }
                    Ok(EioPacket::Ping(payload)) => {
                        let pong = format!("3{payload}");
                        websocket::write_text(&mut connection.out, &[pong.as_bytes()]);
                        Ok(())
                    }
                    Ok(EioPacket::Noop) => Ok(()),
                    Ok(EioPacket::Close) => return end(connection, DisconnectReason::TransportClose).await,
                    Ok(_) | Err(_) => Err(engine.protocol_fault_kind("unexpected_engine_packet")),
                }
            }
            Event::Message(Message::Binary(bytes)) if !*upgrading => {
                Box::pin(engine.on_binary(session, decoder, bytes)).await
            }
            Event::Message(Message::Binary(_)) => Err(engine.protocol_fault_kind("unexpected_engine_packet")),
            Event::Message(Message::Ping(payload)) => {
                websocket::write_pong(&mut connection.out, &payload);
                Ok(())
            }
            Event::Message(Message::Pong) => Ok(()),
            Event::Message(Message::Close(code, reason)) => {
                // Echo the client's code and reason, as the closing handshake requires. A close that
                // the connection layer made up for the client (payload cap, drain) reaches the
                // client this way.
                Box::pin(connection.close(code.unwrap_or(websocket::CLOSE_NORMAL), &reason)).await;
                return DisconnectReason::TransportClose;
            }
            Event::Tick if *upgrading => {
                // The long-polling transport runs the heartbeat until the upgrade completes.
                heartbeat.as_mut().reset(Instant::now() + config.ping_interval);
                Ok(())
            }
            Event::Tick => {
                if decoder
                    .pending_since()
                    .is_some_and(|since| since.elapsed() >= config.attachment_timeout)
                {
                    return fail(
                        engine,
                        connection,
                        "attachment_timeout",
                        "binary attachments did not arrive in time",
                    )
                    .await;
                }
                if awaiting_pong {
                    Box::pin(connection.close(websocket::CLOSE_NORMAL, "ping timeout")).await;
                    return DisconnectReason::PingTimeout;
                }
                if session.sockets_empty() && opened.elapsed() >= config.connect_timeout && !*upgrading {
                    connection
                        .close(websocket::CLOSE_NORMAL, "no namespace connected")
                        .await;
                    return DisconnectReason::TransportClose;
                }
                session.push_eio("2");
                awaiting_pong = true;
                heartbeat.as_mut().reset(Instant::now() + config.ping_timeout);
                Ok(())
            }
            Event::Close(close) => {
                Box::pin(connection.close(close.code, close.reason.as_str())).await;
                return close.reason;
            }
            Event::Frame(err) => {
                tracing::debug!(sid = %session.sid, error = %err, "closing a websocket whose frames were rejected");
                let reason = match err {
                    FrameError::MessageTooBig { .. } => {
                        engine.metrics.count_rejected(RejectReason::PayloadTooLarge);
                        DisconnectReason::PayloadTooLarge
                    }
                    _ => {
                        engine.metrics.count_protocol_error(err.kind());
                        DisconnectReason::ProtocolError
                    }
                };
                // The client may still be sending the rest of the rejected message.
                connection.stream.linger_after_close();
                Box::pin(connection.close(err.close_code(), &close_reason(&err))).await;
                return reason;
            }
            Event::Eof => return DisconnectReason::TransportClose,
            Event::Failed(err) => {
                tracing::debug!(error = %err, "websocket connection failed");
                return DisconnectReason::TransportError;
            }
        };
        if let Err(fault) = outcome {
            connection.stream.linger_after_close();
            Box::pin(connection.close(fault.code, &fault.message)).await;
            return fault.reason;
        }
    }
}

/// Builds the close frame's reason for a rejected frame, the cause first, as clients show it.
fn close_reason(err: &FrameError) -> String {
    match err {
        FrameError::MessageTooBig { .. } => format!("payload too large: {err}"),
        _ => err.to_string(),
    }
}

async fn end(connection: &mut Connection, reason: DisconnectReason) -> DisconnectReason {
    Box::pin(connection.close(websocket::CLOSE_NORMAL, "")).await;
    reason
}

async fn fail<A: CoreAdapter<Emitter>>(
    engine: &Engine<A>,
    connection: &mut Connection,
    kind: &'static str,
    message: &str,
) -> DisconnectReason {
    engine.metrics.count_protocol_error(kind);
    connection.stream.linger_after_close();
    Box::pin(connection.close(websocket::CLOSE_PROTOCOL_ERROR, message)).await;
    DisconnectReason::ProtocolError
}
