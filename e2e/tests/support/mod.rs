//! Shared pieces of the end-to-end tests: the running local cluster (`kubectl`, `helm`), a labelled
//! namespace per test that is dumped on failure and deleted afterwards, waits with timeouts, plain
//! HTTP to pod addresses, and the socket.io client driver in `e2e/js`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

/// Label every test namespace carries, so leftovers of any run can be found and deleted.
pub const TEST_LABEL: &str = "socketfleet.io/e2e";

/// The local cluster that `e2e/scripts/cluster.sh up` started.
pub struct Cluster {
    pub repo: PathBuf,
    pub state_dir: PathBuf,
    pub kubeconfig: PathBuf,
    kubectl: PathBuf,
    helm: PathBuf,
}

impl Cluster {
    /// Finds the running cluster's kubeconfig and tools; fails with the command to start it.
    pub fn running() -> Result<Self> {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?;
        let state_dir = std::env::var_os("SOCKETFLEET_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("e2e/.local"));
        let kubeconfig = state_dir.join("kubeconfig");
        let kubectl = state_dir.join("kube-bin/kubectl");
        if !kubeconfig.exists() || !kubectl.exists() {
            bail!(
                "no local cluster at {}: start one with `bash e2e/scripts/cluster.sh up` (or run `make test-e2e`)",
                state_dir.display()
            );
        }
        let helm_path = run(Command::new("bash")
            .arg(repo.join("scripts/helm.sh"))
            .arg("--print-path"))?;
        let cluster = Self {
            repo,
            state_dir,
            kubeconfig,
            kubectl,
            helm: PathBuf::from(helm_path.trim()),
        };
        cluster
            .kubectl(&["get", "--raw", "/readyz"])
            .context("the local cluster's API server is not ready")?;
        Ok(cluster)
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        run(Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args))
    }

    /// Runs kubectl with `input` on stdin (for `apply -f -`).
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Result<String> {
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn kubectl_json(&self, args: &[&str]) -> Result<Value> {
        let mut with_output = args.to_vec();
        with_output.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl(&with_output)?)?)
    }

    pub fn helm(&self, args: &[&str]) -> Result<String> {
        run(Command::new(&self.helm)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args))
    }
}

/// Runs a command and returns its stdout; a non-zero exit is an error carrying stderr.
fn run(command: &mut Command) -> Result<String> {
    let description = format!("{command:?}");
    let output = command.output().with_context(|| format!("running {description}"))?;
    if !output.status.success() {
        bail!(
            "{description} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Calls `check` every half second until it returns `Some`, or fails after `timeout` naming `what`
/// and the last error `check` returned.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() > deadline {
            let detail = last_error
                .map(|error| format!(" (last error: {error:#})"))
                .unwrap_or_default();
            bail!("timed out after {timeout:?} waiting for {what}{detail}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Prints one progress line of a test.
pub fn step(text: &str) {
    eprintln!("e2e: {text}");
}

// -------------------------------------------------------------------------------------------------
// Test namespace

/// A namespace for one test, labelled with [`TEST_LABEL`]. When the test panics, dropping it prints
/// the pods, events, RealtimeNamespaces and container logs. Dropping it always uninstalls the test's
/// Helm release and deletes every namespace with the test's label.
pub struct TestNamespace<'a> {
    pub cluster: &'a Cluster,
    pub name: String,
    test: String,
    pub release: Option<String>,
}

impl<'a> TestNamespace<'a> {
    pub fn create(cluster: &'a Cluster, test: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let suffix = format!("{:06x}", (std::process::id() ^ nanos) & 0xff_ffff);
        let name = format!("e2e-{test}-{suffix}");
        // Namespaces a crashed earlier run of this test left behind go first.
        cluster.kubectl(&[
            "delete",
            "namespace",
            "-l",
            &format!("{TEST_LABEL}={test}"),
            "--wait=true",
            "--timeout=120s",
        ])?;
        let manifest = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    {TEST_LABEL}: {test}\n"
        );
        cluster.kubectl_with_input(&["apply", "-f", "-"], &manifest)?;
        Ok(Self {
            cluster,
            name,
            test: test.to_owned(),
            release: None,
        })
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut with_namespace = vec!["-n", self.name.as_str()];
        with_namespace.extend_from_slice(args);
        self.cluster.kubectl(&with_namespace)
    }

    pub fn kubectl_json(&self, args: &[&str]) -> Result<Value> {
        let mut with_namespace = vec!["-n", self.name.as_str()];
        with_namespace.extend_from_slice(args);
        self.cluster.kubectl_json(&with_namespace)
    }

    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Result<String> {
        let mut with_namespace = vec!["-n", self.name.as_str()];
        with_namespace.extend_from_slice(args);
        self.cluster.kubectl_with_input(&with_namespace, input)
    }

    /// Prints what a person needs to see why a test failed.
    pub fn dump(&self) {
        eprintln!("\n===== e2e failure dump for namespace {} =====", self.name);
        for args in [
            vec!["get", "pods", "-o", "wide"],
            vec![
                "get",
                "realtimenamespaces,deployments,replicasets,services,endpointslices,pdb,hpa",
                "-o",
                "wide",
            ],
            vec!["get", "events", "--sort-by=.lastTimestamp"],
            vec!["get", "realtimenamespaces", "-o", "yaml"],
            vec!["describe", "pods"],
        ] {
            eprintln!("--- kubectl {}", args.join(" "));
            match self.kubectl(&args) {
                Ok(output) => eprintln!("{output}"),
                Err(error) => eprintln!("(failed: {error:#})"),
            }
        }
        let pods_folder = self.cluster.state_dir.join("node/pods");
        let prefix = format!("{}_", self.name);
        if let Ok(entries) = std::fs::read_dir(&pods_folder) {
            for entry in entries.flatten() {
                if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                    continue;
                }
                for log in std::fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                    if log.path().extension().is_some_and(|extension| extension == "log") {
                        eprintln!("--- log {} (last 80 lines)", log.path().display());
                        eprintln!("{}", tail(&log.path(), 80));
                    }
                }
            }
        }
        let agent_log = self.cluster.state_dir.join("logs/node-agent.log");
        eprintln!("--- node agent log {} (last 40 lines)", agent_log.display());
        eprintln!("{}", tail(&agent_log, 40));
        eprintln!("===== end of dump =====\n");
    }
}

impl Drop for TestNamespace<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        if let Some(release) = &self.release
            && let Err(error) =
                self.cluster
                    .helm(&["uninstall", release, "-n", &self.name, "--wait", "--timeout", "120s"])
        {
            eprintln!("cleanup: helm uninstall {release} failed: {error:#}");
        }
        let selector = format!("{TEST_LABEL}={}", self.test);
        if let Err(error) =
            self.cluster
                .kubectl(&["delete", "namespace", "-l", &selector, "--wait=true", "--timeout=120s"])
        {
            eprintln!("cleanup: deleting namespaces labelled {selector} failed: {error:#}");
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| format!("(unreadable: {error})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// -------------------------------------------------------------------------------------------------
// Operator and pods

/// Installs the operator chart into the test namespace, watching only that namespace, and waits for
/// its pod to be Ready. The chart's CRD is installed only when no earlier release installed it.
pub fn install_operator(cluster: &Cluster, namespace: &mut TestNamespace<'_>) -> Result<()> {
    let release = format!("sf-{}", &namespace.name[namespace.name.len() - 6..]);
    let chart = cluster.repo.join("charts/socketfleet-operator");
    // The CRD is cluster-wide: a second release (or `make up`'s) may already have installed it.
    let crd_exists = cluster
        .kubectl(&["get", "crd", "realtimenamespaces.socketfleet.io"])
        .is_ok();
    step(&format!("helm install {release} (CRD from the chart: {})", !crd_exists));
    cluster.helm(&[
        "install",
        &release,
        chart.to_str().context("chart path is UTF-8")?,
        "-n",
        &namespace.name,
        "--set",
        &format!("watchNamespace={}", namespace.name),
        "--set",
        "resyncSeconds=5",
        "--set",
        &format!("crds.install={}", !crd_exists),
    ])?;
    namespace.release = Some(release.clone());

    let selector = format!("app.kubernetes.io/instance={release}");
    wait_until("the operator pod to be Ready", Duration::from_secs(120), || {
        let pods = namespace.kubectl_json(&["get", "pods", "-l", &selector])?;
        Ok(pods["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(pod_ready))
            .then_some(()))
    })?;
    step("operator pod is Ready");
    Ok(())
}

pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|conditions| {
        conditions
            .iter()
            .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
    })
}

// -------------------------------------------------------------------------------------------------
// Plain HTTP to pod and load balancer addresses

/// Sends one HTTP/1.1 request and returns the status code and body.
pub fn http(method: &str, address: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address.parse()?, Duration::from_secs(5))
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;

    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response from {address}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("no status code in the response from {address}"))?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(body: &str) -> String {
    let mut output = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        output.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    output
}

/// Returns the sum of a metric's samples in a Prometheus text page.
pub fn metric_sum(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// -------------------------------------------------------------------------------------------------
// socket.io clients

/// The socket.io client driver (`e2e/js/driver.js`), one JSON command and reply per line.
pub struct Clients {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Clients {
    pub fn start(repo: &Path) -> Result<Self> {
        let folder = repo.join("e2e/js");
        if !folder.join("node_modules/socket.io-client").exists() {
            bail!(
                "{} has no node_modules: run `make deps` (it runs npm ci there)",
                folder.display()
            );
        }
        let mut child = Command::new("node")
            .arg("driver.js")
            .current_dir(&folder)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node e2e/js/driver.js")?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(Self {
            child,
            stdin,
            stdout,
            next_id: 0,
        })
    }

    /// Sends one command and returns its reply; an `ok: false` reply is an error.
    pub fn call(&mut self, mut command: Value) -> Result<Value> {
        self.next_id += 1;
        command["id"] = self.next_id.into();
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the client driver exited while running {command}");
        }
        let reply: Value = serde_json::from_str(&line)?;
        if reply["ok"] != Value::Bool(true) {
            bail!("client driver: {} failed: {}", command["op"], reply["error"]);
        }
        Ok(reply)
    }

    pub fn connect(&mut self, client: &str, url: &str) -> Result<()> {
        self.call(serde_json::json!({"op": "connect", "client": client, "url": url}))
            .map(drop)
    }

    /// Connects with a socket.io `auth` payload, such as `{"token": "<jwt>"}`.
    pub fn connect_with_auth(&mut self, client: &str, url: &str, auth: Value) -> Result<()> {
        self.call(serde_json::json!({"op": "connect", "client": client, "url": url, "auth": auth}))
            .map(drop)
    }

    /// Emits `event` with an ack and returns the ack.
    pub fn request(&mut self, client: &str, event: &str, payload: Value) -> Result<Value> {
        Ok(self.call(serde_json::json!({"op": "request", "client": client, "event": event, "payload": payload}))?["ack"].clone())
    }

    pub fn listen(&mut self, client: &str, event: &str) -> Result<()> {
        self.call(serde_json::json!({"op": "listen", "client": client, "event": event}))
            .map(drop)
    }

    pub fn received(&mut self, client: &str, event: &str) -> Result<Vec<Value>> {
        let reply = self.call(serde_json::json!({"op": "received", "client": client, "event": event}))?;
        Ok(reply["messages"].as_array().cloned().unwrap_or_default())
    }

    pub fn state(&mut self, client: &str) -> Result<Value> {
        self.call(serde_json::json!({"op": "state", "client": client}))
    }

    pub fn close(&mut self, client: &str) -> Result<()> {
        self.call(serde_json::json!({"op": "close", "client": client}))
            .map(drop)
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
