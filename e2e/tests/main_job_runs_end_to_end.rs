//! The main job on a real local cluster, with nothing mocked: `helm install` the operator (its pod runs
//! under its own ServiceAccount, so the chart's RBAC is what it gets), `kubectl apply` the minimal
//! example unchanged, then:
//! - the gateway pods come up Running and Ready, and `kubectl logs` shows their output;
//! - npm socket.io clients on two different pods join one room, and a publish from a client and one
//!   from the publish API each arrive exactly once at every member;
//! - `status.conditions` has Ready True and `status.connections` matches the connected clients;
//! - the LoadBalancer address spreads clients over the pods;
//! - a new `maxPerPod` rolls the fleet, the old pods drain their sockets, and the clients end up on the
//!   new pods, still in their room;
//! - deleting the RealtimeNamespace removes everything it owned.
//!
//! Needs the local cluster (`bash e2e/scripts/cluster.sh up`); `make test-e2e` starts and stops it.

mod support;

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};
use support::{Clients, Cluster, TestNamespace, http, install_operator, metric_sum, pod_ready, step, wait_until};

const RTNS: &str = "chat";
const SELECTOR: &str = "app.kubernetes.io/instance=chat,app.kubernetes.io/name=socketfleet-gateway";
const ROOM: &str = "e2e-room";
const PUBLISH_TOKEN: &str = "e2e-publish-token";

#[test]
fn main_job_runs_end_to_end() -> Result<()> {
    let cluster = Cluster::running()?;
    let mut namespace = TestNamespace::create(&cluster, "main-job")?;
    let result = scenario(&cluster, &mut namespace);
    if let Err(error) = &result {
        eprintln!("e2e: failed: {error:#}");
        namespace.dump();
    }
    result
}

fn scenario(cluster: &Cluster, namespace: &mut TestNamespace<'_>) -> Result<()> {
    install_operator(cluster, namespace)?;
    apply_example(cluster, namespace)?;
    let pods = wait_for_ready_pods(namespace, 2)?;
    let log = namespace.kubectl(&["logs", "deployment/chat", "--tail", "20"])?;
    ensure!(!log.trim().is_empty(), "kubectl logs returned nothing for the gateway");
    step("kubectl logs returns the gateway's output");

    let mut clients = Clients::start(&cluster.repo)?;
    rooms_span_pods(&mut clients, &pods)?;
    status_reports_ready_and_connections(namespace, 2)?;
    for client in ["alice", "bob"] {
        clients.close(client)?;
    }

    let balancer = load_balancer_address(namespace)?;
    let spread = load_balancer_spreads_clients(&mut clients, &balancer, &pods)?;
    rolling_update_drains_to_new_pods(namespace, &mut clients, &spread, &pods)?;

    deletion_removes_owned_objects(namespace)?;
    Ok(())
}

// -------------------------------------------------------------------------------------------------
// Steps

/// Applies crds/examples/minimal.yaml as it is, then adds what the test needs on top with a patch:
/// two replicas, a publish token and a LoadBalancer Service.
fn apply_example(cluster: &Cluster, namespace: &TestNamespace<'_>) -> Result<()> {
    let example = cluster.repo.join("crds/examples/minimal.yaml");
    step("kubectl apply -f crds/examples/minimal.yaml");
    namespace.kubectl(&["apply", "-f", example.to_str().context("example path is UTF-8")?])?;

    namespace.kubectl(&[
        "create",
        "secret",
        "generic",
        "chat-publish",
        &format!("--from-literal=token={PUBLISH_TOKEN}"),
    ])?;
    let patch = json!({
        "spec": {
            "replicas": 2,
            "publish": {"tokenSecretRef": {"name": "chat-publish", "key": "token"}},
            "service": {"type": "LoadBalancer"}
        }
    });
    namespace.kubectl(&[
        "patch",
        "realtimenamespace",
        RTNS,
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ])?;
    Ok(())
}

/// Waits until exactly `count` gateway pods exist and all are Running and Ready; returns their IPs.
fn wait_for_ready_pods(namespace: &TestNamespace<'_>, count: usize) -> Result<Vec<String>> {
    let ips = wait_until(
        &format!("{count} gateway pods Running and Ready"),
        Duration::from_secs(180),
        || {
            let pods = namespace.kubectl_json(&["get", "pods", "-l", SELECTOR])?;
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            let ready: Vec<String> = items
                .iter()
                .filter(|pod| {
                    pod["status"]["phase"] == "Running"
                        && pod_ready(pod)
                        && pod["metadata"]["deletionTimestamp"].is_null()
                })
                .filter_map(|pod| pod["status"]["podIP"].as_str().map(str::to_owned))
                .collect();
            Ok((items.len() == count && ready.len() == count).then_some(ready))
        },
    )?;
    step(&format!("gateway pods Running and Ready at {ips:?}"));
    Ok(ips)
}

fn rooms_span_pods(clients: &mut Clients, pods: &[String]) -> Result<()> {
    let members = [("alice", &pods[0]), ("bob", &pods[1])];
    for (client, pod) in members {
        clients.connect(client, &format!("http://{pod}:3000/chat"))?;
        clients.listen(client, "news")?;
        ensure!(
            clients.request(client, "join", json!({"room": ROOM}))? == json!({"ok": true}),
            "{client} could not join"
        );
    }
    step("alice and bob joined one room on two different pods");

    let ack = clients.request(
        "alice",
        "publish",
        json!({"room": ROOM, "event": "news", "data": {"from": "alice", "n": 1}}),
    )?;
    ensure!(
        ack == json!({"ok": true}),
        "publish from alice was not acknowledged: {ack}"
    );
    let (status, body) = publish_api(
        &pods[1],
        json!({"namespace": "/chat", "room": ROOM, "event": "news", "data": {"from": "api", "n": 2}}),
    )?;
    ensure!((200..300).contains(&status), "publish API answered {status}: {body}");

    let members = ["alice".to_owned(), "bob".to_owned()];
    expect_exactly_once(
        clients,
        &members,
        &pods[0],
        &[json!({"from": "alice", "n": 1}), json!({"from": "api", "n": 2})],
    )?;
    step("a client publish and an API publish each arrived exactly once at both members");
    Ok(())
}

fn status_reports_ready_and_connections(namespace: &TestNamespace<'_>, connections: i64) -> Result<()> {
    wait_until(
        &format!("status Ready True with {connections} connections"),
        Duration::from_secs(120),
        || {
            let rtns = namespace.kubectl_json(&["get", "realtimenamespace", RTNS])?;
            let ready = rtns["status"]["conditions"].as_array().is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
            });
            Ok((ready && rtns["status"]["connections"].as_i64() == Some(connections)).then_some(()))
        },
    )?;
    let table = namespace.kubectl(&["get", "rtns", RTNS])?;
    ensure!(table.contains("True"), "kubectl get rtns shows no READY True:\n{table}");
    step(&format!("kubectl get rtns:\n{table}"));
    Ok(())
}

fn load_balancer_address(namespace: &TestNamespace<'_>) -> Result<String> {
    wait_until("the Service's load balancer address", Duration::from_secs(60), || {
        let service = namespace.kubectl_json(&["get", "service", RTNS])?;
        Ok(service["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_owned))
    })
}

/// Connects four clients through the load balancer address and checks that both pods got some.
fn load_balancer_spreads_clients(clients: &mut Clients, balancer: &str, pods: &[String]) -> Result<Vec<String>> {
    let names: Vec<String> = (0..4).map(|index| format!("lb-{index}")).collect();
    for name in &names {
        clients.connect(name, &format!("http://{balancer}:3000/chat"))?;
        clients.listen(name, "news")?;
        ensure!(
            clients.request(name, "join", json!({"room": ROOM}))? == json!({"ok": true}),
            "{name} could not join"
        );
    }
    let counts = wait_until("4 sockets on the pods' metrics", Duration::from_secs(30), || {
        let counts = pods.iter().map(|pod| connected_on(pod)).collect::<Result<Vec<f64>>>()?;
        Ok((counts.iter().sum::<f64>() == 4.0).then_some(counts))
    })?;
    ensure!(
        counts.iter().all(|count| *count > 0.0),
        "the load balancer sent every client to one pod: {counts:?}"
    );
    step(&format!("load balancer {balancer} spread 4 clients as {counts:?}"));
    Ok(names)
}

/// Changes maxPerPod, which changes the pod template, and waits for the rollout: the old pods drain,
/// the clients reconnect through the load balancer to new pods and rejoin the room there.
fn rolling_update_drains_to_new_pods(
    namespace: &TestNamespace<'_>,
    clients: &mut Clients,
    names: &[String],
    old_pods: &[String],
) -> Result<()> {
    step("patching connections.maxPerPod to 20000");
    let patch = json!({"spec": {"connections": {"maxPerPod": 20000}}});
    namespace.kubectl(&[
        "patch",
        "realtimenamespace",
        RTNS,
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ])?;

    let new_pods = wait_until("a rollout to two new Ready pods", Duration::from_secs(240), || {
        let pods = namespace.kubectl_json(&["get", "pods", "-l", SELECTOR])?;
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let ips: Vec<String> = items
            .iter()
            .filter_map(|pod| pod["status"]["podIP"].as_str().map(str::to_owned))
            .collect();
        let settled = items.len() == 2
            && items
                .iter()
                .all(|pod| pod_ready(pod) && pod["metadata"]["deletionTimestamp"].is_null())
            && ips.iter().all(|ip| !old_pods.contains(ip));
        Ok(settled.then_some(ips))
    })?;
    step(&format!("rollout finished; new pods at {new_pods:?}"));

    wait_until(
        "every client reconnected after the drain",
        Duration::from_secs(90),
        || {
            for name in names {
                let state = clients.state(name)?;
                if state["connected"] != Value::Bool(true)
                    || state["disconnects"].as_array().is_none_or(|list| list.is_empty())
                {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )?;
    let counts = wait_until("all 4 sockets on the new pods", Duration::from_secs(60), || {
        let counts = new_pods
            .iter()
            .map(|pod| connected_on(pod))
            .collect::<Result<Vec<f64>>>()?;
        Ok((counts.iter().sum::<f64>() == 4.0).then_some(counts))
    })?;
    step(&format!("old pods drained; the new pods hold {counts:?} sockets"));

    // The driver rejoins the room on every reconnect. Joining again here returns once the socket is
    // a member on its new pod, because the join ack comes after the room subscription.
    for name in names {
        wait_until(
            &format!("{name} to be in the room again"),
            Duration::from_secs(30),
            || Ok((clients.request(name, "join", json!({"room": ROOM}))? == json!({"ok": true})).then_some(())),
        )?;
    }
    let (status, body) = publish_api(
        &new_pods[0],
        json!({"namespace": "/chat", "room": ROOM, "event": "news", "data": {"from": "api", "n": 3}}),
    )?;
    ensure!((200..300).contains(&status), "publish API answered {status}: {body}");
    expect_exactly_once(clients, names, &new_pods[1], &[json!({"from": "api", "n": 3})])?;
    step("a publish after the rollout reached all 4 clients exactly once");
    status_reports_ready_and_connections(namespace, 4)
}

fn deletion_removes_owned_objects(namespace: &TestNamespace<'_>) -> Result<()> {
    step("deleting the RealtimeNamespace");
    namespace.kubectl(&["delete", "realtimenamespace", RTNS, "--wait=true", "--timeout=120s"])?;
    wait_until(
        "every object the RealtimeNamespace owned to be gone",
        Duration::from_secs(180),
        || {
            let left = namespace.kubectl(&[
                "get",
                "deployments,replicasets,pods,services,pdb,hpa,endpointslices",
                "-l",
                "app.kubernetes.io/instance=chat",
                "-o",
                "name",
            ])?;
            Ok(left.trim().is_empty().then_some(()))
        },
    )?;
    step("Deployment, ReplicaSets, pods, Services, PDB and HPA are gone");
    Ok(())
}

// -------------------------------------------------------------------------------------------------
// Helpers

fn publish_api(pod: &str, body: Value) -> Result<(u16, String)> {
    http(
        "POST",
        &format!("{pod}:9090"),
        "/api/v1/publish",
        &[
            ("Authorization", &format!("Bearer {PUBLISH_TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    )
}

fn connected_on(pod: &str) -> Result<f64> {
    let (status, page) = http("GET", &format!("{pod}:9090"), "/metrics", &[], "")?;
    if status != 200 {
        bail!("metrics of {pod} answered {status}");
    }
    Ok(metric_sum(&page, "socket_io_connected"))
}

/// Waits until every member received every expected payload, then publishes a marker through the
/// publish API of `pod` and waits for it too. Messages of one room travel in order over one sharded
/// channel, so a duplicate of an expected payload would have arrived before the marker; only then are
/// the copies counted.
fn expect_exactly_once(clients: &mut Clients, members: &[String], pod: &str, expected: &[Value]) -> Result<()> {
    for member in members {
        wait_until(
            &format!("{member} to receive {expected:?}"),
            Duration::from_secs(20),
            || {
                let received = clients.received(member, "news")?;
                Ok(expected.iter().all(|payload| received.contains(payload)).then_some(()))
            },
        )?;
    }

    let marker = json!({"marker": expected});
    let (status, body) = publish_api(
        pod,
        json!({"namespace": "/chat", "room": ROOM, "event": "news", "data": marker}),
    )?;
    ensure!((200..300).contains(&status), "publish API answered {status}: {body}");
    for member in members {
        let received = wait_until(
            &format!("{member} to receive the marker"),
            Duration::from_secs(20),
            || {
                let received = clients.received(member, "news")?;
                Ok(received.contains(&marker).then_some(received))
            },
        )?;
        for payload in expected.iter().chain([&marker]) {
            let copies = received.iter().filter(|message| *message == payload).count();
            ensure!(copies == 1, "{member} received {payload} {copies} times: {received:?}");
        }
    }
    Ok(())
}
