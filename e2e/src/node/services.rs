//! A userspace service proxy in place of kube-proxy and a cloud load balancer.
//!
//! - Every Service with a cluster IP gets that IP as a /32 on the bridge, so pods reach it through
//!   their default route, and its name in the pods' hosts files.
//! - A Service of type LoadBalancer also gets one address from the load balancer range, reported in
//!   `status.loadBalancer.ingress`, which clients on the machine can reach.
//! - Each TCP port on each of those addresses has a listener that sends every new connection to the
//!   next ready endpoint of the Service's EndpointSlices, round-robin, with no stickiness: what a cloud
//!   L4 balancer without session affinity does.
//!
//! NOTE: UDP ports, NodePorts, session affinity and traffic policies are not served.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Client, ResourceExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::hosts::Hosts;
use super::network::{self, IpPool};

/// The label EndpointSlices carry to name their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The addresses and listeners of one Service.
struct Balancer {
    cluster_ip: Option<Ipv4Addr>,
    load_balancer_ip: Option<Ipv4Addr>,
    /// Listener tasks keyed by address and service port (number and name).
    listeners: BTreeMap<(Ipv4Addr, i32, String), JoinHandle<()>>,
}

impl Balancer {
    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        self.cluster_ip.into_iter().chain(self.load_balancer_ip)
    }
}

/// Shared by every Service's reconcile.
struct Proxy {
    client: Client,
    bridge: String,
    pool: IpPool,
    hosts: Arc<Hosts>,
    slices: Store<EndpointSlice>,
}

/// Serves Services until `shutdown` turns true, then removes their addresses.
pub async fn run(client: Client, bridge: String, pool: IpPool, hosts: Arc<Hosts>, mut shutdown: watch::Receiver<bool>) {
    let (slices, writer) = reflector::store::<EndpointSlice>();
    let slice_api: Api<EndpointSlice> = Api::all(client.clone());
    let slice_watch = reflector::reflector(writer, watcher::watcher(slice_api, watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .for_each(|_| futures::future::ready(()));
    let slice_task = tokio::spawn(slice_watch);

    let services: Api<Service> = Api::all(client.clone());
    let proxy = Proxy {
        client,
        bridge,
        pool,
        hosts,
        slices,
    };
    let mut events = watcher::watcher(services, watcher::Config::default())
        .default_backoff()
        .boxed();
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
                proxy.reconcile(&mut balancers, &service).await;
            }
            WatchEvent::Apply(service) => proxy.reconcile(&mut balancers, &service).await,
            WatchEvent::Delete(service) => {
                if let Some(balancer) = balancers.remove(&key(&service)) {
                    proxy.release(&key(&service), balancer).await;
                }
            }
            WatchEvent::InitDone => {
                let stale: Vec<_> = balancers.keys().filter(|key| !listed.contains(*key)).cloned().collect();
                for stale_key in stale {
                    if let Some(balancer) = balancers.remove(&stale_key) {
                        proxy.release(&stale_key, balancer).await;
                    }
                }
            }
        }
    }

    slice_task.abort();
    for (service_key, balancer) in balancers {
        proxy.release(&service_key, balancer).await;
    }
}

fn key(service: &Service) -> (String, String) {
    (service.namespace().unwrap_or_default(), service.name_any())
}

impl Proxy {
    /// Brings one Service's addresses and listeners in line with its spec.
    async fn reconcile(&self, balancers: &mut BTreeMap<(String, String), Balancer>, service: &Service) {
        let service_key = key(service);
        let spec = service.spec.clone().unwrap_or_default();
        let cluster_ip = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let wants_load_balancer = spec.type_.as_deref() == Some("LoadBalancer");
        if service.metadata.deletion_timestamp.is_some() || (cluster_ip.is_none() && !wants_load_balancer) {
            if let Some(balancer) = balancers.remove(&service_key) {
                self.release(&service_key, balancer).await;
            }
            return;
        }

        let balancer = balancers.entry(service_key.clone()).or_insert_with(|| Balancer {
            cluster_ip: None,
            load_balancer_ip: None,
            listeners: BTreeMap::new(),
        });
        if balancer.cluster_ip != cluster_ip {
            if let Some(old) = balancer.cluster_ip.take() {
                self.remove_address(old).await;
            }
            if let Some(address) = cluster_ip
                && self.add_address(address).await
            {
                balancer.cluster_ip = Some(address);
            }
            self.hosts
                .set_service(&service_key.0, &service_key.1, balancer.cluster_ip);
        }
        if wants_load_balancer && balancer.load_balancer_ip.is_none() {
            match self.pool.allocate() {
                Ok(address) if self.add_address(address).await => {
                    info!(namespace = %service_key.0, service = %service_key.1, %address, "load balancer address assigned");
                    balancer.load_balancer_ip = Some(address);
                }
                Ok(address) => self.pool.release(address),
                Err(error) => {
                    warn!(namespace = %service_key.0, service = %service_key.1, %error, "no load balancer address left")
                }
            }
        } else if !wants_load_balancer && let Some(address) = balancer.load_balancer_ip.take() {
            self.remove_address(address).await;
            self.pool.release(address);
        }

        self.sync_listeners(&service_key, balancer, &spec.ports.unwrap_or_default());
        if let Some(address) = balancer.load_balancer_ip {
            self.report_ingress(service, address).await;
        }
    }

    /// Starts a listener for every TCP port on every address and stops those no longer wanted.
    fn sync_listeners(&self, service_key: &(String, String), balancer: &mut Balancer, ports: &[ServicePort]) {
        let tcp_ports: Vec<&ServicePort> = ports
            .iter()
            .filter(|port| port.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .collect();
        let mut wanted: BTreeSet<(Ipv4Addr, i32, String)> = BTreeSet::new();
        for address in balancer.addresses() {
            for port in &tcp_ports {
                wanted.insert((address, port.port, port.name.clone().unwrap_or_default()));
            }
        }
        balancer.listeners.retain(|listener, task| {
            let keep = wanted.contains(listener);
            if !keep {
                task.abort();
            }
            keep
        });
        for listener in wanted {
            if balancer.listeners.contains_key(&listener) {
                continue;
            }
            let target = Target {
                namespace: service_key.0.clone(),
                service: service_key.1.clone(),
                port_name: listener.2.clone(),
                slices: self.slices.clone(),
                next: Arc::new(AtomicUsize::new(0)),
            };
            let listen = SocketAddr::from((listener.0, listener.1 as u16));
            balancer.listeners.insert(listener, tokio::spawn(serve(listen, target)));
        }
    }

    async fn report_ingress(&self, service: &Service, address: Ipv4Addr) {
        let already = service
            .status
            .as_ref()
            .and_then(|status| status.load_balancer.as_ref())
            .and_then(|load_balancer| load_balancer.ingress.as_ref())
            .is_some_and(|ingress| {
                ingress
                    .iter()
                    .any(|entry| entry.ip.as_deref() == Some(address.to_string().as_str()))
            });
        if already {
            return;
        }
        let (namespace, name) = key(service);
        let ingress = serde_json::json!({
            "status": { "loadBalancer": { "ingress": [{ "ip": address.to_string(), "ipMode": "VIP" }] } }
        });
        let services: Api<Service> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = services
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&ingress))
            .await
        {
            warn!(%namespace, service = %name, %error, "load balancer status patch failed");
        }
    }

    async fn add_address(&self, address: Ipv4Addr) -> bool {
        match network::ip(&["addr", "replace", &format!("{address}/32"), "dev", &self.bridge]).await {
            Ok(()) => true,
            Err(error) => {
                warn!(%address, %error, "adding a service address to the bridge failed");
                false
            }
        }
    }

    async fn remove_address(&self, address: Ipv4Addr) {
        let _ = network::ip(&["addr", "del", &format!("{address}/32"), "dev", &self.bridge]).await;
    }

    async fn release(&self, service_key: &(String, String), balancer: Balancer) {
        for (_, task) in balancer.listeners {
            task.abort();
        }
        if let Some(address) = balancer.cluster_ip {
            self.remove_address(address).await;
            self.hosts.set_service(&service_key.0, &service_key.1, None);
        }
        if let Some(address) = balancer.load_balancer_ip {
            self.remove_address(address).await;
            self.pool.release(address);
            info!(namespace = %service_key.0, service = %service_key.1, %address, "load balancer address released");
        }
    }
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

/// Returns the ready endpoints of one slice for the port named `port_name` ("" for an unnamed port).
/// An endpoint without a ready condition counts as ready, as the EndpointSlice API defines.
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
            warn!(%listen, %error, "service listener could not bind");
            return;
        }
    };
    debug!(%listen, namespace = %target.namespace, service = %target.service, "service listener started");
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
                // NOTE: the listener accepted before it knew there is no endpoint, so the client sees
                // a reset connection where kube-proxy's REJECT rule would refuse it.
                None => {
                    warn!(%peer, namespace = %target.namespace, service = %target.service, "no ready endpoint; closing connection")
                }
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
        assert_eq!(
            endpoints,
            vec!["10.0.0.10:3000".parse().unwrap(), "10.0.0.12:3000".parse().unwrap()]
        );
        assert!(ready_endpoints(&slice, "metrics").is_empty());
    }
}
