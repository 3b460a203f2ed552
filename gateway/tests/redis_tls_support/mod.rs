//! Shared parts of the Redis TLS tests: certificates made with openssl at runtime, TLS-only
//! redis-server processes (standalone and a 3-master cluster) on 127.0.0.1 that are killed on
//! drop, and `socketfleet-gateway` processes.
#![allow(dead_code)]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// Upper bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// A folder under the system temp folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("socketfleet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test's temp folder");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(command: &mut Command, description: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("failed to run {description}: {err}"));
    assert!(
        output.status.success(),
        "{description} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

// ==== Certificates ====

/// Test PKI in a temp folder: a CA, a server certificate it signs for IP 127.0.0.1, and a second
/// CA that signs nothing the servers use.
pub struct Certificates {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub other_ca: PathBuf,
}

impl Certificates {
    /// Creates the certificates with openssl (installed by scripts/deps.sh) in `dir`.
    pub fn create(dir: &Path) -> Self {
        let file = |name: &str| dir.join(name);
        let make_ca = |name: &str| {
            run(
                Command::new("openssl")
                    .args([
                        "req",
                        "-x509",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:prime256v1",
                    ])
                    .args(["-nodes", "-days", "2", "-subj"])
                    .arg(format!("/CN=socketfleet test {name}"))
                    .arg("-keyout")
                    .arg(file(&format!("{name}.key")))
                    .arg("-out")
                    .arg(file(&format!("{name}.pem"))),
                "openssl req (CA)",
            );
        };
        make_ca("ca");
        make_ca("other-ca");

        run(
            Command::new("openssl")
                .args(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
                .args(["-nodes", "-subj", "/CN=127.0.0.1", "-keyout"])
                .arg(file("server.key"))
                .arg("-out")
                .arg(file("server.csr")),
            "openssl req (server)",
        );
        // clientAuth too: cluster nodes present this certificate on the cluster bus and to
        // replicas, where they are the client.
        std::fs::write(
            file("server.ext"),
            "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n\
             keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth, clientAuth\n",
        )
        .unwrap();
        run(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(file("server.csr"))
                .arg("-CA")
                .arg(file("ca.pem"))
                .arg("-CAkey")
                .arg(file("ca.key"))
                .arg("-CAcreateserial")
                .arg("-extfile")
                .arg(file("server.ext"))
                .arg("-out")
                .arg(file("server.pem")),
            "openssl x509 (sign the server certificate)",
        );

        Self {
            ca: file("ca.pem"),
            server_cert: file("server.pem"),
            server_key: file("server.key"),
            other_ca: file("other-ca.pem"),
        }
    }

    /// redis-server arguments that serve TLS with the server certificate, and accept clients
    /// without a client certificate.
    fn redis_args(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        vec![
            "--tls-cert-file".into(),
            path(&self.server_cert),
            "--tls-key-file".into(),
            path(&self.server_key),
            "--tls-ca-cert-file".into(),
            path(&self.ca),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }

    /// Runs redis-cli over TLS against `port` and returns its output. It presents the server
    /// certificate as its client certificate, for servers that require one.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.server_cert)
            .arg("--key")
            .arg(&self.server_key)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

// ==== Redis ====

/// Returns a loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// redis-server processes, killed and reaped on drop.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_redis(args: &[String], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("create the redis log");
    Command::new("redis-server")
        .args(args)
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server (installed by scripts/deps.sh)")
}

/// Arguments every test server gets: loopback only, no plain TCP port, no persistence.
fn common_args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn wait_until(description: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {description}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One TLS-only redis-server on 127.0.0.1.
pub struct TlsStandalone {
    pub port: u16,
    _processes: Processes,
}

impl TlsStandalone {
    pub fn start(certificates: &Certificates, dir: &Path) -> Self {
        Self::start_with(certificates, dir, &[])
    }

    /// Starts the server with `extra_args` after the others, so they override them.
    pub fn start_with(certificates: &Certificates, dir: &Path, extra_args: &[&str]) -> Self {
        let port = free_port();
        let mut args = common_args(port, dir);
        args.extend(certificates.redis_args());
        args.extend(extra_args.iter().map(|arg| arg.to_string()));
        let processes = Processes(vec![start_redis(&args, &dir.join("redis.log"))]);
        wait_until(&format!("redis-server to answer PING over TLS on port {port}"), || {
            certificates.cli(port, &["ping"]).starts_with("PONG")
        });
        Self {
            port,
            _processes: processes,
        }
    }

    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

/// A plain (non-TLS) redis-server on 127.0.0.1, for a rediss:// URL pointed at the wrong server.
pub struct PlainStandalone {
    pub port: u16,
    _processes: Processes,
}

impl PlainStandalone {
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.display().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(str::to_owned)
        .to_vec();
        let processes = Processes(vec![start_redis(&args, &dir.join("plain-redis.log"))]);
        wait_until(&format!("plain redis-server to answer PING on port {port}"), || {
            Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
                .output()
                .is_ok_and(|output| output.stdout.starts_with(b"PONG"))
        });
        Self {
            port,
            _processes: processes,
        }
    }
}

/// A Redis Cluster of 3 masters (no replicas) that speaks only TLS: clients, the cluster bus
/// (`tls-cluster yes`) and replication (`tls-replication yes`).
pub struct TlsCluster {
    pub port: u16,
    _processes: Processes,
}

/// Masters in the test cluster.
const MASTERS: u16 = 3;

impl TlsCluster {
    /// Starts the cluster on `first_port..first_port+2` (cluster bus 10000 above), or on a later
    /// block of 10 ports if one of these is taken.
    pub fn start(first_port: u16, certificates: &Certificates, dir: &Path) -> Self {
        let base = (0..5u16)
            .map(|attempt| first_port + attempt * 10)
            .find(|base| {
                (0..MASTERS)
                    .flat_map(|i| [base + i, base + i + 10_000])
                    .all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
            })
            .unwrap_or_else(|| panic!("no free block of ports from {first_port} for the TLS cluster"));

        let mut children = Vec::new();
        for port in base..base + MASTERS {
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let mut args = common_args(port, &node_dir);
            args.extend(certificates.redis_args());
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-announce-ip",
                    "127.0.0.1",
                    "--tls-cluster",
                    "yes",
                    "--tls-replication",
                    "yes",
                ]
                .map(str::to_owned),
            );
            children.push(start_redis(&args, &node_dir.join("redis.log")));
        }
        let cluster = Self {
            port: base,
            _processes: Processes(children),
        };
        for port in base..base + MASTERS {
            wait_until(&format!("node {port} to answer PING over TLS"), || {
                certificates.cli(port, &["ping"]).starts_with("PONG")
            });
        }

        let addresses: Vec<String> = (base..base + MASTERS).map(|port| format!("127.0.0.1:{port}")).collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.push("--cluster-yes");
        let output = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&certificates.ca)
            .args(["-h", "127.0.0.1", "-p", &base.to_string()])
            .args(&create)
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for port in base..base + MASTERS {
            wait_until(&format!("node {port} to report cluster_state:ok"), || {
                certificates
                    .cli(port, &["cluster", "info"])
                    .contains("cluster_state:ok")
            });
        }
        cluster
    }

    pub fn seed_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    pub fn ports(&self) -> std::ops::Range<u16> {
        self.port..self.port + MASTERS
    }
}

// ==== Gateway ====

/// A `socketfleet-gateway` process on loopback, killed on drop.
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
}

impl Gateway {
    /// Starts the gateway with `args` after the port flags; stderr is kept for [`Gateway::exit`].
    pub fn start(args: &[&str]) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_socketfleet-gateway"))
            .args(["--bind-address", "127.0.0.1", "--port", &port.to_string()])
            .args(["--admin-port", &admin_port.to_string()])
            .args(args)
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start socketfleet-gateway");
        Self {
            child,
            port,
            admin_port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Waits until /readyz returns 200, or panics if the gateway exits or [`WAIT`] passes.
    pub async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                panic!(
                    "gateway on port {} exited with {status} before it was ready: {stderr}",
                    self.port
                );
            }
            if get(self.admin_port, "/readyz").await.starts_with("HTTP/1.1 200") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for the gateway on port {} to be ready",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the process to exit and returns whether it succeeded and its stderr.
    pub fn exit(mut self) -> (bool, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the gateway process") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for the gateway to exit at startup"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read the gateway's stderr");
        }
        (status.success(), stderr)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `GET path` to the admin port and returns the whole response, or "" if nothing listens.
pub async fn get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}
