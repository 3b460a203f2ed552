//! A local L4 load balancer for Services of type LoadBalancer: each Service gets one address on the
//! bridge (reported in `status.loadBalancer.ingress`), and each of its TCP ports gets a listener that
//! sends every new connection to the next ready endpoint of the Service's EndpointSlices, round-robin,
//! with no stickiness. That is what a cloud L4 balancer without session affinity does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::network::{self, IpPool};

/// The label EndpointSlices carry to name their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

struct Balancer {
    address: Ipv4Addr,
    /// Listener tasks keyed by service port (port number and name).
    listeners: BTreeMap<(i32, String), JoinHandle<()>>,
}

/// Serves LoadBalancer Services until `shutdown` turns true, then removes their addresses.
pub async fn run(client: Client, bridge: String, pool: IpPool, mut shutdown: watch::Receiver<bool>) {
    let (slices, writer) = reflector::store::<EndpointSlice>();
    let slice_api: Api<EndpointSlice> = Api::all(client.clone());
    let slice_watch = reflector::reflector(writer, watcher::watcher(slice_api, watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .for_each(|_| futures::future::ready(()));
    let slice_task = tokio::spawn(slice_watch);

    let services: Api<Service> = Api::all(client.clone());
    let mut events = watcher::watcher(services, watcher::Config::default()).default_backoff().boxed();
    let mut balancers: BTreeMap<(String, String), Balancer> = BTreeMap::new();
    let mut listed: BTreeSet<(String, String)> = BTreeSet::new();

    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => break,
            event = events.try_next() => event,
        };
        let event = match event {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(error) => {
                warn!(%error, "service watch failed; the watcher retries with backoff");
                continue;
            }
        };
        match event {
            WatchEvent::Init => listed.clear(),
            WatchEvent::InitApply(service) => {
                listed.insert(key(&service));
                reconcile(&client, &bridge, &pool, &slices, &mut balancers, &service).await;
            }
            WatchEvent::Apply(service) => reconcile(&client, &bridge, &pool, &slices, &mut balancers, &service).await,
            WatchEvent::Delete(service) => {
                if let Some(balancer) = balancers.remove(&key(&service)) {
                    release(&bridge, &pool, balancer).await;
                }
            }
            WatchEvent::InitDone => {
                let stale: Vec<_> = balancers.keys().filter(|key| !listed.contains(*key)).cloned().collect();
                for stale_key in stale {
                    if let Some(balancer) = balancers.remove(&stale_key) {
                        release(&bridge, &pool, balancer).await;
                    }
                }
            }
        }
    }

    slice_task.abort();
    for (_, balancer) in balancers {
        release(&bridge, &pool, balancer).await;
    }
}

fn key(service: &Service) -> (String, String) {
    (service.namespace().unwrap_or_default(), service.name_any())
}

/// Brings one Service's balancer in line with its spec: an address and one listener per TCP port for a
/// LoadBalancer Service, nothing for any other type.
async fn reconcile(
    client: &Client,
    bridge: &str,
    pool: &IpPool,
    slices: &Store<EndpointSlice>,
    balancers: &mut BTreeMap<(String, String), Balancer>,
    service: &Service,
) {
    let service_key = key(service);
    let spec = service.spec.clone().unwrap_or_default();
    let wanted = spec.type_.as_deref() == Some("LoadBalancer") && service.metadata.deletion_timestamp.is_none();
    if !wanted {
        if let Some(balancer) = balancers.remove(&service_key) {
            release(bridge, pool, balancer).await;
        }
        return;
    }

    if !balancers.contains_key(&service_key) {
        let address = match pool.allocate() {
            Ok(address) => address,
            Err(error) => {
                warn!(namespace = %service_key.0, service = %service_key.1, %error, "no load balancer address left");
                return;
            }
        };
        if let Err(error) = network::ip(&["addr", "replace", &format!("{address}/32"), "dev", bridge]).await {
            warn!(%address, %error, "adding the load balancer address to the bridge failed");
            pool.release(address);
            return;
        }
        info!(namespace = %service_key.0, service = %service_key.1, %address, "load balancer address assigned");
        balancers.insert(service_key.clone(), Balancer { address, listeners: BTreeMap::new() });
    }
    let balancer = balancers.get_mut(&service_key).expect("inserted above");

    let ports: Vec<ServicePort> =
        spec.ports.unwrap_or_default().into_iter().filter(|port| port.protocol.as_deref().unwrap_or("TCP") == "TCP").collect();
    let wanted_ports: BTreeSet<(i32, String)> =
        ports.iter().map(|port| (port.port, port.name.clone().unwrap_or_default())).collect();
    balancer.listeners.retain(|port, task| {
        let keep = wanted_ports.contains(port);
        if !keep {
            task.abort();
        }
        keep
    });
    for port in &ports {
        let port_key = (port.port, port.name.clone().unwrap_or_default());
        if balancer.listeners.contains_key(&port_key) {
            continue;
        }
        let target = Target {
            namespace: service_key.0.clone(),
            service: service_key.1.clone(),
            port_name: port_key.1.clone(),
            slices: slices.clone(),
            next: Arc::new(AtomicUsize::new(0)),
        };
        let listen = SocketAddr::from((balancer.address, port.port as u16));
        balancer.listeners.insert(port_key, tokio::spawn(serve(listen, target)));
    }

    let ingress = serde_json::json!({
        "status": { "loadBalancer": { "ingress": [{ "ip": balancer.address.to_string(), "ipMode": "VIP" }] } }
    });
    let already = service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .and_then(|load_balancer| load_balancer.ingress.as_ref())
        .is_some_and(|ingress| ingress.iter().any(|entry| entry.ip.as_deref() == Some(&balancer.address.to_string())));
    if !already {
        let services: Api<Service> = Api::namespaced(client.clone(), &service_key.0);
        if let Err(error) = services.patch_status(&service_key.1, &PatchParams::default(), &Patch::Merge(&ingress)).await {
            warn!(namespace = %service_key.0, service = %service_key.1, %error, "load balancer status patch failed");
        }
    }
}

async fn release(bridge: &str, pool: &IpPool, balancer: Balancer) {
    for (_, task) in balancer.listeners {
        task.abort();
    }
    let _ = network::ip(&["addr", "del", &format!("{}/32", balancer.address), "dev", bridge]).await;
    pool.release(balancer.address);
    info!(address = %balancer.address, "load balancer address released");
}

/// Where one listener sends connections: the ready endpoints of one named Service port.
#[derive(Clone)]
struct Target {
    namespace: String,
    service: String,
    port_name: String,
    slices: Store<EndpointSlice>,
    next: Arc<AtomicUsize>,
}

impl Target {
    /// Ready endpoints (address and port) in a stable order.
    fn endpoints(&self) -> Vec<SocketAddr> {
        let mut endpoints = Vec::new();
        for slice in self.slices.state() {
            if slice.namespace().as_deref() != Some(self.namespace.as_str())
                || slice.labels().get(SERVICE_NAME_LABEL) != Some(&self.service)
            {
                continue;
            }
            endpoints.extend(ready_endpoints(&slice, &self.port_name));
        }
        endpoints.sort();
        endpoints.dedup();
        endpoints
    }
}

/// The ready endpoints of one slice for the port named `port_name` ("" for an unnamed port). An
/// endpoint without a ready condition counts as ready, as the EndpointSlice API defines.
fn ready_endpoints(slice: &EndpointSlice, port_name: &str) -> Vec<SocketAddr> {
    let Some(port) = slice
        .ports
        .iter()
        .flatten()
        .find(|port| port.name.as_deref().unwrap_or("") == port_name)
        .and_then(|port| port.port)
    else {
        return Vec::new();
    };
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(|endpoint| endpoint.conditions.as_ref().and_then(|conditions| conditions.ready) != Some(false))
        .flat_map(|endpoint| endpoint.addresses.iter())
        .filter_map(|address| address.parse::<Ipv4Addr>().ok())
        .map(|address| SocketAddr::from((address, port as u16)))
        .collect()
}

/// Accepts connections on `listen` and splices each to the next ready endpoint.
async fn serve(listen: SocketAddr, target: Target) {
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            warn!(%listen, %error, "load balancer listener could not bind");
            return;
        }
    };
    info!(%listen, namespace = %target.namespace, service = %target.service, "load balancer listening");
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%listen, %error, "accept failed");
                continue;
            }
        };
        let target = target.clone();
        tokio::spawn(async move {
            match connect_next(&target).await {
                Some((mut upstream, endpoint)) => {
                    debug!(%peer, %endpoint, "forwarding connection");
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                None => warn!(%peer, namespace = %target.namespace, service = %target.service, "no ready endpoint; closing connection"),
            }
        });
    }
}

/// Connects to the next endpoint in round-robin order, moving on when one refuses.
async fn connect_next(target: &Target) -> Option<(TcpStream, SocketAddr)> {
    let endpoints = target.endpoints();
    for _ in 0..endpoints.len() {
        let endpoint = endpoints[target.next.fetch_add(1, Ordering::Relaxed) % endpoints.len()];
        match TcpStream::connect(endpoint).await {
            Ok(stream) => return Some((stream, endpoint)),
            Err(error) => debug!(%endpoint, %error, "endpoint refused; trying the next one"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_endpoints_of_the_named_port_count() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "addressType": "IPv4",
            "metadata": {"name": "web-abc", "namespace": "calls", "labels": {SERVICE_NAME_LABEL: "web"}},
            "ports": [{"name": "socket", "port": 3000}, {"name": "admin", "port": 9090}],
            "endpoints": [
                {"addresses": ["10.0.0.10"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.11"], "conditions": {"ready": false, "terminating": true}},
                {"addresses": ["10.0.0.12"]}
            ]
        }))
        .unwrap();
        let endpoints = ready_endpoints(&slice, "socket");
        assert_eq!(endpoints, vec!["10.0.0.10:3000".parse().unwrap(), "10.0.0.12:3000".parse().unwrap()]);
        assert!(ready_endpoints(&slice, "metrics").is_empty());
    }
}
