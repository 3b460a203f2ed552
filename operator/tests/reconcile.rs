//! Reconcile against a fake API server:
//! - every object goes out as a forced server-side apply under one field manager;
//! - with autoscaling on, the Deployment apply never carries `spec.replicas`, and turning it on
//!   hands the replica count to a separate manager first so the fleet does not shrink;
//! - turning autoscaling off sets the replica count once and deletes the operator's HPA;
//! - a steady fleet's status is written once, and the next pass writes nothing.

mod support;

use http::Method;
use serde_json::json;
use socketfleet_operator::FIELD_MANAGER;
use socketfleet_operator::controller::HANDOVER_MANAGER;
use socketfleet_operator::crd::RealtimeNamespaceStatus;
use support::{FakeApi, Recorded, example, reconcile_on, rolled_out};

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/apps/deployments/chat";
const HPA: &str = "/apis/autoscaling/v2/namespaces/apps/horizontalpodautoscalers/chat";

fn patches(requests: &[Recorded]) -> Vec<&Recorded> {
    requests.iter().filter(|r| r.method == Method::PATCH).collect()
}

fn autoscaled() -> socketfleet_operator::crd::RealtimeNamespace {
    let mut rtns = example("minimal.yaml");
    rtns.spec.scaling = Some(serde_json::from_value(json!({"minReplicas": 2, "maxReplicas": 10})).unwrap());
    rtns
}

#[tokio::test]
async fn every_apply_uses_one_field_manager_with_force() {
    let api = FakeApi::default();
    *api.deployment_status.lock().unwrap() = rolled_out(1);
    reconcile_on(&api, &example("minimal.yaml")).await.unwrap();

    let requests = api.requests();
    let patches = patches(&requests);
    let kinds: Vec<&str> = patches.iter().map(|p| p.path.rsplit('/').nth(1).unwrap()).collect();
    assert_eq!(
        kinds,
        vec!["deployments", "services", "services", "poddisruptionbudgets", "chat"]
    );
    for patch in &patches {
        assert_eq!(patch.field_manager().as_deref(), Some(FIELD_MANAGER), "{}", patch.path);
        assert!(patch.query.contains("force=true"), "{} {}", patch.path, patch.query);
    }
    assert!(
        patches
            .last()
            .unwrap()
            .path
            .ends_with("/realtimenamespaces/chat/status")
    );
}

#[tokio::test]
async fn autoscaled_fleet_apply_never_sets_replicas() {
    let api = FakeApi::default();
    *api.deployment_status.lock().unwrap() = rolled_out(6);
    reconcile_on(&api, &autoscaled()).await.unwrap();

    let requests = api.requests();
    let deployment = requests
        .iter()
        .find(|r| r.method == Method::PATCH && r.path == DEPLOYMENT)
        .unwrap();
    assert!(
        deployment.body["spec"].get("replicas").is_none(),
        "{}",
        deployment.body["spec"]
    );
    let autoscaler = requests
        .iter()
        .find(|r| r.method == Method::PATCH && r.path == HPA)
        .unwrap();
    assert_eq!(autoscaler.body["spec"]["minReplicas"], 2);
    assert_eq!(
        autoscaler.body["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        300
    );
}

#[tokio::test]
async fn turning_autoscaling_on_hands_replicas_over_first() {
    let api = FakeApi::default();
    api.put(
        DEPLOYMENT,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "chat",
                "namespace": "apps",
                "managedFields": [{
                    "manager": FIELD_MANAGER,
                    "operation": "Apply",
                    "apiVersion": "apps/v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}}
                }]
            },
            "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "x"}}, "template": {}}
        }),
    );
    reconcile_on(&api, &autoscaled()).await.unwrap();

    let requests = api.requests();
    let deployment_patches: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.method == Method::PATCH && r.path == DEPLOYMENT)
        .collect();
    assert_eq!(deployment_patches.len(), 2);
    assert_eq!(deployment_patches[0].field_manager().as_deref(), Some(HANDOVER_MANAGER));
    assert_eq!(deployment_patches[0].body["spec"], json!({"replicas": 5}));
    assert_eq!(deployment_patches[1].field_manager().as_deref(), Some(FIELD_MANAGER));
    assert!(deployment_patches[1].body["spec"].get("replicas").is_none());
}

#[tokio::test]
async fn turning_autoscaling_off_sets_replicas_and_deletes_the_autoscaler() {
    let api = FakeApi::default();
    let rtns = example("minimal.yaml");
    api.put(
        DEPLOYMENT,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": "apps"},
            "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "x"}}, "template": {}}
        }),
    );
    api.put(
        HPA,
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": "chat",
                "namespace": "apps",
                "ownerReferences": [{
                    "apiVersion": "socketfleet.io/v1alpha1",
                    "kind": "RealtimeNamespace",
                    "name": "chat",
                    "uid": rtns.metadata.uid.clone().unwrap(),
                    "controller": true
                }]
            },
            "spec": {"maxReplicas": 10, "scaleTargetRef": {"kind": "Deployment", "name": "chat"}}
        }),
    );
    reconcile_on(&api, &rtns).await.unwrap();

    let requests = api.requests();
    let deployment = requests
        .iter()
        .find(|r| r.method == Method::PATCH && r.path == DEPLOYMENT)
        .unwrap();
    // The size the HPA last chose stays; the operator owns it from now on.
    assert_eq!(deployment.body["spec"]["replicas"], 6);
    assert!(
        requests.iter().any(|r| r.method == Method::DELETE && r.path == HPA),
        "no DELETE of the HPA"
    );
}

#[tokio::test]
async fn autoscaler_created_by_someone_else_is_left_alone() {
    let api = FakeApi::default();
    api.put(
        HPA,
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "chat", "namespace": "apps"},
            "spec": {"maxReplicas": 10, "scaleTargetRef": {"kind": "Deployment", "name": "chat"}}
        }),
    );
    reconcile_on(&api, &example("minimal.yaml")).await.unwrap();
    assert!(
        !api.requests().iter().any(|r| r.method == Method::DELETE),
        "deleted a foreign HPA"
    );
}

#[tokio::test]
async fn steady_fleet_writes_status_once() {
    let api = FakeApi::default();
    *api.deployment_status.lock().unwrap() = rolled_out(2);
    let mut rtns = example("minimal.yaml");
    rtns.spec.replicas = Some(2);
    reconcile_on(&api, &rtns.clone()).await.unwrap();

    let requests = api.requests();
    let status_patch = requests
        .iter()
        .find(|r| r.path.ends_with("/status"))
        .expect("first pass writes the status");
    let status: RealtimeNamespaceStatus = serde_json::from_value(status_patch.body["status"].clone()).unwrap();
    assert_eq!(status.ready_replicas, 2);
    assert_eq!(status.endpoint.as_deref(), Some("http://chat.apps.svc:3000/chat"));
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=chat,app.kubernetes.io/name=socketfleet-gateway")
    );
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(ready.observed_generation, Some(1));

    // The second pass reads the status it wrote and sends no status patch and no event.
    rtns.status = Some(status);
    let second = FakeApi::default();
    *second.deployment_status.lock().unwrap() = rolled_out(2);
    reconcile_on(&second, &rtns).await.unwrap();
    let requests = second.requests();
    assert!(
        !requests.iter().any(|r| r.path.ends_with("/status")),
        "second pass wrote the status again"
    );
    assert!(
        !requests.iter().any(|r| r.path.contains("/events")),
        "second pass published an event"
    );
}

#[tokio::test]
async fn condition_flip_publishes_a_warning_event() {
    let api = FakeApi::default();
    *api.deployment_status.lock().unwrap() = rolled_out(2);
    let mut rtns = example("minimal.yaml");
    rtns.spec.replicas = Some(2);
    reconcile_on(&api, &rtns.clone()).await.unwrap();
    let status_patch = api
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/status"))
        .unwrap();
    rtns.status = Some(serde_json::from_value(status_patch.body["status"].clone()).unwrap());

    let next = FakeApi::default();
    *next.deployment_status.lock().unwrap() =
        json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 0});
    reconcile_on(&next, &rtns).await.unwrap();
    let requests = next.requests();
    let events: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.method == Method::POST && r.path.contains("/events"))
        .collect();
    let ready_false = events
        .iter()
        .find(|e| e.body["reason"] == "ReadyFalse")
        .expect("an event for Ready turning False");
    assert_eq!(ready_false.body["type"], "Warning");
}

#[tokio::test]
async fn connections_are_summed_from_pod_metrics() {
    // Two "pods" on loopback addresses of their own, each serving /metrics on the admin port.
    let mut servers = Vec::new();
    let mut pods = Vec::new();
    for (index, (address, count)) in [("127.0.83.1", 12), ("127.0.83.2", 30)].into_iter().enumerate() {
        let listener = tokio::net::TcpListener::bind((address, 9090))
            .await
            .expect("bind a loopback admin port");
        servers.push(tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut request).await.unwrap();
            let body =
                format!("# TYPE socket_io_connected gauge\nsocket_io_connected{{namespace=\"/chat\"}} {count}\n");
            let response = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            tokio::io::AsyncWriteExt::write_all(&mut socket, response.as_bytes())
                .await
                .unwrap();
        }));
        pods.push(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": format!("chat-{index}"), "namespace": "apps"},
            "status": {"phase": "Running", "podIP": address}
        }));
    }
    // A pending pod has no address and is skipped.
    pods.push(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chat-2"}, "status": {"phase": "Pending"}}),
    );

    let api = FakeApi::default();
    *api.deployment_status.lock().unwrap() = rolled_out(2);
    *api.pods.lock().unwrap() = pods;
    reconcile_on(&api, &example("minimal.yaml")).await.unwrap();

    let requests = api.requests();
    let list = requests.iter().find(|r| r.path.ends_with("/pods")).unwrap();
    assert!(list.query.contains("labelSelector="), "{}", list.query);
    let status_patch = requests.iter().find(|r| r.path.ends_with("/status")).unwrap();
    assert_eq!(status_patch.body["status"]["connections"], 42);
    for server in servers {
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("each pod's metrics were read within 5s")
            .unwrap();
    }
}

#[tokio::test]
async fn status_apply_leaves_foreign_conditions_out() {
    let api = FakeApi::default();
    *api.deployment_status.lock().unwrap() = rolled_out(1);
    let mut rtns = example("minimal.yaml");
    rtns.status = Some(
        serde_json::from_value(json!({
            "conditions": [{
                "type": "example.com/Audited",
                "status": "True",
                "reason": "Checked",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]
        }))
        .unwrap(),
    );
    reconcile_on(&api, &rtns).await.unwrap();

    let requests = api.requests();
    let status_patch = requests.iter().find(|r| r.path.ends_with("/status")).unwrap();
    let types: Vec<&str> = status_patch.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["Ready", "Progressing", "Degraded", "RedisReachable"]);
}
