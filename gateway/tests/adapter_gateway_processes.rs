//! Three `socketfleet-gateway` processes with `--redis-url` on a real Redis Cluster, and npm
//! socket.io-client: room broadcasts through the `publish` event and the publish API reach
//! members on every pod exactly once, `/readyz` is ready, and `/metrics` shows the adapter.

#[path = "adapter_support/mod.rs"]
mod support;

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::json;
use support::{Clients, Cluster};

struct Gateway {
    child: Child,
    port: u16,
    admin_port: u16,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_gateway(redis_url: &str) -> Gateway {
    let (port, admin_port) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_socketfleet-gateway"))
        .args([
            "--bind-address",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--admin-port",
            &admin_port.to_string(),
        ])
        .args([
            "--redis-url",
            redis_url,
            "--redis-mode",
            "cluster",
            "--publish-token",
            "test-token",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("start socketfleet-gateway");
    Gateway {
        child,
        port,
        admin_port,
    }
}

async fn http(port: u16, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the admin port");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

async fn get(port: u16, path: &str) -> String {
    http(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test]
async fn gateways_share_rooms_through_redis_cluster() {
    let cluster = Cluster::start(7220);
    let seed = format!("redis://127.0.0.1:{}", cluster.port);
    let gateways: Vec<Gateway> = (0..3).map(|_| start_gateway(&seed)).collect();
    for gateway in &gateways {
        let deadline = tokio::time::Instant::now() + support::WAIT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", gateway.admin_port))
                .await
                .is_ok()
                && get(gateway.admin_port, "/readyz").await.starts_with("HTTP/1.1 200")
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway on {} never became ready",
                gateway.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let mut clients = Clients::spawn();
    for (index, gateway) in gateways.iter().enumerate() {
        let name = format!("c{index}");
        clients
            .connect_on(&name, &format!("http://127.0.0.1:{}/", gateway.port), "connect")
            .await;
        clients.join(&name, "lobby").await;
    }
    clients
        .connect_on(
            "outsider",
            &format!("http://127.0.0.1:{}/", gateways[1].port),
            "connect",
        )
        .await;

    let reply = clients
        .request(
            "c0",
            "publish",
            json!({"room": "lobby", "event": "chat", "data": "hello"}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let chat = clients.count_events("chat", Duration::from_millis(800)).await;
    assert_eq!(
        chat,
        [("c0".to_owned(), 1), ("c1".to_owned(), 1), ("c2".to_owned(), 1)].into()
    );

    let body = json!({"room": "lobby", "event": "news", "data": {"n": 1}}).to_string();
    let response = http(
        gateways[2].admin_port,
        format!(
            "POST /api/v1/publish HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer test-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 2"), "{response}");
    let news = clients.count_events("news", Duration::from_millis(800)).await;
    assert_eq!(
        news,
        [("c0".to_owned(), 1), ("c1".to_owned(), 1), ("c2".to_owned(), 1)].into()
    );

    let metrics = get(gateways[0].admin_port, "/metrics").await;
    assert!(
        metrics.contains("socketfleet_adapter_dropped_total{reason=\"queue_full\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("redis_pubsub_channels"), "{metrics}");
}
