//! The RedisReachable check against a real redis-server on loopback:
//! - PING succeeds: reachable;
//! - a wrong password: AuthenticationFailed, and the right one: reachable;
//! - cluster mode against a server without cluster support: ClusterInfoFailed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use socketfleet_operator::conditions::RedisCheck;
use socketfleet_operator::crd::RedisMode;
use socketfleet_operator::probes::{RedisTarget, check_redis};

/// A redis-server child process, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start(extra: &[&str]) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/deps.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on port {port} within 10s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisServer { child, port }
    }

    fn target(&self, mode: RedisMode, password: Option<&str>) -> RedisTarget {
        RedisTarget {
            mode,
            urls: vec![format!("redis://127.0.0.1:{}", self.port)],
            username: None,
            password: password.map(str::to_owned),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reason(check: &RedisCheck) -> &'static str {
    match check {
        RedisCheck::Reachable { .. } => "Reachable",
        RedisCheck::Unreachable { reason, .. } => reason,
        RedisCheck::NotChecked => "NotChecked",
        RedisCheck::Skipped { reason, .. } => reason,
    }
}

#[tokio::test]
async fn standalone_server_answering_ping_is_reachable() {
    let server = RedisServer::start(&[]);
    let check = check_redis(&server.target(RedisMode::Standalone, None)).await;
    assert_eq!(reason(&check), "Reachable", "{check:?}");
}

#[tokio::test]
async fn wrong_password_is_reported_as_authentication_failure() {
    let server = RedisServer::start(&["--requirepass", "right-password"]);

    let check = check_redis(&server.target(RedisMode::Standalone, Some("wrong-password"))).await;
    assert_eq!(reason(&check), "AuthenticationFailed", "{check:?}");
    if let RedisCheck::Unreachable { message, .. } = &check {
        assert!(
            !message.contains("wrong-password"),
            "the message leaks the password: {message}"
        );
    }

    let check = check_redis(&server.target(RedisMode::Standalone, Some("right-password"))).await;
    assert_eq!(reason(&check), "Reachable", "{check:?}");
}

#[tokio::test]
async fn cluster_mode_needs_cluster_support() {
    let server = RedisServer::start(&[]);
    let check = check_redis(&server.target(RedisMode::Cluster, None)).await;
    assert_eq!(reason(&check), "ClusterInfoFailed", "{check:?}");
}

#[tokio::test]
async fn next_endpoint_is_tried_when_the_first_is_down() {
    let server = RedisServer::start(&[]);
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut target = server.target(RedisMode::Standalone, None);
    target.urls.insert(0, format!("redis://127.0.0.1:{closed_port}"));
    let check = check_redis(&target).await;
    assert_eq!(reason(&check), "Reachable", "{check:?}");
}
