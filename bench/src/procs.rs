//! Processes the harness starts: the servers under test, the load generator processes and the Redis
//! Cluster. Every process is stopped when its handle drops, so a failed scenario leaves nothing behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Server implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Gateway,
    /// socket.io with the sharded Redis adapter in `dynamic` mode (a channel per public room).
    Node,
    /// socket.io with the sharded Redis adapter in `static` mode (one channel per namespace).
    NodeStatic,
}

impl ServerKind {
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::Gateway => "socketfleet",
            ServerKind::Node => "node socket.io",
            ServerKind::NodeStatic => "node socket.io (per-namespace channel)",
        }
    }
}

/// Paths of the programs the harness runs.
#[derive(Clone, Debug)]
pub struct Programs {
    pub gateway: PathBuf,
    pub node_server: PathBuf,
    pub bench: PathBuf,
    pub redis_cluster_script: PathBuf,
}

// ---------------------------------------------------------------------------------------------------
// Server

/// One server under test, stopped with SIGTERM (then SIGKILL) on drop.
pub struct Server {
    pub kind: ServerKind,
    pub port: u16,
    pub stats_port: u16,
    child: Child,
}

impl Server {
    /// Starts a server on `port`; `stats_port` is the gateway's admin port or the Node stats port.
    pub fn start(
        programs: &Programs,
        kind: ServerKind,
        port: u16,
        stats_port: u16,
        max_connections: u32,
        redis_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let log = log_file(&format!("server-{port}"))?;
        let mut command = match kind {
            ServerKind::Gateway => {
                let mut command = Command::new(&programs.gateway);
                command
                    .arg("--port")
                    .arg(port.to_string())
                    .arg("--admin-port")
                    .arg(stats_port.to_string())
                    .arg("--bind-address")
                    .arg("127.0.0.1")
                    .arg("--max-connections")
                    .arg(max_connections.to_string());
                if let Some(url) = redis_url {
                    command.arg("--redis-url").arg(url).arg("--redis-mode").arg("cluster");
                }
                command.env("RUST_LOG", "warn");
                command
            }
            ServerKind::Node | ServerKind::NodeStatic => {
                let mut command = Command::new("node");
                command
                    .arg(&programs.node_server)
                    .env("PORT", port.to_string())
                    .env("STATS_PORT", stats_port.to_string())
                    .env(
                        "SUBSCRIPTION_MODE",
                        if kind == ServerKind::NodeStatic {
                            "static"
                        } else {
                            "dynamic"
                        },
                    );
                if let Some(url) = redis_url {
                    command.env("REDIS_URL", url);
                }
                command
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} on port {port}", kind.label()))?;
        let mut server = Server {
            kind,
            port,
            stats_port,
            child,
        };
        server.wait_listening(Duration::from_secs(30))?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_listening(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let addresses = [self.port, self.stats_port].map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} on port {} exited at start with {status}; log in {}",
                    self.kind.label(),
                    self.port,
                    log_dir().display()
                );
            }
            let all_listening = addresses
                .iter()
                .all(|address| TcpStream::connect_timeout(address, Duration::from_millis(200)).is_ok());
            if all_listening {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {} to listen on {}",
                    self.kind.label(),
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resident set size from /proc/PID/status (VmRSS).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .context("VmRSS missing from /proc status")?;
        let kib: u64 = line.split_whitespace().nth(1).context("VmRSS has no value")?.parse()?;
        Ok(kib * 1024)
    }

    /// User plus system CPU time of the process so far, in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        process_cpu_seconds(self.pid())
    }

    /// Messages this server's adapter read from Redis pub/sub.
    pub fn adapter_messages_received(&self) -> anyhow::Result<u64> {
        match self.kind {
            ServerKind::Gateway => {
                let metrics = http_get(self.stats_port, "/metrics")?;
                sum_metric(&metrics, crate::ADAPTER_RECEIVED_METRIC).with_context(|| {
                    format!(
                        "metric {} missing from the gateway's /metrics",
                        crate::ADAPTER_RECEIVED_METRIC
                    )
                })
            }
            ServerKind::Node | ServerKind::NodeStatic => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct NodeStats {
                    adapter_messages_received: u64,
                }
                let body = http_get(self.stats_port, "/stats")?;
                Ok(serde_json::from_str::<NodeStats>(&body)?.adapter_messages_received)
            }
        }
    }

    /// Returns an error if the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} on port {} exited with {status}", self.kind.label(), self.port);
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// Sends SIGTERM, waits up to five seconds, then kills.
fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces, so fields are counted after its closing parenthesis.
    let after_name = &stat[stat.rfind(')').context("malformed /proc stat")? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user: u64 = fields[11].parse()?;
    let system: u64 = fields[12].parse()?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    Ok((user + system) as f64 / ticks)
}

fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("HTTP response without a header end")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "GET {path} on port {port} returned {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

/// Sums every sample of a Prometheus counter or gauge, whatever its labels.
fn sum_metric(text: &str, name: &str) -> Option<u64> {
    let mut found = false;
    let mut total = 0.0;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|value| value.parse::<f64>().ok()) {
            total += value;
            found = true;
        }
    }
    found.then_some(total as u64)
}

// ---------------------------------------------------------------------------------------------------
// Load generator processes

/// Counters a `hold` process reports; see load::HoldReport.
#[derive(Debug, Deserialize)]
pub struct HoldReport {
    pub connected: u64,
    pub failed: u64,
    pub closed: u64,
    pub events: u64,
    pub pings: u64,
    pub first_error: Option<String>,
    #[serde(default)]
    pub latency_micros: Option<Vec<(u64, u64)>>,
}

/// One `hold` load generator process.
pub struct HoldProcess {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl HoldProcess {
    /// Starts the process and waits until every socket connected or failed.
    pub fn start(programs: &Programs, args: &[String], timeout: Duration) -> anyhow::Result<(Self, HoldReport)> {
        let mut child = Command::new(&programs.bench)
            .arg("hold")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a hold load generator")?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = HoldProcess { child, stdin, lines };
        let ready = process
            .next_report(timeout)
            .context("waiting for the hold process to connect its sockets")?;
        Ok((process, ready))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `stats`, `latency` or `reset` and returns the report the process prints.
    pub fn command(&mut self, command: &str) -> anyhow::Result<HoldReport> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.next_report(Duration::from_secs(30))
    }

    fn next_report(&mut self, timeout: Duration) -> anyhow::Result<HoldReport> {
        let line = self
            .lines
            .recv_timeout(timeout)
            .map_err(|_| anyhow::anyhow!("no report from the hold process within {timeout:?}"))?;
        serde_json::from_str(&line).with_context(|| format!("parsing hold report {line:?}"))
    }
}

impl Drop for HoldProcess {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "stop");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts a `publish` process prints; see load::PublishReport.
#[derive(Debug, Deserialize)]
pub struct PublishReport {
    pub published: u64,
    pub acked: u64,
    pub rejected: u64,
    pub failed_sockets: u64,
    pub elapsed_secs: f64,
    pub first_error: Option<String>,
}

/// Runs one `publish` process to the end, with a deadline of its duration plus a minute. Publishes
/// acked with an error fail the run unless `allow_rejected` is set.
pub fn run_publisher(
    programs: &Programs,
    args: &[String],
    duration: Duration,
    allow_rejected: bool,
) -> anyhow::Result<PublishReport> {
    let mut child = Command::new(&programs.bench)
        .arg("publish")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a publish load generator")?;
    let deadline = Instant::now() + duration + Duration::from_secs(60);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "publish process did not finish within {:?}",
                duration + Duration::from_secs(60)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut output = String::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_string(&mut output)?;
    let line = output.lines().last().context("publish process printed nothing")?;
    let report: PublishReport =
        serde_json::from_str(line).with_context(|| format!("parsing publish report {line:?}"))?;
    if report.failed_sockets > 0 {
        bail!("publisher sockets failed: {}", report.first_error.unwrap_or_default());
    }
    if report.rejected > 0 && !allow_rejected {
        bail!(
            "{} of {} publishes were acked with an error",
            report.rejected,
            report.published
        );
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------------------
// Redis Cluster

/// A Redis Cluster started by the e2e script, stopped on drop.
pub struct RedisCluster {
    script: PathBuf,
    port: u16,
    dir: PathBuf,
}

impl RedisCluster {
    pub fn start(programs: &Programs, port: u16) -> anyhow::Result<Self> {
        let dir = log_dir().join(format!("redis-cluster-{port}"));
        let status = Command::new("bash")
            .arg(&programs.redis_cluster_script)
            .arg("start")
            .args(["--port", &port.to_string(), "--dir"])
            .arg(&dir)
            .args(["--owner-pid", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .context("running the Redis Cluster script")?;
        if !status.success() {
            bail!("Redis Cluster script failed with {status}");
        }
        Ok(RedisCluster {
            script: programs.redis_cluster_script.clone(),
            port,
            dir,
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .args(["--port", &self.port.to_string(), "--dir"])
            .arg(&self.dir)
            .status();
    }
}

// ---------------------------------------------------------------------------------------------------
// Files

pub fn log_dir() -> PathBuf {
    std::env::var_os("BENCH_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("socketfleet-bench"))
}

fn log_file(name: &str) -> anyhow::Result<std::fs::File> {
    let dir = log_dir();
    std::fs::create_dir_all(&dir)?;
    let path: &Path = &dir.join(format!("{name}.log"));
    Ok(std::fs::File::create(path)?)
}
