//! Pod networking: an address pool, and one network namespace per pod joined to the bridge by a veth.
//!
//! Everything is done with iproute2's `ip`, as root. Names carry fixed prefixes (`sfpod-` for
//! namespaces, `sfv` for host-side veths) so `cluster.sh down` can remove what a crashed agent left.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use tokio::process::Command;
use tracing::debug;

use super::{Error, Result};

pub const NETNS_PREFIX: &str = "sfpod-";
pub const VETH_PREFIX: &str = "sfv";

/// An inclusive range of IPv4 addresses, written `FIRST-LAST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not FIRST-LAST"))?;
        let first: Ipv4Addr = first.trim().parse().map_err(|error| format!("{first:?}: {error}"))?;
        let last: Ipv4Addr = last.trim().parse().map_err(|error| format!("{last:?}: {error}"))?;
        if u32::from(first) > u32::from(last) {
            return Err(format!("{text:?}: the first address is after the last"));
        }
        Ok(Self { first, last })
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}-{}", self.first, self.last)
    }
}

/// Addresses handed out from an [`IpRange`], lowest free first.
#[derive(Debug, Clone)]
pub struct IpPool {
    range: IpRange,
    used: Arc<Mutex<BTreeSet<u32>>>,
}

impl IpPool {
    pub fn new(range: IpRange) -> Self {
        Self {
            range,
            used: Arc::default(),
        }
    }

    pub fn allocate(&self) -> Result<Ipv4Addr> {
        let mut used = self.used.lock().expect("address pool lock is never poisoned");
        let free = (u32::from(self.range.first)..=u32::from(self.range.last))
            .find(|address| !used.contains(address))
            .ok_or_else(|| Error::AddressesExhausted(self.range.to_string()))?;
        used.insert(free);
        Ok(Ipv4Addr::from(free))
    }

    pub fn release(&self, address: Ipv4Addr) {
        self.used
            .lock()
            .expect("address pool lock is never poisoned")
            .remove(&u32::from(address));
    }
}

/// The network namespace of one pod, named after the pod's UID.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    pub netns: String,
    pub host_veth: String,
    pub address: Ipv4Addr,
}

impl PodNetwork {
    /// Names the namespace and veth after the first 8 hex digits of the pod UID, which keeps the veth
    /// name within the kernel's 15-byte limit.
    pub fn for_pod(uid: &str, address: Ipv4Addr) -> Self {
        let short: String = uid.chars().filter(char::is_ascii_hexdigit).take(8).collect();
        Self {
            netns: format!("{NETNS_PREFIX}{short}"),
            host_veth: format!("{VETH_PREFIX}{short}"),
            address,
        }
    }

    /// Creates the namespace with `eth0` at the pod address, `lo` up and a default route via the node
    /// address. A namespace of the same name left over from an earlier run is removed first.
    pub async fn create(&self, bridge: &str, node_ip: Ipv4Addr, prefix_len: u8) -> Result<()> {
        self.delete().await;
        let address = format!("{}/{prefix_len}", self.address);
        let node_ip = node_ip.to_string();
        ip(&["netns", "add", &self.netns]).await?;
        ip(&[
            "link",
            "add",
            &self.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &self.netns,
        ])
        .await?;
        ip(&["link", "set", &self.host_veth, "master", bridge, "up"]).await?;
        ip(&["-n", &self.netns, "addr", "add", &address, "dev", "eth0"]).await?;
        ip(&["-n", &self.netns, "link", "set", "lo", "up"]).await?;
        ip(&["-n", &self.netns, "link", "set", "eth0", "up"]).await?;
        ip(&["-n", &self.netns, "route", "add", "default", "via", &node_ip]).await?;
        debug!(netns = %self.netns, address = %self.address, "pod network created");
        Ok(())
    }

    /// Kills processes left in the namespace (by an agent that crashed), then removes the namespace,
    /// which removes both veth ends, and a stray host-side veth. Missing pieces are not an error, so
    /// this is safe to call twice.
    pub async fn delete(&self) {
        if let Ok(output) = Command::new("ip").args(["netns", "pids", &self.netns]).output().await {
            for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        let _ = ip(&["netns", "delete", &self.netns]).await;
        let _ = ip(&["link", "delete", &self.host_veth]).await;
    }
}

/// Runs `ip ARGS` and fails with its stderr when it exits non-zero.
pub async fn ip(args: &[&str]) -> Result<()> {
    run_command("ip", args).await
}

/// Runs a helper command to completion and fails with its stderr when it exits non-zero.
pub async fn run_command(program: &str, args: &[&str]) -> Result<()> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|error| Error::Command {
            command: command.clone(),
            message: error.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        command,
        message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hands_out_lowest_free_address_and_reuses_released_ones() {
        let pool = IpPool::new("10.0.0.10-10.0.0.11".parse().unwrap());
        let first = pool.allocate().unwrap();
        let second = pool.allocate().unwrap();
        assert_eq!(first, Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(second, Ipv4Addr::new(10, 0, 0, 11));
        assert!(matches!(pool.allocate(), Err(Error::AddressesExhausted(_))));

        pool.release(first);
        assert_eq!(pool.allocate().unwrap(), first);
    }

    #[test]
    fn range_rejects_reversed_bounds() {
        assert!("10.0.0.9-10.0.0.1".parse::<IpRange>().is_err());
        assert!("10.0.0.1".parse::<IpRange>().is_err());
    }

    #[test]
    fn names_fit_the_interface_name_limit() {
        let network = PodNetwork::for_pod("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(network.netns, "sfpod-0f1e2d3c");
        assert_eq!(network.host_veth, "sfv0f1e2d3c");
        assert!(network.host_veth.len() <= 15);
    }
}
