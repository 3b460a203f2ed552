//! Service names for pods, in place of cluster DNS: each pod gets its own hosts file at
//! `/etc/netns/NETNS/hosts`, which `ip netns exec` mounts over `/etc/hosts` for the pod's processes.
//! It maps `NAME.NAMESPACE.svc.cluster.local`, `NAME.NAMESPACE.svc`, `NAME.NAMESPACE` and, inside the
//! Service's own namespace, `NAME` to the Service's cluster IP.
//!
//! The files are rewritten in place whenever a Service changes, so running pods see new Services.
//! NOTE: headless Services (no cluster IP) get no entry, and search domains are not applied, so a
//! name must be written in one of the forms above.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::warn;

#[derive(Debug, Clone)]
struct PodEntry {
    namespace: String,
    name: String,
    address: Ipv4Addr,
}

#[derive(Debug, Default)]
struct State {
    services: BTreeMap<(String, String), Ipv4Addr>,
    pods: BTreeMap<String, PodEntry>,
}

/// The hosts files of every pod on this node.
#[derive(Debug, Default)]
pub struct Hosts {
    state: Mutex<State>,
}

impl Hosts {
    /// Records a Service's cluster IP (`None` removes it) and rewrites every pod's hosts file.
    pub fn set_service(&self, namespace: &str, name: &str, address: Option<Ipv4Addr>) {
        let mut state = self.state.lock().expect("hosts lock is never poisoned");
        let key = (namespace.to_owned(), name.to_owned());
        let changed = match address {
            Some(address) => state.services.insert(key, address) != Some(address),
            None => state.services.remove(&key).is_some(),
        };
        if changed {
            for (netns, pod) in &state.pods {
                write(netns, &render(&state.services, pod));
            }
        }
    }

    /// Writes the hosts file of a new pod; call before its processes start.
    pub fn add_pod(&self, netns: &str, namespace: &str, name: &str, address: Ipv4Addr) {
        let mut state = self.state.lock().expect("hosts lock is never poisoned");
        let pod = PodEntry {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            address,
        };
        write(netns, &render(&state.services, &pod));
        state.pods.insert(netns.to_owned(), pod);
    }

    pub fn remove_pod(&self, netns: &str) {
        self.state
            .lock()
            .expect("hosts lock is never poisoned")
            .pods
            .remove(netns);
        let _ = std::fs::remove_dir_all(folder(netns));
    }
}

fn folder(netns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(netns)
}

/// Rewrites the file in place (same inode), because the pod's mount of it would not see a new file.
fn write(netns: &str, contents: &str) {
    let folder = folder(netns);
    if let Err(error) = std::fs::create_dir_all(&folder).and_then(|()| std::fs::write(folder.join("hosts"), contents)) {
        warn!(%netns, %error, "writing the pod's hosts file failed");
    }
}

fn render(services: &BTreeMap<(String, String), Ipv4Addr>, pod: &PodEntry) -> String {
    let mut text = String::from("# Written by socketfleet-node: Service names of the local cluster.\n");
    text.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let _ = writeln!(text, "{}\t{}", pod.address, pod.name);
    for ((namespace, name), address) in services {
        let _ = write!(
            text,
            "{address}\t{name}.{namespace}.svc.cluster.local {name}.{namespace}.svc {name}.{namespace}"
        );
        if *namespace == pod.namespace {
            let _ = write!(text, " {name}");
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_only_in_the_services_namespace() {
        let services = BTreeMap::from([
            (
                ("redis".to_owned(), "redis-cluster".to_owned()),
                Ipv4Addr::new(10, 96, 0, 20),
            ),
            (("chat".to_owned(), "chat".to_owned()), Ipv4Addr::new(10, 96, 0, 21)),
        ]);
        let pod = PodEntry {
            namespace: "chat".to_owned(),
            name: "chat-1".to_owned(),
            address: Ipv4Addr::new(10, 0, 0, 5),
        };
        let text = render(&services, &pod);

        assert!(
            text.contains(
                "10.96.0.20\tredis-cluster.redis.svc.cluster.local redis-cluster.redis.svc redis-cluster.redis\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("10.96.0.21\tchat.chat.svc.cluster.local chat.chat.svc chat.chat chat\n"),
            "{text}"
        );
        assert!(text.contains("10.0.0.5\tchat-1\n"), "{text}");
    }
}
