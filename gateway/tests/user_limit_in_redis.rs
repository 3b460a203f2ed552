//! Per-user connection limit against a real redis-server: counts are shared by every pod, a
//! release frees a slot, and a pod that dies without releasing stops counting after the TTL.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use socketfleet_gateway::config::Config;
use socketfleet_gateway::user_limit::UserLimiter;

/// A redis-server on a free loopback port, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed by scripts/deps.sh");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for redis-server on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, port }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn limiter(redis: &RedisServer, limit: u32, ttl: &str) -> std::sync::Arc<UserLimiter> {
    let config = Config::from_env_pairs([
        (
            "SOCKETFLEET_REDIS_URL".to_string(),
            format!("redis://127.0.0.1:{}", redis.port),
        ),
        ("SOCKETFLEET_REDIS_MODE".to_string(), "standalone".to_string()),
        ("SOCKETFLEET_MAX_CONNECTIONS_PER_USER".to_string(), limit.to_string()),
        ("SOCKETFLEET_USER_COUNT_TTL".to_string(), ttl.to_string()),
        // Validation requires auth because the JWT `sub` identifies the user.
        ("SOCKETFLEET_AUTH_KEY_FILE".to_string(), "/unused".to_string()),
    ])
    .unwrap();
    UserLimiter::from_config(&config)
        .await
        .unwrap()
        .expect("limit configured")
}

#[tokio::test]
async fn limit_is_shared_by_pods_and_freed_on_release() {
    let redis = RedisServer::start();
    let pod_a = limiter(&redis, 2, "60s").await;
    let pod_b = limiter(&redis, 2, "60s").await;

    assert!(pod_a.acquire("alice", "sid-a1").await.unwrap());
    assert!(pod_b.acquire("alice", "sid-b1").await.unwrap());
    assert!(
        !pod_a.acquire("alice", "sid-a2").await.unwrap(),
        "third socket must be rejected"
    );
    assert!(
        pod_b.acquire("bob", "sid-b2").await.unwrap(),
        "other users are counted apart"
    );
    assert_eq!(pod_a.count("alice").await.unwrap(), 2);

    pod_b.release("alice", "sid-b1").await;
    assert_eq!(pod_a.count("alice").await.unwrap(), 1);
    assert!(pod_a.acquire("alice", "sid-a2").await.unwrap());
}

#[tokio::test]
async fn counts_of_a_dead_pod_expire() {
    let redis = RedisServer::start();
    let survivor = limiter(&redis, 1, "3s").await;
    {
        let dying = limiter(&redis, 1, "3s").await;
        assert!(dying.acquire("carol", "sid-dying").await.unwrap());
        // Dropped without release, as when a pod is killed.
    }
    assert!(!survivor.acquire("carol", "sid-1").await.unwrap());

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if survivor.acquire("carol", "sid-1").await.unwrap() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the dead pod's count to expire"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn live_counts_are_refreshed_past_the_ttl() {
    let redis = RedisServer::start();
    let pod = limiter(&redis, 1, "3s").await;
    assert!(pod.acquire("dave", "sid-live").await.unwrap());

    // Two TTLs later the pod is alive and has refreshed its member, so the user is still full.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!pod.acquire("dave", "sid-other").await.unwrap());
    assert_eq!(pod.count("dave").await.unwrap(), 1);
}
