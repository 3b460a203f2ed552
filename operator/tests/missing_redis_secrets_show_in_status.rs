//! A Redis CA Secret that is missing, or lacks its key, turns RedisReachable False with reason
//! SecretNotFound and a message naming the Secret and key, as a missing password Secret does.
//! A CA next to a `redis://` URL from a Secret, which admission cannot see, is reported too.
//! The reconcile runs against a fake API server that serves only the Secrets each test puts in.

mod support;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::{Value, json};
use socketfleet_operator::crd::{RealtimeNamespace, RealtimeNamespaceStatus, SecretKeyRef};
use support::{FakeApi, example, reconcile_on, rolled_out};

const SECRETS: &str = "/api/v1/namespaces/apps/secrets";

/// "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" in base64. The operator only
/// checks that the key exists, so the certificate need not parse.
const CA_PEM_BASE64: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";

fn secret(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "apps"},
        "data": data,
    })
}

fn put_secret(api: &FakeApi, name: &str, data: Value) {
    api.put(&format!("{SECRETS}/{name}"), secret(name, data));
}

fn reference(name: &str, key: &str) -> Option<SecretKeyRef> {
    Some(SecretKeyRef {
        name: name.into(),
        key: key.into(),
    })
}

fn with_redis_ca() -> RealtimeNamespace {
    let mut rtns = example("minimal.yaml");
    rtns.spec.redis.tls = true;
    rtns.spec.redis.ca_secret_ref = reference("redis-tls", "ca.crt");
    rtns
}

fn with_url_secret_and_ca() -> RealtimeNamespace {
    let mut rtns = with_redis_ca();
    rtns.spec.redis.tls = false;
    rtns.spec.redis.endpoints.clear();
    rtns.spec.redis.url_secret_ref = reference("redis-url", "url");
    rtns
}

/// Runs one reconcile and returns the RedisReachable condition of the status it wrote.
async fn redis_reachable_after_reconcile(api: &FakeApi, rtns: &RealtimeNamespace) -> Condition {
    *api.deployment_status.lock().unwrap() = rolled_out(1);
    reconcile_on(api, rtns).await.unwrap();
    let status_patch = api
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/status"))
        .expect("the reconcile writes the status");
    let status: RealtimeNamespaceStatus = serde_json::from_value(status_patch.body["status"].clone()).unwrap();
    status
        .conditions
        .into_iter()
        .find(|c| c.type_ == "RedisReachable")
        .expect("a RedisReachable condition")
}

#[tokio::test]
async fn missing_ca_secret_is_named() {
    let api = FakeApi::default();
    let condition = redis_reachable_after_reconcile(&api, &with_redis_ca()).await;
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason, "SecretNotFound");
    assert_eq!(condition.message, "Secret redis-tls not found");
}

#[tokio::test]
async fn missing_ca_key_is_named() {
    let api = FakeApi::default();
    put_secret(&api, "redis-tls", json!({"tls.crt": CA_PEM_BASE64}));
    let condition = redis_reachable_after_reconcile(&api, &with_redis_ca()).await;
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason, "SecretNotFound");
    assert_eq!(condition.message, "Secret redis-tls has no key ca.crt");
}

#[tokio::test]
async fn present_ca_key_lets_the_check_run() {
    let api = FakeApi::default();
    put_secret(&api, "redis-tls", json!({"ca.crt": CA_PEM_BASE64}));
    let condition = redis_reachable_after_reconcile(&api, &with_redis_ca()).await;
    // The test context's Redis check always succeeds, so True shows that it ran.
    assert_eq!(condition.status, "True", "{condition:?}");
    assert_eq!(condition.reason, "Reachable");
}

#[tokio::test]
async fn ca_with_plain_url_from_secret_is_reported() {
    let api = FakeApi::default();
    put_secret(&api, "redis-tls", json!({"ca.crt": CA_PEM_BASE64}));
    // redis://redis-0.redis.svc:6379
    put_secret(
        &api,
        "redis-url",
        json!({"url": "cmVkaXM6Ly9yZWRpcy0wLnJlZGlzLnN2Yzo2Mzc5"}),
    );
    let condition = redis_reachable_after_reconcile(&api, &with_url_secret_and_ca()).await;
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason, "CaWithoutTls");
    assert!(
        condition.message.contains("spec.redis.caSecretRef"),
        "{}",
        condition.message
    );
    assert!(
        !condition.message.contains("redis-0"),
        "the message must not show the URL: {}",
        condition.message
    );
}

#[tokio::test]
async fn ca_with_tls_url_from_secret_is_accepted() {
    let api = FakeApi::default();
    put_secret(&api, "redis-tls", json!({"ca.crt": CA_PEM_BASE64}));
    // rediss://redis-0.redis.svc:6380
    put_secret(
        &api,
        "redis-url",
        json!({"url": "cmVkaXNzOi8vcmVkaXMtMC5yZWRpcy5zdmM6NjM4MA=="}),
    );
    let condition = redis_reachable_after_reconcile(&api, &with_url_secret_and_ca()).await;
    assert_eq!(condition.status, "True", "{condition:?}");
}
