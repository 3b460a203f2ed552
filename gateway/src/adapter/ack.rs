//! Collection of other pods' responses: the ack stream of a broadcast with acknowledgements, and
//! the responses to fetch-sockets and rooms requests.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use futures::{Stream, stream::FusedStream};
use serde::de::DeserializeOwned;
use socketioxide_core::{
    Sid, Uid,
    adapter::{
        AckStreamItem, SocketEmitter,
        remote_packet::{Response, ResponseType, ResponseTypeId},
    },
};
use tokio::{sync::mpsc, time::Sleep};

use super::metrics::{Metrics, RequestKind};

/// Routes responses to the request that waits for them, by request id.
pub type PendingRequests = Arc<Mutex<HashMap<Sid, mpsc::UnboundedSender<Vec<u8>>>>>;

/// Removes a request's entry from [`PendingRequests`] when the waiter goes away.
pub struct PendingGuard {
    pending: PendingRequests,
    id: Sid,
}

impl PendingGuard {
    /// Registers request `id` and returns the guard and the receiver of its responses.
    pub fn register(pending: &PendingRequests, id: Sid) -> (Self, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        (
            Self {
                pending: pending.clone(),
                id,
            },
            rx,
        )
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// Pods a request waits for, used to name the missing ones at the timeout.
pub struct Expected {
    /// Pods that received the request, as Redis counted them when it was published.
    pub count: usize,
    /// Pods this pod saw alive recently; the missing ones are named from this list.
    pub known_peers: Vec<Uid>,
}

/// A request that ended at its timeout with some responses missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialResponse {
    /// Which request.
    pub request: RequestKind,
    /// Pods that received the request (Redis' count).
    pub expected: usize,
    /// Pods that responded.
    pub answered: Vec<Uid>,
    /// Known pods that did not respond.
    pub missing: Vec<Uid>,
    /// Pods that did not respond and that this pod never heard from, so it cannot name them.
    pub unidentified: usize,
}

/// A bounded log of the latest partial responses, for operators and tests.
#[derive(Default)]
pub struct PartialLog {
    entries: Mutex<Vec<PartialResponse>>,
}

const PARTIAL_LOG_LEN: usize = 32;

impl PartialLog {
    /// Counts, logs and keeps one partial response.
    pub fn record(&self, metrics: &Metrics, namespace: &str, entry: PartialResponse) {
        metrics.record_partial(entry.request);
        tracing::warn!(
            namespace,
            request = entry.request.label(),
            expected = entry.expected,
            answered = entry.answered.len(),
            missing = ?entry.missing.iter().map(ToString::to_string).collect::<Vec<_>>(),
            unidentified = entry.unidentified,
            "request timed out waiting for other pods, returning a partial result"
        );
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() == PARTIAL_LOG_LEN {
            entries.remove(0);
        }
        entries.push(entry);
    }

    /// Returns the latest partial responses, oldest first.
    pub fn entries(&self) -> Vec<PartialResponse> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn partial(request: RequestKind, expected: &Expected, answered: &[Uid]) -> PartialResponse {
    let missing: Vec<Uid> = expected
        .known_peers
        .iter()
        .filter(|p| !answered.contains(p))
        .copied()
        .collect();
    let unanswered = expected.count.saturating_sub(answered.len());
    PartialResponse {
        request,
        expected: expected.count,
        answered: answered.to_vec(),
        unidentified: unanswered.saturating_sub(missing.len()),
        missing,
    }
}

/// Decodes a response whose payload type is `D`.
pub fn decode_response<D: DeserializeOwned>(payload: &[u8]) -> Result<Response<D>, rmp_serde::decode::Error> {
    let (_, response): (Sid, Response<D>) = rmp_serde::from_slice(payload)?;
    Ok(response)
}

/// Reads the request id of a response without decoding the rest.
pub fn response_request_id(payload: &[u8]) -> Result<Sid, rmp_serde::decode::Error> {
    let (id, _): (Sid, serde::de::IgnoredAny) = rmp_serde::from_slice(payload)?;
    Ok(id)
}

/// Context shared by the collectors: where to log and count partial results.
pub struct Reporter {
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Log of partial results.
    pub partials: Arc<PartialLog>,
    /// Escaped namespace, for logs.
    pub namespace: String,
}

/// Waits for one response of type `kind` from each expected pod, until `timeout`.
pub async fn collect_responses<D: DeserializeOwned>(
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    response_type: ResponseTypeId,
    request: RequestKind,
    expected: Expected,
    timeout: Duration,
    reporter: &Reporter,
) -> Vec<ResponseType<D>> {
    let mut answered: Vec<Uid> = Vec::new();
    let mut responses = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;

    while answered.len() < expected.count {
        let payload = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(payload)) => payload,
            Ok(None) => break,
            Err(_elapsed) => {
                reporter.partials.record(
                    &reporter.metrics,
                    &reporter.namespace,
                    partial(request, &expected, &answered),
                );
                break;
            }
        };
        match decode_response::<D>(&payload) {
            Ok(response) if ResponseTypeId::from(&response.r#type) == response_type => {
                if !answered.contains(&response.node_id) {
                    answered.push(response.node_id);
                    responses.push(response.r#type);
                }
            }
            Ok(response) => tracing::warn!(node = %response.node_id, "unexpected response type, ignored"),
            Err(err) => {
                reporter
                    .metrics
                    .record_dropped(super::metrics::DropReason::DecodeFailed);
                tracing::warn!(error = %err, "undecodable response, ignored");
            }
        }
    }
    responses
}

struct RemoteAcks {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    expected: Expected,
    answered: Vec<Uid>,
    pending_acks: u64,
    deadline: Pin<Box<Sleep>>,
    _guard: PendingGuard,
    reporter: Reporter,
}

impl RemoteAcks {
    fn is_done(&self) -> bool {
        self.answered.len() >= self.expected.count && self.pending_acks == 0
    }
}

/// The acknowledgements of a broadcast: the local sockets' acks, then the other pods' acks.
///
/// Each other pod first sends how many acks to expect, then each ack. The stream ends when every
/// pod Redis counted at publish time has sent its count and all counted acks arrived. Otherwise it
/// ends after the request timeout plus the ack timeout, and the missing pods are logged and counted.
pub struct AckStream<E: SocketEmitter> {
    local: Option<Pin<Box<E::AckStream>>>,
    remote: Option<RemoteAcks>,
}

impl<E: SocketEmitter> AckStream<E> {
    /// Wraps the local acks only.
    pub fn local(local: E::AckStream) -> Self {
        Self {
            local: Some(Box::pin(local)),
            remote: None,
        }
    }

    /// Merges the local acks with the responses of `expected` other pods, until `timeout`.
    pub fn new(
        local: E::AckStream,
        rx: mpsc::UnboundedReceiver<Vec<u8>>,
        guard: PendingGuard,
        expected: Expected,
        timeout: Duration,
        reporter: Reporter,
    ) -> Self {
        let remote = RemoteAcks {
            rx,
            expected,
            answered: Vec::new(),
            pending_acks: 0,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            _guard: guard,
            reporter,
        };
        let remote = (!remote.is_done()).then_some(remote);
        Self {
            local: Some(Box::pin(local)),
            remote,
        }
    }

    fn poll_remote(&mut self, cx: &mut Context<'_>) -> Poll<Option<AckStreamItem<E::AckError>>> {
        let Some(remote) = self.remote.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            if remote.is_done() {
                self.remote = None;
                return Poll::Ready(None);
            }
            match remote.rx.poll_recv(cx) {
                Poll::Ready(Some(payload)) => match decode_response::<E::AckError>(&payload) {
                    Ok(Response {
                        node_id,
                        r#type: ResponseType::BroadcastAckCount(count),
                    }) => {
                        if !remote.answered.contains(&node_id) {
                            remote.answered.push(node_id);
                            remote.pending_acks += u64::from(count);
                        }
                    }
                    Ok(Response {
                        node_id,
                        r#type: ResponseType::BroadcastAck(item),
                    }) => {
                        if remote.pending_acks > 0 {
                            remote.pending_acks -= 1;
                            return Poll::Ready(Some(item));
                        }
                        tracing::warn!(node = %node_id, "ack beyond the announced count, ignored");
                    }
                    Ok(Response { node_id, .. }) => {
                        tracing::warn!(node = %node_id, "unexpected response to a broadcast with ack, ignored");
                    }
                    Err(err) => {
                        remote
                            .reporter
                            .metrics
                            .record_dropped(super::metrics::DropReason::DecodeFailed);
                        tracing::warn!(error = %err, "undecodable ack response, ignored");
                    }
                },
                Poll::Ready(None) => {
                    self.remote = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if remote.deadline.as_mut().poll(cx).is_ready() {
                        let entry = partial(RequestKind::BroadcastWithAck, &remote.expected, &remote.answered);
                        let reporter = &remote.reporter;
                        reporter.partials.record(&reporter.metrics, &reporter.namespace, entry);
                        self.remote = None;
                        return Poll::Ready(None);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<E: SocketEmitter> Stream for AckStream<E> {
    type Item = AckStreamItem<E::AckError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(local) = this.local.as_mut() {
            match local.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
                Poll::Ready(None) => this.local = None,
                Poll::Pending => {}
            }
        }
        match this.poll_remote(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Ready(None) if this.local.is_none() => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

impl<E: SocketEmitter> FusedStream for AckStream<E> {
    fn is_terminated(&self) -> bool {
        self.local.is_none() && self.remote.is_none()
    }
}

impl<E: SocketEmitter> Unpin for AckStream<E> {}
