//! The admin port: `/livez`, `/readyz`, `/metrics` and the publish API.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide_core::adapter::CoreAdapter;
use thiserror::Error;

use crate::connection::Connections;
use crate::engine::core::Engine;
use crate::engine::namespace::Emitter;
use crate::events::{check_event_name, check_server_room_name};
use crate::metrics::Metrics;
use crate::status::AdapterStatus;

/// State shared by the admin handlers.
pub struct AdminState<A> {
    pub engine: Arc<Engine<A>>,
    pub namespaces: Vec<String>,
    pub publish_token: Option<String>,
    pub connections: Arc<Connections>,
    pub metrics: Arc<Metrics>,
    pub adapter_status: Arc<dyn AdapterStatus>,
}

/// Reasons a publish request fails; [`ApiError::into_response`] maps each to one HTTP response.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("publish API is off: start the gateway with --publish-token or --publish-token-file to enable it")]
    PublishDisabled,
    #[error("missing or invalid bearer token: send Authorization: Bearer <publish token>")]
    Unauthorized,
    #[error("invalid JSON body: {0}; expected {{namespace?, room?, event, data}}")]
    InvalidBody(String),
    #[error("request body is larger than --max-payload-bytes allows")]
    BodyTooLarge,
    #[error("failed to read the request body: {0}")]
    ReadBody(String),
    #[error("namespace {0:?} is not served by this gateway")]
    UnknownNamespace(String),
    #[error("invalid room: {0}")]
    InvalidRoom(String),
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("adapter failed to accept the message; retry later")]
    Adapter(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::PublishDisabled => StatusCode::FORBIDDEN,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::InvalidBody(_) | ApiError::InvalidRoom(_) | ApiError::InvalidEvent(_) | ApiError::ReadBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnknownNamespace(_) => StatusCode::NOT_FOUND,
            ApiError::Adapter(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if let ApiError::Adapter(cause) = &self {
            // The cause stays in the log; the client gets a message without internals.
            tracing::error!(error = %cause, "publish API: adapter failed");
        }
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    namespace: Option<String>,
    room: Option<String>,
    event: String,
    #[serde(default)]
    data: Value,
}

/// Builds the admin router; tests call it without binding a socket.
pub fn router<A: CoreAdapter<Emitter>>(state: Arc<AdminState<A>>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<A>))
        .route("/metrics", get(metrics::<A>))
        .route("/api/v1/publish", post(publish::<A>))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn readyz<A: CoreAdapter<Emitter>>(State(state): State<Arc<AdminState<A>>>) -> Response {
    let mut reasons = Vec::new();
    if state.connections.draining() {
        reasons.push("draining: the gateway is shutting down".to_string());
    }
    if state.connections.at_capacity() {
        reasons.push(format!(
            "at capacity: {} connections and long-polling sessions open",
            state.connections.in_use()
        ));
    }
    if !state.adapter_status.healthy() {
        let reason = state
            .adapter_status
            .unhealthy_reason()
            .unwrap_or_else(|| "unhealthy".into());
        reasons.push(format!("adapter: {reason}"));
    }

    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({ "ready": true }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reasons": reasons })),
        )
            .into_response()
    }
}

async fn metrics<A: CoreAdapter<Emitter>>(State(state): State<Arc<AdminState<A>>>) -> Response {
    let mut out = String::with_capacity(4096);
    state.metrics.render(&mut out);

    // Rooms with members on this pod, private rooms included; after every socket has left, this
    // returns to 0 unless a room entry leaked.
    let local_rooms: usize = state.engine.namespaces().map(|ns| ns.local_rooms()).sum();
    out.push_str("# HELP socketfleet_local_rooms Rooms with members on this pod, private rooms included.\n");
    out.push_str("# TYPE socketfleet_local_rooms gauge\n");
    out.push_str(&format!("socketfleet_local_rooms {local_rooms}\n"));
    state.adapter_status.render_metrics(&mut out);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response()
}

async fn publish<A: CoreAdapter<Emitter>>(
    State(state): State<Arc<AdminState<A>>>,
    headers: HeaderMap,
    // Taken as a Result so a body over the limit gets a JSON error like every other failure,
    // not axum's plain-text rejection.
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(expected) = &state.publish_token else {
        return Err(ApiError::PublishDisabled);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::Unauthorized);
    }

    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge,
        _ => ApiError::ReadBody(rejection.body_text()),
    })?;
    let request: PublishRequest =
        serde_json::from_slice(&body).map_err(|err| ApiError::InvalidBody(err.to_string()))?;
    let namespace = request.namespace.unwrap_or_else(|| state.namespaces[0].clone());
    if !state.namespaces.contains(&namespace) {
        return Err(ApiError::UnknownNamespace(namespace));
    }
    check_event_name(&request.event).map_err(ApiError::InvalidEvent)?;
    if let Some(room) = &request.room {
        check_server_room_name(room).map_err(ApiError::InvalidRoom)?;
    }

    let ns = state
        .engine
        .namespace(&namespace)
        .ok_or_else(|| ApiError::UnknownNamespace(namespace.clone()))?;
    let rooms = request.room.into_iter().map(std::borrow::Cow::Owned).collect();
    ns.broadcast(rooms, &request.event, &request.data)
        .await
        .map_err(|err| ApiError::Adapter(err.to_string()))?;

    state.metrics.count_api_publish();
    Ok((StatusCode::ACCEPTED, Json(json!({ "ok": true }))).into_response())
}

/// Compares two secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}
