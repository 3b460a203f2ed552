//! HTTP GET and TCP probes, run from the host against the pod's address as a kubelet runs them.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A probe's settings with Kubernetes' defaults filled in.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    HttpGet {
        port: u16,
        path: String,
        https: bool,
        headers: Vec<(String, String)>,
    },
    Tcp {
        port: u16,
    },
    /// exec and gRPC probes: this node cannot run them, so they always fail with this message.
    Unsupported(String),
}

impl ProbeSpec {
    /// Reads a probe from the pod spec, resolving a named port against the container's ports.
    pub fn from_probe(probe: &Probe, container: &Container) -> Self {
        let resolve = |port: &IntOrString| -> Option<u16> {
            match port {
                IntOrString::Int(number) => u16::try_from(*number).ok(),
                IntOrString::String(name) => container
                    .ports
                    .iter()
                    .flatten()
                    .find(|candidate| candidate.name.as_deref() == Some(name.as_str()))
                    .and_then(|candidate| u16::try_from(candidate.container_port).ok()),
            }
        };
        let action = if let Some(http) = &probe.http_get {
            match resolve(&http.port) {
                Some(port) => Action::HttpGet {
                    port,
                    path: http.path.clone().unwrap_or_else(|| "/".to_owned()),
                    https: http.scheme.as_deref() == Some("HTTPS"),
                    headers: http
                        .http_headers
                        .iter()
                        .flatten()
                        .map(|header| (header.name.clone(), header.value.clone()))
                        .collect(),
                },
                None => Action::Unsupported(format!("probe port {:?} is not a container port", http.port)),
            }
        } else if let Some(tcp) = &probe.tcp_socket {
            match resolve(&tcp.port) {
                Some(port) => Action::Tcp { port },
                None => Action::Unsupported(format!("probe port {:?} is not a container port", tcp.port)),
            }
        } else {
            Action::Unsupported("exec and gRPC probes are not supported by this node".to_owned())
        };
        let seconds = |value: Option<i32>, default: i32| Duration::from_secs(value.unwrap_or(default).max(0) as u64);
        Self {
            action,
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            period: seconds(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }

    /// Runs the probe once against `address`; `Err` carries the reason it failed.
    pub async fn check(&self, address: Ipv4Addr) -> Result<(), String> {
        let attempt = async {
            match &self.action {
                Action::HttpGet {
                    port,
                    path,
                    https,
                    headers,
                } => {
                    if *https {
                        // NOTE: HTTPS probes are treated as TCP probes: a kubelet skips certificate
                        // checks but still reads the status code, which this node does not.
                        return connect(address, *port).await.map(drop);
                    }
                    http_get(address, *port, path, headers).await
                }
                Action::Tcp { port } => connect(address, *port).await.map(drop),
                Action::Unsupported(message) => Err(message.clone()),
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("probe timed out after {:?}", self.timeout)))
    }
}

async fn connect(address: Ipv4Addr, port: u16) -> Result<TcpStream, String> {
    TcpStream::connect((address, port))
        .await
        .map_err(|error| format!("connect to {address}:{port} failed: {error}"))
}

/// Sends one HTTP/1.1 GET and passes when the status code is 200–399, like a kubelet.
async fn http_get(address: Ipv4Addr, port: u16, path: &str, headers: &[(String, String)]) -> Result<(), String> {
    let mut stream = connect(address, port).await?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}:{port}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("sending the probe failed: {error}"))?;

    let mut head = Vec::new();
    let mut buffer = [0u8; 512];
    while !head.windows(2).any(|pair| pair == b"\r\n") {
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|error| format!("reading the response failed: {error}"))?;
        if read == 0 || head.len() > 8192 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let status = status_code(&head).ok_or_else(|| "the response has no HTTP status line".to_owned())?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with status code {status}"))
    }
}

fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|byte| *byte == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|version| version.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_code_reads_the_status_line() {
        assert_eq!(status_code(b"HTTP/1.1 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_code(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n"), Some(200));
        assert_eq!(status_code(b"garbage"), None);
    }

    #[test]
    fn named_port_resolves_against_container_ports() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "gateway",
            "ports": [{"name": "admin", "containerPort": 9090}]
        }))
        .unwrap();
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "httpGet": {"path": "/readyz", "port": "admin"},
            "periodSeconds": 2
        }))
        .unwrap();
        let spec = ProbeSpec::from_probe(&probe, &container);
        assert_eq!(
            spec.action,
            Action::HttpGet {
                port: 9090,
                path: "/readyz".to_owned(),
                https: false,
                headers: vec![]
            }
        );
        assert_eq!(spec.period, Duration::from_secs(2));
        assert_eq!(spec.failure_threshold, 3);
    }

    #[tokio::test]
    async fn http_probe_passes_on_2xx_and_fails_on_5xx() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for answer in ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 503 Service Unavailable\r\n\r\n"] {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await.unwrap();
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let headers = Vec::new();
        assert_eq!(http_get(Ipv4Addr::LOCALHOST, port, "/readyz", &headers).await, Ok(()));
        let failure = http_get(Ipv4Addr::LOCALHOST, port, "/readyz", &headers)
            .await
            .unwrap_err();
        assert!(failure.contains("503"), "{failure}");
    }
}
