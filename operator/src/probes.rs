//! Checks the reconcile runs outside the API server: Redis reachability and live connections.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use redis::IntoConnectionInfo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use crate::builders::ADMIN_PORT;
use crate::conditions::RedisCheck;
use crate::crd::{RealtimeNamespace, RedisMode, SecretKeyRef};

/// Time one Redis check or one metrics request may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Maximum Redis URLs one check tries before it reports the last failure.
const MAX_CHECKED_URLS: usize = 3;

/// Largest metrics response read from one pod.
const MAX_METRICS_BYTES: u64 = 4 * 1024 * 1024;

/// Connection settings of a Redis binding, with secrets already read.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub mode: RedisMode,
    /// `redis://` or `rediss://` URLs, tried in order until one responds.
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisTarget {
    // The password and URLs from Secrets may carry credentials, so they never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("mode", &self.mode)
            .field("urls", &self.urls.len())
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Reads the Secrets a RealtimeNamespace's Redis binding refers to and returns the target, or
/// the failed check when a Secret or key is missing or a CA comes without a rediss:// URL.
pub async fn redis_target(secrets: &Api<Secret>, rtns: &RealtimeNamespace) -> Result<RedisTarget, RedisCheck> {
    let redis = &rtns.spec.redis;
    let scheme = if redis.tls { "rediss" } else { "redis" };
    let mut urls: Vec<String> = redis
        .endpoints
        .iter()
        .map(|endpoint| format!("{scheme}://{endpoint}"))
        .collect();
    if let Some(reference) = &redis.url_secret_ref {
        urls.push(read_secret_key(secrets, reference).await?);
    }
    let password = match &redis.password_secret_ref {
        Some(reference) => Some(read_secret_key(secrets, reference).await?),
        None => None,
    };
    if let Some(reference) = &redis.ca_secret_ref {
        // The operator only checks that the key exists. The gateways parse the certificates at
        // startup and name a bad file in their log.
        read_secret_key(secrets, reference).await?;
        // Admission checks the scheme only for endpoints, because it cannot read a URL from a
        // Secret. The gateways exit at startup on a CA file without a rediss:// URL.
        let tls = urls
            .first()
            .is_some_and(|url| url.trim_start().starts_with("rediss://"));
        if !tls {
            return Err(RedisCheck::Unreachable {
                reason: "CaWithoutTls",
                message: "spec.redis.caSecretRef is set but the Redis URL is not rediss://, and the gateways \
                          reject a CA file without TLS. Use a rediss:// URL or remove spec.redis.caSecretRef."
                    .into(),
            });
        }
    }
    Ok(RedisTarget {
        mode: redis.mode,
        urls,
        username: redis.username.clone(),
        password,
    })
}

async fn read_secret_key(secrets: &Api<Secret>, reference: &SecretKeyRef) -> Result<String, RedisCheck> {
    let missing = |message: String| RedisCheck::Unreachable {
        reason: "SecretNotFound",
        message,
    };
    let secret = secrets
        .get_opt(&reference.name)
        .await
        .map_err(|err| missing(format!("failed to read Secret {}: {err}", reference.name)))?
        .ok_or_else(|| missing(format!("Secret {} not found", reference.name)))?;
    let value = secret
        .data
        .as_ref()
        .and_then(|data| data.get(&reference.key))
        .ok_or_else(|| missing(format!("Secret {} has no key {}", reference.name, reference.key)))?;
    String::from_utf8(value.0.clone())
        .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|_| missing(format!("Secret {} key {} is not UTF-8", reference.name, reference.key)))
}

/// Sends PING, and CLUSTER INFO in cluster mode, to the target's first URLs in order and returns
/// the result of the first one that responds.
pub async fn check_redis(target: &RedisTarget) -> RedisCheck {
    // NOTE: the operator is built without the redis crate's TLS support, so a `rediss://`
    // binding is not checked and RedisReachable stays Unknown. The gateways' readiness still
    // shows whether they reach Redis.
    if target.urls.iter().any(|url| url.starts_with("rediss://")) {
        return RedisCheck::Skipped {
            reason: "TlsNotChecked",
            message: "the operator does not check Redis over TLS; gateway readiness shows whether pods reach it".into(),
        };
    }
    let mut last = RedisCheck::Unreachable {
        reason: "NoEndpoint",
        message: "no Redis endpoint is configured".into(),
    };
    // Trying a few seeds bounds one reconcile's wait at MAX_CHECKED_URLS timeouts.
    for url in target.urls.iter().take(MAX_CHECKED_URLS) {
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, check_one(target, url)).await;
        last = match outcome {
            Ok(check) => check,
            Err(_) => RedisCheck::Unreachable {
                reason: "Timeout",
                message: format!("{} timed out after {}s", redact(url), PROBE_TIMEOUT.as_secs()),
            },
        };
        if matches!(last, RedisCheck::Reachable { .. }) {
            break;
        }
    }
    last
}

async fn check_one(target: &RedisTarget, url: &str) -> RedisCheck {
    let shown = redact(url);
    let unreachable = |reason: &'static str, message: String| RedisCheck::Unreachable { reason, message };

    let info = match url.into_connection_info() {
        Ok(info) => info,
        Err(err) => return unreachable("InvalidEndpoint", format!("{shown} is not a valid Redis URL: {err}")),
    };
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &target.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &target.password {
        settings = settings.set_password(password);
    }
    let client = match redis::Client::open(info.set_redis_settings(settings)) {
        Ok(client) => client,
        Err(err) => return unreachable("InvalidEndpoint", format!("{shown}: {err}")),
    };
    let mut connection = match client.get_multiplexed_async_connection().await {
        Ok(connection) => connection,
        Err(err) if err.kind() == redis::ErrorKind::AuthenticationFailed => {
            return unreachable(
                "AuthenticationFailed",
                format!("{shown} rejected the credentials: {err}"),
            );
        }
        Err(err) => return unreachable("ConnectFailed", format!("failed to connect to {shown}: {err}")),
    };

    let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut connection).await;
    if let Err(err) = pong {
        return unreachable("PingFailed", format!("PING to {shown} failed: {err}"));
    }
    if target.mode == RedisMode::Standalone {
        return RedisCheck::Reachable {
            message: format!("{shown} replied to PING"),
        };
    }

    let info: redis::RedisResult<String> = redis::cmd("CLUSTER").arg("INFO").query_async(&mut connection).await;
    match info {
        Err(err) => unreachable("ClusterInfoFailed", format!("CLUSTER INFO on {shown} failed: {err}")),
        Ok(text) => match cluster_state(&text) {
            Some("ok") => RedisCheck::Reachable {
                message: format!("{shown} replied to PING and reports cluster_state:ok"),
            },
            Some(state) => unreachable("ClusterStateFail", format!("{shown} reports cluster_state:{state}")),
            None => unreachable(
                "ClusterInfoFailed",
                format!("CLUSTER INFO on {shown} has no cluster_state line"),
            ),
        },
    }
}

/// Returns the `cluster_state` value of a CLUSTER INFO reply.
pub fn cluster_state(info: &str) -> Option<&str> {
    info.lines().find_map(|line| line.trim().strip_prefix("cluster_state:"))
}

/// Drops the user info of a URL so that logs and conditions never show credentials.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{host}")
        }
        None => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Live connections
// ---------------------------------------------------------------------------------------------

/// Sums `socket_io_connected` over the running gateway pods of a RealtimeNamespace, read from
/// each pod's admin port. Returns `None` when no pod responded.
///
/// NOTE: a pod that does not respond within the timeout is left out of the sum, so the total
/// undercounts while a pod is overloaded or unreachable from the operator.
pub async fn live_connections(pods: &Api<Pod>, selector: &str) -> Result<Option<i64>, kube::Error> {
    let list = pods.list(&ListParams::default().labels(selector)).await?;
    let addresses: Vec<String> = list
        .items
        .iter()
        .filter(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|pod| pod.status.as_ref()?.pod_ip.clone())
        .collect();
    if addresses.is_empty() {
        return Ok(Some(0));
    }

    let answers = join_all(addresses.iter().map(|ip| scrape_connections(ip, ADMIN_PORT as u16))).await;
    let mut total = None;
    for (address, answer) in addresses.iter().zip(answers) {
        match answer {
            Ok(count) => *total.get_or_insert(0) += count,
            Err(err) => debug!(pod_ip = %address, error = %err, "failed to read gateway metrics"),
        }
    }
    Ok(total)
}

/// Reads one pod's `/metrics` and returns its `socket_io_connected` total.
pub async fn scrape_connections(ip: &str, port: u16) -> std::io::Result<i64> {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    let body = tokio::time::timeout(PROBE_TIMEOUT, http_get(&host, port, "/metrics"))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "metrics request timed out"))??;
    Ok(sum_metric(&body, crate::builders::CONNECTIONS_METRIC))
}

/// Sends a minimal HTTP/1.0 GET. The server closes the connection after one plain response, so no
/// client library is needed for the metrics text.
async fn http_get(host: &str, port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(format!("{host}:{port}")).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: text/plain\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    stream.take(MAX_METRICS_BYTES).read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "response has no header end"))?;
    let status_ok = head
        .lines()
        .next()
        .is_some_and(|line| line.split_whitespace().nth(1) == Some("200"));
    if !status_ok {
        let status = head.lines().next().unwrap_or_default().to_owned();
        return Err(std::io::Error::other(format!("metrics request failed with {status}")));
    }
    Ok(body.to_owned())
}

/// Sums every sample of `name` in Prometheus text format, over all label sets.
pub fn sum_metric(text: &str, name: &str) -> i64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            // The name must end here: `socket_io_connected_total` is another metric.
            let rest = match rest.chars().next()? {
                '{' => &rest[rest.find('}')? + 1..],
                ' ' | '\t' => rest,
                _ => return None,
            };
            let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(value as i64)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_metric_adds_label_sets() {
        let text = "# HELP socket_io_connected Live sockets\n\
                    # TYPE socket_io_connected gauge\n\
                    socket_io_connected{namespace=\"/calls\"} 12\n\
                    socket_io_connected{namespace=\"/other\"} 3\n\
                    socket_io_connected_total 99\n\
                    socket_io_connect_total 40\n";
        assert_eq!(sum_metric(text, "socket_io_connected"), 15);
    }

    #[test]
    fn sum_metric_reads_unlabelled_samples() {
        assert_eq!(sum_metric("socket_io_connected 7\n", "socket_io_connected"), 7);
        assert_eq!(
            sum_metric("socket_io_connected 7 1700000000000\n", "socket_io_connected"),
            7
        );
        assert_eq!(sum_metric("", "socket_io_connected"), 0);
    }

    #[test]
    fn cluster_state_reads_the_line() {
        let info = "cluster_enabled:1\r\ncluster_state:fail\r\ncluster_slots_assigned:16384\r\n";
        assert_eq!(cluster_state(info), Some("fail"));
        assert_eq!(cluster_state("cluster_state:ok\n"), Some("ok"));
        assert_eq!(cluster_state("cluster_enabled:0\n"), None);
    }

    #[test]
    fn redact_drops_credentials() {
        assert_eq!(redact("redis://user:secret@redis-0:6379"), "redis://redis-0:6379");
        assert_eq!(redact("rediss://:p%40ss@host:6380/0"), "rediss://host:6380/0");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn target_debug_hides_secrets() {
        let target = RedisTarget {
            mode: RedisMode::Cluster,
            urls: vec!["redis://:hunter2@host:6379".into()],
            username: None,
            password: Some("hunter2".into()),
        };
        assert!(!format!("{target:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn scrape_reads_a_local_metrics_endpoint() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            let body = "socket_io_connected{namespace=\"/\"} 42\n";
            let response = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            socket.write_all(response.as_bytes()).await.unwrap();
        });
        assert_eq!(scrape_connections("127.0.0.1", port).await.unwrap(), 42);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn tls_binding_is_skipped() {
        let target = RedisTarget {
            mode: RedisMode::Cluster,
            urls: vec!["rediss://redis-0.redis.svc:6379".into()],
            username: None,
            password: None,
        };
        match check_redis(&target).await {
            RedisCheck::Skipped { reason, .. } => assert_eq!(reason, "TlsNotChecked"),
            other => panic!("expected a skipped check, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unreachable_redis_reports_connect_failure() {
        // Bind and drop a listener to get a loopback port that refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = RedisTarget {
            mode: RedisMode::Standalone,
            urls: vec![format!("redis://127.0.0.1:{port}")],
            username: None,
            password: None,
        };
        match check_redis(&target).await {
            RedisCheck::Unreachable { reason, .. } => assert_eq!(reason, "ConnectFailed"),
            other => panic!("expected an unreachable check, got {other:?}"),
        }
    }
}
