//! Admin router without a socket: readiness reasons, metric names and publish API status codes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use socketfleet_gateway::admin::{self, AdminState};
use socketfleet_gateway::connection::Connections;
use socketfleet_gateway::engine::core::{Engine, EngineConfig};
use socketfleet_gateway::engine::local::LocalAdapter;
use socketfleet_gateway::events::{Gateway, SocketContext};
use socketfleet_gateway::metrics::Metrics;
use socketfleet_gateway::status::LocalAdapterStatus;
use tower::ServiceExt;

fn router(publish_token: Option<&str>) -> (axum::Router, Arc<Connections>) {
    let metrics = Arc::new(Metrics::default());
    let engine = local_engine(metrics.clone());
    let connections = Connections::new(10, 9, metrics.clone());
    let state = Arc::new(AdminState::<LocalAdapter> {
        engine,
        namespaces: vec!["/".to_string()],
        publish_token: publish_token.map(str::to_owned),
        connections: connections.clone(),
        metrics,
        adapter_status: Arc::new(LocalAdapterStatus),
    });
    (admin::router(state, 1_000_000), connections)
}

async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn publish(token: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::post("/api/v1/publish").header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn readyz_reports_draining_with_a_reason() {
    let (router, connections) = router(None);
    let (status, _) = send(&router, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    connections.start_draining();
    let (status, body) = send(&router, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], json!(false));
    assert!(body["reasons"][0].as_str().unwrap().contains("draining"), "{body}");
}

#[tokio::test]
async fn metrics_use_the_documented_names() {
    let (router, _) = router(None);
    let (status, body) = send(&router, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "socket_io_connected",
        "socket_io_connect_total",
        "socket_io_disconnect_total",
        "socketfleet_rejected_connections_total",
        "redis_pubsub_channels",
        "socketfleet_adapter_dropped_total",
    ] {
        assert!(body.contains(&format!("# TYPE {name} ")), "missing {name} in\n{body}");
    }
    // The same series as the fleet adapter renders, so one alert covers both adapters.
    assert!(
        body.contains("socketfleet_adapter_dropped_total{reason=\"queue_full\"} 0\n"),
        "{body}"
    );
}

#[tokio::test]
async fn publish_api_is_off_without_a_token() {
    let (router, _) = router(None);
    let (status, body) = send(&router, publish(Some("anything"), r#"{"event":"e"}"#)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("publish API is off"), "{body}");
}

#[tokio::test]
async fn publish_api_maps_errors_to_status_codes() {
    let (router, _) = router(Some("secret"));
    let cases = [
        (None, r#"{"event":"e"}"#, StatusCode::UNAUTHORIZED),
        (Some("wrong"), r#"{"event":"e"}"#, StatusCode::UNAUTHORIZED),
        (Some("secret"), "{", StatusCode::BAD_REQUEST),
        (Some("secret"), r#"{"event":"connect"}"#, StatusCode::BAD_REQUEST),
        (Some("secret"), r#"{"event":"e","room":""}"#, StatusCode::BAD_REQUEST),
        (
            Some("secret"),
            r#"{"event":"e","namespace":"/other"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            Some("secret"),
            r#"{"event":"e","room":"r","data":[1]}"#,
            StatusCode::ACCEPTED,
        ),
    ];
    for (token, body, expected) in cases {
        let (status, answer) = send(&router, publish(token, body)).await;
        assert_eq!(status, expected, "token {token:?} body {body}: {answer}");
    }
}

/// An engine on the in-memory adapter serving `/` with the gateway's handler.
fn local_engine(metrics: Arc<Metrics>) -> Arc<Engine<LocalAdapter>> {
    let mut engine = Engine::new(EngineConfig::default(), metrics.clone());
    let context = Arc::new(SocketContext {
        metrics,
        verifier: None,
        user_limiter: None,
    });
    engine.add_namespace("/", &(), Gateway::new(context));
    Arc::new(engine)
}
