//! A publish request body over the limit gets 413 with a JSON error, like every other publish
//! API failure, and not axum's plain-text rejection.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use socketfleet_gateway::admin::{self, AdminState};
use socketfleet_gateway::connection::Connections;
use socketfleet_gateway::engine::core::{Engine, EngineConfig};
use socketfleet_gateway::engine::local::LocalAdapter;
use socketfleet_gateway::events::{Gateway, SocketContext};
use socketfleet_gateway::metrics::Metrics;
use socketfleet_gateway::status::LocalAdapterStatus;
use tower::ServiceExt;

const MAX_BODY_BYTES: usize = 1000;

#[tokio::test]
async fn oversized_body_gets_json_413() {
    let metrics = Arc::new(Metrics::default());
    let engine = local_engine(metrics.clone());
    let state = Arc::new(AdminState::<LocalAdapter> {
        engine,
        namespaces: vec!["/".to_string()],
        publish_token: Some("secret".to_string()),
        connections: Connections::new(10, 9, metrics.clone()),
        metrics,
        adapter_status: Arc::new(LocalAdapterStatus),
    });
    let router = admin::router(state, MAX_BODY_BYTES);

    let body = format!(r#"{{"event":"e","data":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
    let request = Request::post("/api/v1/publish")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer secret")
        .body(Body::from(body))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    assert_eq!(
        content_type.as_ref().map(|v| v.to_str().unwrap()),
        Some("application/json")
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).expect("the body is JSON");
    assert!(
        json["error"].as_str().unwrap().contains("--max-payload-bytes"),
        "{json}"
    );
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
