//! Shared parts of the adapter tests: a real Redis Cluster (or standalone server) started by the
//! project's script, pods that run socketioxide with the Redis adapter on loopback, and real
//! socket.io clients driven through `tests/js/adapter/driver.js`.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde::Deserialize;
use serde_json::{Value, json};
use socketfleet_gateway::adapter::{AdapterConfig, ConnectOptions, RedisAdapter, RedisAdapterState, Topology};
use socketioxide::{
    SocketIo,
    adapter::Emitter,
    extract::{AckSender, Data, SocketRef},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

/// The adapter type of the test pods.
pub type Adapter = RedisAdapter<Emitter>;

/// Upper bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

// ==== Redis ====

/// A Redis Cluster of 3 masters and 3 replicas on loopback, stopped on drop (and by the script's
/// watcher if the test process dies).
pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
}

impl Cluster {
    /// Starts a cluster on ports `port..port+5` (cluster bus `port+10000..`), or on a later block
    /// of ports if another process already listens on one of them.
    pub fn start(port: u16) -> Self {
        for attempt in 0..5u16 {
            let base = port + attempt * 500;
            let ports = (0..6).flat_map(|i| [base + i, base + i + 10_000]);
            if !ports
                .into_iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
            {
                continue;
            }
            let dir = std::env::temp_dir().join(format!("socketfleet-adapter-test-{base}"));
            let status = std::process::Command::new("bash")
                .arg(repo_root().join("e2e/scripts/redis-cluster.sh"))
                .args(["start", "--port", &base.to_string(), "--dir"])
                .arg(&dir)
                .args(["--owner-pid", &std::process::id().to_string()])
                .status()
                .expect("run e2e/scripts/redis-cluster.sh");
            if status.success() {
                return Self { port: base, dir };
            }
        }
        panic!("no redis cluster started on ports {port}.. after 5 attempts");
    }

    /// Node URLs for the cluster client.
    pub fn urls(&self) -> Vec<String> {
        (0..6).map(|i| format!("redis://127.0.0.1:{}", self.port + i)).collect()
    }

    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            urls: self.urls(),
            topology: Topology::Cluster,
            username: None,
            password: None,
            ca_certificates: None,
        }
    }

    /// Runs redis-cli against one node and returns its output.
    pub fn cli(&self, node_port: u16, args: &[&str]) -> String {
        let output = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &node_port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs redis-cli against the first node that replies (a killed node prints nothing).
    pub fn cli_any(&self, args: &[&str]) -> String {
        (0..6)
            .map(|i| self.cli(self.port + i, args))
            .find(|out| !out.trim().is_empty())
            .unwrap_or_default()
    }

    /// Ports of the current masters that are not marked failed.
    pub fn master_ports(&self) -> Vec<u16> {
        let nodes = self.cli_any(&["cluster", "nodes"]);
        let mut ports: Vec<u16> = nodes
            .lines()
            .filter(|line| line.contains("master") && !line.contains("fail"))
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter_map(|address| address.split(['@', ':']).nth(1)?.parse().ok())
            .collect();
        ports.sort();
        ports
    }

    /// Returns the pid of the node on `node_port`.
    pub fn pid(&self, node_port: u16) -> i32 {
        std::fs::read_to_string(self.dir.join(node_port.to_string()).join("redis.pid"))
            .expect("node pid file")
            .trim()
            .parse()
            .expect("pid")
    }

    /// Sharded channels with subscribers on each master, summed.
    pub fn shard_channels(&self) -> Vec<String> {
        let mut channels = Vec::new();
        for port in self.master_ports() {
            channels.extend(self.cli(port, &["pubsub", "shardchannels"]).lines().map(str::to_owned));
        }
        channels.retain(|c| !c.is_empty());
        channels
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(repo_root().join("e2e/scripts/redis-cluster.sh"))
            .args(["stop", "--port", &self.port.to_string(), "--dir"])
            .arg(&self.dir)
            .status();
    }
}

/// One standalone redis-server on loopback, stopped on drop.
pub struct Standalone {
    pub port: u16,
    child: std::process::Child,
}

impl Standalone {
    pub fn start(port: u16) -> Self {
        let mut child = std::process::Command::new("redis-server")
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
            .expect("start redis-server");
        for _ in 0..100 {
            let pong = std::process::Command::new("redis-cli")
                .args(["-p", &port.to_string(), "ping"])
                .output();
            if pong.is_ok_and(|o| o.stdout.starts_with(b"PONG")) {
                return Self { port, child };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server on port {port} did not reply to PING within 5 s");
    }

    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            urls: vec![format!("redis://127.0.0.1:{}", self.port)],
            topology: Topology::Standalone,
            username: None,
            password: None,
            ca_certificates: None,
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ==== Pods ====

/// A gateway-like pod: socketioxide with the Redis adapter on a loopback port. Clients use the
/// events `join`, `leave`, `publish` and `broadcast_with_ack`; every socket joins its own id room
/// through the adapter at connect, then gets `ready` with its id.
pub struct Pod {
    pub io: SocketIo<Adapter>,
    pub state: RedisAdapterState,
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Deserialize)]
struct RoomBody {
    room: String,
}

#[derive(Deserialize)]
struct PublishBody {
    room: String,
    event: String,
    data: Value,
}

async fn on_connect(socket: SocketRef<Adapter>) {
    socket.on(
        "join",
        async |socket: SocketRef<Adapter>, Data(body): Data<RoomBody>, ack: AckSender<Adapter>| {
            let reply = match socket.local().join(body.room).await {
                Ok(()) => json!({"ok": true}),
                Err(err) => json!({"error": err.to_string()}),
            };
            let _ = ack.send(&reply);
        },
    );
    socket.on(
        "leave",
        async |socket: SocketRef<Adapter>, Data(body): Data<RoomBody>, ack: AckSender<Adapter>| {
            let reply = match socket.local().leave(body.room).await {
                Ok(()) => json!({"ok": true}),
                Err(err) => json!({"error": err.to_string()}),
            };
            let _ = ack.send(&reply);
        },
    );
    socket.on(
        "publish",
        async |socket: SocketRef<Adapter>, Data(body): Data<PublishBody>, ack: AckSender<Adapter>| {
            let reply = match socket.within(body.room).emit(&body.event, &body.data).await {
                Ok(()) => json!({"ok": true}),
                Err(err) => json!({"error": err.to_string()}),
            };
            let _ = ack.send(&reply);
        },
    );
    socket.on(
        "broadcast_with_ack",
        async |socket: SocketRef<Adapter>, Data(body): Data<PublishBody>, ack: AckSender<Adapter>| {
            use futures::StreamExt;
            let reply = match socket
                .within(body.room)
                .emit_with_ack::<_, Value>(&body.event, &body.data)
                .await
            {
                Ok(stream) => {
                    let acks: Vec<Value> = stream
                        .map(|(sid, result)| json!({"sid": sid.to_string(), "ack": result.ok()}))
                        .collect()
                        .await;
                    json!({"ok": true, "acks": acks})
                }
                Err(err) => json!({"error": err.to_string()}),
            };
            let _ = ack.send(&reply);
        },
    );
    socket.on_disconnect(async |socket: SocketRef<Adapter>| {
        let rooms = socket.rooms();
        let _ = socket.local().leave(rooms).await;
    });
    tokio::spawn(async move {
        let id = socket.id.to_string();
        if let Err(err) = socket.local().join(id.clone()).await {
            tracing::error!(error = %err, "joining the socket's own room failed");
            return;
        }
        let _ = socket.emit("ready", &id);
    });
}

impl Pod {
    /// Starts a pod with the default adapter settings.
    pub async fn start(options: ConnectOptions) -> Self {
        Self::start_with(options, AdapterConfig::default()).await
    }

    pub async fn start_with(options: ConnectOptions, config: AdapterConfig) -> Self {
        // RUST_LOG=socketfleet_gateway=debug shows the adapter's logs of a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let state = RedisAdapterState::connect(options, config)
            .await
            .expect("connect the adapter to redis");
        let (layer, io) = SocketIo::builder().with_adapter::<Adapter>(state.clone()).build_layer();
        io.ns("/", on_connect).await.expect("namespace / ready");

        let app = axum::Router::new().layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { io, state, url, server }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ==== Clients ====

/// socket.io clients (npm socket.io-client) in one node process.
pub struct Clients {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Events read while waiting for something else, in arrival order.
    pub seen: Vec<Value>,
    tags: u64,
}

impl Clients {
    pub fn spawn() -> Self {
        let script = repo_root().join("gateway/tests/js/adapter/driver.js");
        let mut child = Command::new("node")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start node (socket.io-client driver)");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            tags: 0,
        }
    }

    async fn send(&mut self, command: Value) {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the client driver");
    }

    /// Reads driver output until `matches` accepts a line, keeping the others in `seen`.
    pub async fn wait_for(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(index) = self.seen.iter().position(&matches) {
            return self.seen.remove(index);
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; seen: {:?}", self.seen))
                .expect("read from the client driver")
                .unwrap_or_else(|| panic!("client driver exited while waiting for {what}"));
            let value: Value = serde_json::from_str(&line).expect("driver output is JSON");
            if matches(&value) {
                return value;
            }
            self.seen.push(value);
        }
    }

    /// Connects client `name` to `url` and returns its socket id once its id room is joined.
    pub async fn connect(&mut self, name: &str, url: &str) -> String {
        self.connect_on(name, url, "ready").await
    }

    /// Connects client `name` and returns its socket id once the server sent `ready_event`
    /// (`connect` for servers that send nothing).
    pub async fn connect_on(&mut self, name: &str, url: &str, ready_event: &str) -> String {
        self.send(json!({"cmd": "connect", "client": name, "url": url, "readyEvent": ready_event}))
            .await;
        let connected = self
            .wait_for(&format!("{name} to connect"), |v| {
                v["type"] == "connected" && v["client"] == name
            })
            .await;
        connected["sid"].as_str().unwrap().to_owned()
    }

    /// Connects `count` clients named `prefix0..` to `url`, each joining `room`; their events are
    /// counted by the driver (see [`Clients::bulk_counts`]) instead of reported one by one.
    pub async fn connect_many(&mut self, prefix: &str, count: usize, url: &str, room: &str) {
        self.send(json!({"cmd": "connect_many", "prefix": prefix, "count": count, "url": url, "room": room}))
            .await;
        self.wait_for(&format!("{count} clients {prefix}* to connect and join {room}"), |v| {
            v["type"] == "connected_many" && v["prefix"] == prefix
        })
        .await;
    }

    /// Returns how many events of each name the `connect_many` clients received.
    pub async fn bulk_counts(&mut self) -> Value {
        self.send(json!({"cmd": "counts"})).await;
        self.wait_for("event counts", |v| v["type"] == "counts").await["counts"].clone()
    }

    /// Emits `event` with an ack and returns the ack's data.
    pub async fn request(&mut self, name: &str, event: &str, data: Value) -> Value {
        self.tags += 1;
        let tag = format!("t{}", self.tags);
        self.send(json!({"cmd": "emit", "client": name, "event": event, "data": data, "ack": true, "tag": tag}))
            .await;
        let ack = self
            .wait_for(&format!("ack of {event} from {name}"), |v| {
                v["type"] == "ack" && v["tag"] == tag.as_str()
            })
            .await;
        assert!(ack["error"].is_null(), "{event} from {name} failed: {ack}");
        ack["data"].clone()
    }

    /// Joins `room` and asserts the server accepted it.
    pub async fn join(&mut self, name: &str, room: &str) {
        let reply = self.request(name, "join", json!({"room": room})).await;
        assert_eq!(reply["ok"], true, "join {room} by {name}: {reply}");
    }

    pub async fn leave(&mut self, name: &str, room: &str) {
        let reply = self.request(name, "leave", json!({"room": room})).await;
        assert_eq!(reply["ok"], true, "leave {room} by {name}: {reply}");
    }

    pub async fn close(&mut self, name: &str) {
        self.send(json!({"cmd": "close", "client": name})).await;
        self.wait_for(&format!("{name} to close"), |v| {
            v["type"] == "closed" && v["client"] == name
        })
        .await;
    }

    /// Waits until client `name` received `event`, and returns its data.
    pub async fn event(&mut self, name: &str, event: &str) -> Value {
        let received = self
            .wait_for(&format!("{name} to receive {event}"), |v| {
                v["type"] == "event" && v["client"] == name && v["event"] == event
            })
            .await;
        received["data"].clone()
    }

    /// Reads output for `period` and returns how many times each client received `event`.
    pub async fn count_events(&mut self, event: &str, period: Duration) -> HashMap<String, usize> {
        let deadline = tokio::time::Instant::now() + period;
        while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, self.lines.next_line()).await {
            self.seen
                .push(serde_json::from_str(&line).expect("driver output is JSON"));
        }
        let mut counts = HashMap::new();
        self.seen.retain(|v| {
            if v["type"] == "event" && v["event"] == event {
                *counts.entry(v["client"].as_str().unwrap().to_owned()).or_default() += 1;
                false
            } else {
                true
            }
        });
        counts
    }
}

impl Clients {
    /// Reads output for `period` and returns the `n` field of every `event` received, in order.
    pub async fn count_numbered(&mut self, event: &str, period: Duration) -> Vec<u64> {
        let deadline = tokio::time::Instant::now() + period;
        while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, self.lines.next_line()).await {
            self.seen
                .push(serde_json::from_str(&line).expect("driver output is JSON"));
        }
        let mut numbers = Vec::new();
        self.seen.retain(|v| {
            if v["type"] == "event" && v["event"] == event {
                numbers.push(v["data"]["n"].as_u64().unwrap());
                false
            } else {
                true
            }
        });
        numbers
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Polls `condition` every 50 ms until it holds, or panics after [`WAIT`] saying what it waited for.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
