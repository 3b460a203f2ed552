//! The per-user connection limit on Redis that speaks only TLS, trusted through --redis-ca-file.
//! Two pods share the counts on a standalone server and on a 3-master cluster. A limiter that does
//! not trust the server's CA fails to start with a message naming --redis-ca-file.

#[path = "redis_tls_support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;

use socketfleet_gateway::config::Config;
use socketfleet_gateway::user_limit::{UserLimitError, UserLimiter};
use support::{Certificates, TempDir, TlsCluster, TlsStandalone};

/// First client port of this file's TLS cluster. No other test, nor the bench (7400..7405), uses
/// 7520..7569 or 17520..17569, the ports of this block and its fallbacks.
const CLUSTER_PORT: u16 = 7520;

fn config(redis: &TlsStandalone, ca_file: &Path, limit: u32) -> Config {
    Config::from_env_pairs([
        ("SOCKETFLEET_REDIS_URL".to_string(), redis.url()),
        ("SOCKETFLEET_REDIS_MODE".to_string(), "standalone".to_string()),
        ("SOCKETFLEET_REDIS_CA_FILE".to_string(), ca_file.display().to_string()),
        ("SOCKETFLEET_MAX_CONNECTIONS_PER_USER".to_string(), limit.to_string()),
        // Validation requires auth because the JWT `sub` identifies the user.
        ("SOCKETFLEET_AUTH_KEY_FILE".to_string(), "/unused".to_string()),
    ])
    .expect("valid config")
}

async fn limiter(config: &Config) -> Arc<UserLimiter> {
    UserLimiter::from_config(config)
        .await
        .expect("connect the limiter over TLS")
        .expect("limit configured")
}

#[tokio::test]
async fn user_limit_counts_over_tls() {
    let dir = TempDir::new("redis-tls-user-limit");
    let certificates = Certificates::create(dir.path());
    let redis = TlsStandalone::start(&certificates, dir.path());

    let pod_a = limiter(&config(&redis, &certificates.ca, 2)).await;
    let pod_b = limiter(&config(&redis, &certificates.ca, 2)).await;
    assert!(pod_a.acquire("alice", "sid-a1").await.unwrap(), "first socket of alice");
    assert!(
        pod_b.acquire("alice", "sid-b1").await.unwrap(),
        "second socket of alice"
    );
    assert!(
        !pod_a.acquire("alice", "sid-a2").await.unwrap(),
        "a third socket of alice is over the limit of 2"
    );
    assert_eq!(pod_b.count("alice").await.unwrap(), 2);
    assert_eq!(
        certificates
            .cli(redis.port, &["zcard", "socketfleet:user-connections:alice"])
            .trim(),
        "2",
        "the counts are in the TLS server"
    );

    pod_b.release("alice", "sid-b1").await;
    assert!(
        pod_a.acquire("alice", "sid-a2").await.unwrap(),
        "a released slot is free again"
    );
}

#[tokio::test]
async fn user_limit_counts_on_tls_cluster() {
    let dir = TempDir::new("redis-tls-user-limit-cluster");
    let certificates = Certificates::create(dir.path());
    let cluster = TlsCluster::start(CLUSTER_PORT, &certificates, dir.path());
    let config = Config::from_env_pairs([
        ("SOCKETFLEET_REDIS_URL".to_string(), cluster.seed_url()),
        ("SOCKETFLEET_REDIS_MODE".to_string(), "cluster".to_string()),
        (
            "SOCKETFLEET_REDIS_CA_FILE".to_string(),
            certificates.ca.display().to_string(),
        ),
        ("SOCKETFLEET_MAX_CONNECTIONS_PER_USER".to_string(), "1".to_string()),
        ("SOCKETFLEET_AUTH_KEY_FILE".to_string(), "/unused".to_string()),
    ])
    .expect("valid config");

    let pod_a = limiter(&config).await;
    let pod_b = limiter(&config).await;
    assert!(pod_a.acquire("bob", "sid-a1").await.unwrap(), "first socket of bob");
    assert!(
        !pod_b.acquire("bob", "sid-b1").await.unwrap(),
        "a second socket of bob is over the limit of 1"
    );
    assert_eq!(pod_b.count("bob").await.unwrap(), 1);
}

#[tokio::test]
async fn user_limit_rejects_untrusted_certificate() {
    let dir = TempDir::new("redis-tls-user-limit-untrusted");
    let certificates = Certificates::create(dir.path());
    let redis = TlsStandalone::start(&certificates, dir.path());

    let result = tokio::time::timeout(
        support::WAIT,
        UserLimiter::from_config(&config(&redis, &certificates.other_ca, 2)),
    )
    .await
    .expect("the limiter's connection attempts end within the wait");
    let err = match result {
        Ok(_) => panic!("a limiter that does not trust the server's CA connected"),
        Err(err) => err,
    };
    assert!(matches!(err, UserLimitError::Connect(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("--redis-ca-file"), "{message}");
}
