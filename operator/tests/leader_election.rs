//! Leader election against a fake API server:
//! - with no Lease, the elector creates one it holds;
//! - a valid Lease of another replica makes it wait without writing;
//! - a write with a stale resourceVersion is a conflict, so two replicas cannot both take over;
//! - release clears the holder so a successor need not wait for expiry.

mod support;

use std::time::Duration;

use http::Method;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use serde_json::json;
use socketfleet_operator::lease::{LeaderElector, LeaseConfig, LeaseError};
use support::FakeApi;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/socketfleet-operator";

fn elector(api: &FakeApi, identity: &str) -> LeaderElector {
    let config = LeaseConfig {
        name: "socketfleet-operator".into(),
        identity: identity.into(),
        duration: Duration::from_secs(15),
        renew_interval: Duration::from_secs(5),
    };
    LeaderElector::new(Api::<Lease>::namespaced(api.client(), "ops"), "ops".into(), config)
}

fn foreign_lease(renewed: Timestamp, resource_version: &str) -> serde_json::Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "socketfleet-operator", "namespace": "ops", "resourceVersion": resource_version},
        "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15, "renewTime": renewed.to_string(), "acquireTime": renewed.to_string()}
    })
}

#[tokio::test]
async fn missing_lease_is_created_and_held() {
    let api = FakeApi::default();
    assert!(elector(&api, "a").try_acquire_or_renew().await.unwrap());
    let requests = api.requests();
    let create = requests
        .iter()
        .find(|r| r.method == Method::POST)
        .expect("a create request");
    assert_eq!(create.body["spec"]["holderIdentity"], "a");
    assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
}

#[tokio::test]
async fn valid_foreign_lease_is_left_alone() {
    let api = FakeApi::default();
    api.put(LEASE, foreign_lease(Timestamp::now(), "10"));
    assert!(!elector(&api, "a").try_acquire_or_renew().await.unwrap());
    assert!(
        api.requests().iter().all(|r| r.method == Method::GET),
        "{:?}",
        api.requests()
    );
}

#[tokio::test]
async fn expired_lease_is_taken_over() {
    let api = FakeApi::default();
    let long_ago = Timestamp::now()
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(60))
        .unwrap();
    api.put(LEASE, foreign_lease(long_ago, "10"));
    assert!(elector(&api, "a").try_acquire_or_renew().await.unwrap());
    let requests = api.requests();
    let replace = requests
        .iter()
        .find(|r| r.method == Method::PUT)
        .expect("a replace request");
    assert_eq!(replace.body["spec"]["holderIdentity"], "a");
    assert_eq!(replace.body["metadata"]["resourceVersion"], "10");
}

#[tokio::test]
async fn concurrent_write_is_a_conflict() {
    let api = FakeApi::default();
    let long_ago = Timestamp::now()
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(60))
        .unwrap();
    api.put(LEASE, foreign_lease(long_ago, "10"));
    api.conflict_on_put.store(true, std::sync::atomic::Ordering::Relaxed);

    let err = elector(&api, "a").try_acquire_or_renew().await.unwrap_err();
    assert!(matches!(err, LeaseError::Conflict { .. }), "{err:?}");
}

#[tokio::test]
async fn release_clears_the_holder() {
    let api = FakeApi::default();
    let elector = elector(&api, "a");
    assert!(elector.try_acquire_or_renew().await.unwrap());
    elector.release().await;
    let stored = api.objects.lock().unwrap().get(LEASE).cloned().unwrap();
    assert!(stored["spec"].get("holderIdentity").is_none(), "{stored}");
}
