//! The node heartbeat: a Lease in `kube-node-lease` renewed every 10 s, as a kubelet does. The node
//! lifecycle controller reads it; a node whose lease stops being renewed goes NotReady and its pods
//! are evicted.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use tracing::warn;

const RENEW_INTERVAL: Duration = Duration::from_secs(10);
const LEASE_DURATION_SECONDS: i32 = 40;

/// Renews the node's Lease until the task is aborted; failures are logged and retried next period.
pub async fn renew_forever(client: Client, node_name: String) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let params = PatchParams::apply("socketfleet-node").force();
    loop {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(node_name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node_name.clone()),
                lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..Default::default()
            }),
        };
        let mut body = serde_json::to_value(&lease).expect("a Lease serializes");
        body["apiVersion"] = "coordination.k8s.io/v1".into();
        body["kind"] = "Lease".into();
        if let Err(error) = leases.patch(&node_name, &params, &Patch::Apply(body)).await {
            warn!(node = %node_name, %error, "node lease renewal failed; retrying next period");
        }
        tokio::time::sleep(RENEW_INTERVAL).await;
    }
}
