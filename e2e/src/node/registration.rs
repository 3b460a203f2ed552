//! Node registration: the Node object with its address, capacity and a Ready condition.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::{Config, Result};

/// Creates the Node unless it exists, then writes its status (addresses, capacity, conditions).
pub async fn register(client: &Client, config: &Config) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes.get_opt(&config.node_name).await?.is_none() {
        nodes.create(&PostParams::default(), &desired_node(config)).await?;
    }
    write_status(client, config).await
}

/// Writes the Node's status with a fresh heartbeat.
pub async fn write_status(client: &Client, config: &Config) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({ "status": node_status(config, Timestamp::now()) });
    nodes
        .patch_status(&config.node_name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    Ok(())
}

fn desired_node(config: &Config) -> Node {
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), config.node_name.clone()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        (
            "kubernetes.io/arch".to_owned(),
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
        ),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn node_status(config: &Config, now: Timestamp) -> NodeStatus {
    let cpus = if config.cpus == 0 {
        std::thread::available_parallelism().map_or(1, |count| count.get() as u32)
    } else {
        config.cpus
    };
    let resources = BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpus.to_string())),
        ("memory".to_owned(), Quantity(config.memory.clone())),
        ("pods".to_owned(), Quantity("110".to_owned())),
        ("ephemeral-storage".to_owned(), Quantity("20Gi".to_owned())),
    ]);
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };

    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: config.node_name.clone(),
            },
        ]),
        allocatable: Some(resources.clone()),
        capacity: Some(resources),
        conditions: Some(vec![
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "socketfleet node agent is running pods",
            ),
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "not measured by this agent",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "not measured by this agent",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "not measured by this agent",
            ),
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.to_owned(),
            operating_system: "linux".to_owned(),
            os_image: "local processes".to_owned(),
            kernel_version: String::new(),
            container_runtime_version: format!("socketfleet-node://{}", env!("CARGO_PKG_VERSION")),
            kubelet_version: format!("socketfleet-node/{}", env!("CARGO_PKG_VERSION")),
            kube_proxy_version: String::new(),
            machine_id: String::new(),
            system_uuid: String::new(),
            boot_id: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
