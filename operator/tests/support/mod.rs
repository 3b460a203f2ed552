//! A small in-process stand-in for the Kubernetes API server: it records every request and
//! responds to server-side applies by echoing the applied object, which is what a real API server
//! returns for an object with no other field managers.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use socketfleet_operator::builders::BuildSettings;
use socketfleet_operator::conditions::RedisCheck;
use socketfleet_operator::controller::{Context, RedisChecker};
use socketfleet_operator::crd::RealtimeNamespace;
use socketfleet_operator::metrics::Metrics;

/// One request the operator sent.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl Recorded {
    pub fn field_manager(&self) -> Option<String> {
        self.query
            .split('&')
            .find_map(|pair| pair.strip_prefix("fieldManager=").map(str::to_owned))
    }
}

/// Objects the fake API server returns for GET, keyed by request path.
#[derive(Clone, Default)]
pub struct FakeApi {
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub objects: Arc<Mutex<HashMap<String, Value>>>,
    /// Status merged into every applied Deployment, as the Deployment controller would report.
    pub deployment_status: Arc<Mutex<Value>>,
    /// Whether every PUT fails with 409 Conflict, as when another writer changed the object
    /// between our read and our write.
    pub conflict_on_put: Arc<std::sync::atomic::AtomicBool>,
    /// Items of every pod list.
    pub pods: Arc<Mutex<Vec<Value>>>,
}

impl FakeApi {
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn put(&self, path: &str, object: Value) {
        self.objects.lock().unwrap().insert(path.to_owned(), object);
    }

    pub fn client(&self) -> Client {
        let api = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, std::convert::Infallible>(api.answer(request).await) }
        });
        Client::new(service, "default")
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let bytes = request
            .into_body()
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.requests.lock().unwrap().push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query,
            body: body.clone(),
        });

        match method {
            Method::GET if path.ends_with("/pods") => {
                let items = self.pods.lock().unwrap().clone();
                respond(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
                )
            }
            Method::GET => match self.objects.lock().unwrap().get(&path) {
                Some(object) => respond(StatusCode::OK, object.clone()),
                None => not_found(),
            },
            Method::PATCH if path.ends_with("/status") => {
                let owner = path.trim_end_matches("/status");
                let Some(mut object) = self.objects.lock().unwrap().get(owner).cloned() else {
                    return not_found();
                };
                object["status"] = body["status"].clone();
                respond(StatusCode::OK, object)
            }
            Method::PATCH => {
                let mut object = body;
                if path.contains("/deployments/") {
                    object["metadata"]["generation"] = json!(1);
                    object["status"] = self.deployment_status.lock().unwrap().clone();
                }
                respond(StatusCode::OK, object)
            }
            Method::POST => {
                self.objects.lock().unwrap().insert(
                    format!("{path}/{}", body["metadata"]["name"].as_str().unwrap_or_default()),
                    body.clone(),
                );
                respond(StatusCode::CREATED, body)
            }
            Method::PUT => {
                let stored_version = self
                    .objects
                    .lock()
                    .unwrap()
                    .get(&path)
                    .map(|o| o["metadata"]["resourceVersion"].clone());
                let stale = stored_version.is_some_and(|version| version != body["metadata"]["resourceVersion"]);
                if stale || self.conflict_on_put.load(std::sync::atomic::Ordering::Relaxed) {
                    return respond(
                        StatusCode::CONFLICT,
                        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
                    );
                }
                self.objects.lock().unwrap().insert(path.clone(), body.clone());
                respond(StatusCode::OK, body)
            }
            Method::DELETE => respond(
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
            ),
            _ => not_found(),
        }
    }
}

fn respond(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn not_found() -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

/// Runs one reconcile of `rtns` against `api`, which first learns the object so that status
/// patches can return it whole.
pub async fn reconcile_on(
    api: &FakeApi,
    rtns: &RealtimeNamespace,
) -> Result<kube::runtime::controller::Action, socketfleet_operator::controller::Error> {
    let path = format!(
        "/apis/socketfleet.io/v1alpha1/namespaces/{}/realtimenamespaces/{}",
        rtns.metadata.namespace.as_deref().unwrap(),
        rtns.metadata.name.as_deref().unwrap()
    );
    api.put(&path, serde_json::to_value(rtns).unwrap());
    socketfleet_operator::controller::reconcile(Arc::new(rtns.clone()), context(api)).await
}

/// Builds a context whose Redis check always succeeds, so no Redis server is needed.
pub fn context(api: &FakeApi) -> Arc<Context> {
    let client = api.client();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "socketfleet-operator".into(),
            instance: Some("test".into()),
        },
    );
    let checker: RedisChecker =
        Arc::new(|_target| Box::pin(async { RedisCheck::Reachable { message: "PONG".into() } }));
    Arc::new(Context::new(
        client,
        BuildSettings {
            gateway_image: "ghcr.io/socketfleet/gateway:0.1.0".into(),
        },
        recorder,
        Arc::new(Metrics::default()),
        Duration::from_secs(30),
        checker,
    ))
}

/// Loads an example from crds/examples as the API server would return it.
pub fn example(name: &str) -> RealtimeNamespace {
    let path = format!("{}/../crds/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("failed to read {path}: {err}"));
    let mut rtns: RealtimeNamespace = serde_yaml::from_str(&text).unwrap();
    rtns.metadata.namespace = Some("apps".into());
    rtns.metadata.uid = Some("0b5c7c9e-1111-4222-8333-444455556666".into());
    rtns.metadata.generation = Some(1);
    rtns
}

/// Returns a Deployment status of a finished rollout with `pods` ready pods.
pub fn rolled_out(pods: i32) -> Value {
    json!({"observedGeneration": 1, "replicas": pods, "updatedReplicas": pods, "readyReplicas": pods, "availableReplicas": pods})
}
