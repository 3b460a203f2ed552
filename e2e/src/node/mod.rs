//! The node agent: a small stand-in for a kubelet and a cloud load balancer on one machine.
//!
//! What it does:
//! - registers a Node with a Ready condition and renews its Lease in `kube-node-lease`;
//! - runs each pod bound to that node as local processes, one per container, inside a network
//!   namespace of its own with an address on the bridge, so every pod can bind the same port;
//! - maps a container image to a local binary by the image's last path component
//!   (`ghcr.io/socketfleet/gateway:0.1.0` runs the binary configured for `gateway`);
//! - sets env as the pod spec says (values, downward API field refs, Secret and ConfigMap keys,
//!   `envFrom`, `$(VAR)` expansion) and passes the pod's args;
//! - fills `emptyDir`, `secret`, `configMap`, `downwardAPI` and `projected` volumes and bind-mounts
//!   them at their mount paths, so the service-account token from the TokenRequest API appears at
//!   `/var/run/secrets/kubernetes.io/serviceaccount`; `KUBERNETES_SERVICE_HOST`/`PORT` name the API
//!   server;
//! - runs HTTP and TCP readiness, liveness and startup probes, and reports the pod's phase, IP,
//!   conditions and container statuses;
//! - on deletion sends SIGTERM, waits for the grace period, then SIGKILL, and removes the pod;
//! - proxies every Service's cluster IP and gives each LoadBalancer Service one more address, both
//!   forwarding TCP round-robin over the ready endpoints of the Service's EndpointSlices with no
//!   stickiness, and writes Service names into each pod's `/etc/hosts`.
//!
//! What it does not do, compared with a kubelet (and kube-proxy, CoreDNS):
//! - no container images, cgroups, resource limits, users, PID or filesystem isolation: a pod's
//!   processes run as root on the host's filesystem, and only the network and mount namespaces differ,
//!   so `securityContext` (for example `runAsUser`) is ignored;
//! - volume types other than those above (hostPath, persistentVolumeClaim, …) make the pod fail to
//!   start, and Secret or ConfigMap changes do not reach running pods;
//! - init containers, sidecars, exec and gRPC probes, lifecycle hooks, `kubectl exec`, port-forward
//!   and attach are not supported; `kubectl logs` is (container logs are files in the state folder);
//! - no cluster DNS server: names resolve only through the hosts file, and headless Services have
//!   no entry; `KUBERNETES_SERVICE_HOST` is the node address rather than the `kubernetes` Service's
//!   cluster IP;
//! - no eviction under pressure and no node conditions beyond Ready; when the agent restarts, it kills
//!   the processes it left and starts its pods again, possibly at new addresses.

pub mod env;
pub mod hosts;
pub mod images;
pub mod lease;
pub mod logs;
pub mod network;
pub mod pods;
pub mod probe;
pub mod process;
pub mod registration;
pub mod services;
pub mod status;
pub mod token;
pub mod volumes;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use kube::Client;
use tracing::info;

pub use images::ImageMap;
pub use network::{IpRange, PodNetwork};

/// Errors of the node agent, named by what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    #[error("command `{command}` failed: {message}")]
    Command { command: String, message: String },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("no free address left in {0}")]
    AddressesExhausted(String),

    #[error("image {image} has no local binary; map it with --image NAME=PATH")]
    ImageNotMapped { image: String },

    #[error("invalid pod spec: {0}")]
    InvalidSpec(String),

    #[error("{0} was not found")]
    NotFound(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Command-line settings of `socketfleet-node`. Every flag has an env fallback
/// `SOCKETFLEET_NODE_<FLAG>`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "socketfleet-node",
    about = "Runs the pods of one Kubernetes node as local processes"
)]
pub struct Config {
    /// Kubeconfig of the cluster; the agent needs rights on nodes, leases, pods, pod status,
    /// service-account tokens, secrets, configmaps, services, service status and endpointslices.
    #[arg(long, env = "SOCKETFLEET_NODE_KUBECONFIG")]
    pub kubeconfig: PathBuf,

    /// Name of the Node to register.
    #[arg(long, env = "SOCKETFLEET_NODE_NODE_NAME", default_value = "socketfleet-local")]
    pub node_name: String,

    /// Address of the node on the bridge: pods use it as their default gateway and as the API
    /// server's address.
    #[arg(long, env = "SOCKETFLEET_NODE_NODE_IP")]
    pub node_ip: Ipv4Addr,

    /// Port of the API server on the node address, given to pods as KUBERNETES_SERVICE_PORT.
    #[arg(long, env = "SOCKETFLEET_NODE_APISERVER_PORT", default_value_t = 6443)]
    pub apiserver_port: u16,

    /// Linux bridge the pods' veths join; it must exist and carry the node address.
    #[arg(long, env = "SOCKETFLEET_NODE_BRIDGE", default_value = "sfbr0")]
    pub bridge: String,

    /// Prefix length of the bridge subnet, used for pod addresses.
    #[arg(long, env = "SOCKETFLEET_NODE_PREFIX_LEN", default_value_t = 24)]
    pub prefix_len: u8,

    /// Pod addresses, as FIRST-LAST inside the bridge subnet.
    #[arg(long, env = "SOCKETFLEET_NODE_POD_IP_RANGE")]
    pub pod_ip_range: IpRange,

    /// LoadBalancer Service addresses, as FIRST-LAST inside the bridge subnet; each is added to the
    /// bridge as a /32 while its Service exists.
    #[arg(long, env = "SOCKETFLEET_NODE_LOAD_BALANCER_IP_RANGE")]
    pub load_balancer_ip_range: IpRange,

    /// Folder for pod state: service-account token files and container logs.
    #[arg(long, env = "SOCKETFLEET_NODE_STATE_DIR")]
    pub state_dir: PathBuf,

    /// Image to binary mapping, as NAME=PATH where NAME is the image's last path component without
    /// tag or digest; repeatable.
    #[arg(
        long = "image",
        env = "SOCKETFLEET_NODE_IMAGES",
        value_delimiter = ',',
        required = true
    )]
    pub images: Vec<String>,

    /// Allocatable CPUs reported on the Node; 0 reports the machine's count.
    #[arg(long, env = "SOCKETFLEET_NODE_CPUS", default_value_t = 0)]
    pub cpus: u32,

    /// Allocatable memory reported on the Node, as a Kubernetes quantity.
    #[arg(long, env = "SOCKETFLEET_NODE_MEMORY", default_value = "16Gi")]
    pub memory: String,

    /// Serving certificate of the container log endpoint on the node address, port 10250; with
    /// --serving-key and --client-ca-file it makes `kubectl logs` work. Unset: no log endpoint.
    #[arg(long, env = "SOCKETFLEET_NODE_SERVING_CERT", requires_all = ["serving_key", "client_ca_file"])]
    pub serving_cert: Option<PathBuf>,

    /// Private key of the serving certificate.
    #[arg(long, env = "SOCKETFLEET_NODE_SERVING_KEY")]
    pub serving_key: Option<PathBuf>,

    /// CA whose client certificates (the API server's kubelet client) may read logs.
    #[arg(long, env = "SOCKETFLEET_NODE_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// Log filter (tracing-subscriber's EnvFilter syntax).
    #[arg(long, env = "SOCKETFLEET_NODE_LOG", default_value = "info")]
    pub log: String,
}

/// Everything a pod worker needs, shared by all of them.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub images: ImageMap,
    pub pod_ips: network::IpPool,
    pub hosts: Arc<hosts::Hosts>,
}

/// Runs the agent until SIGTERM or ctrl-c, then stops every pod it runs (each with its grace period)
/// and the load balancer listeners.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&config.kubeconfig)?;
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
    let client = Client::try_from(client_config)?;

    let images = ImageMap::parse(&config.images)?;
    let pod_ips = network::IpPool::new(config.pod_ip_range.clone());
    let load_balancer_ips = network::IpPool::new(config.load_balancer_ip_range.clone());
    tokio::fs::create_dir_all(&config.state_dir)
        .await
        .map_err(|source| Error::Io {
            path: config.state_dir.display().to_string(),
            source,
        })?;

    registration::register(&client, &config).await?;
    info!(node = %config.node_name, "node registered");

    let hosts = Arc::new(hosts::Hosts::default());
    let context = Arc::new(Context {
        client: client.clone(),
        config: config.clone(),
        images,
        pod_ips,
        hosts: hosts.clone(),
    });
    let shutdown = shutdown_signal();

    let heartbeat = tokio::spawn(lease::renew_forever(client.clone(), config.node_name.clone()));
    let proxy = tokio::spawn(services::run(
        client.clone(),
        config.bridge.clone(),
        load_balancer_ips,
        hosts,
        shutdown.clone(),
    ));
    let log_endpoint = match (&config.serving_cert, &config.serving_key, &config.client_ca_file) {
        (Some(cert), Some(key), Some(client_ca)) => {
            let tls = logs::Tls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: client_ca.clone(),
            };
            let address = std::net::SocketAddr::from((config.node_ip, 10250));
            let pods_folder = config.state_dir.join("pods");
            Some(tokio::spawn(async move {
                if let Err(error) = logs::serve(address, tls, pods_folder).await {
                    tracing::error!(%error, "container log endpoint failed; kubectl logs will not work");
                }
            }))
        }
        _ => None,
    };
    let pods = pods::run(context, shutdown.clone()).await;

    heartbeat.abort();
    if let Some(task) = log_endpoint {
        task.abort();
    }
    let _ = proxy.await;
    info!(node = %config.node_name, "node agent stopped");
    pods
}

/// Returns a watch channel that turns true on SIGTERM or ctrl-c.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (sender, receiver) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = terminate.recv() => info!("received SIGTERM; stopping pods"),
            _ = tokio::signal::ctrl_c() => info!("received ctrl-c; stopping pods"),
        }
        let _ = sender.send(true);
    });
    receiver
}
