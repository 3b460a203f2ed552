//! `crds/examples/full.yaml`, applied unchanged once the Secrets it names exist and Redis has its
//! ACL user: an autoscaled /calls fleet (the HPA's minimum of 2 pods) behind a LoadBalancer address,
//! with RS256 JWT auth, a per-user limit, the publish API and a password-protected Redis Cluster.
//! - both pods come up Ready and the RealtimeNamespace reports Ready with RedisReachable True;
//! - a client without a token is rejected, and clients with a signed token join a room through the
//!   load balancer address;
//! - a publish through the publish API reaches each member exactly once;
//! - deleting the RealtimeNamespace removes what it owned, the HPA included.
//!
//! Needs the local cluster (`bash e2e/scripts/cluster.sh up`); `make test-e2e` starts and stops it.

mod support;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};
use support::{Clients, Cluster, TestNamespace, http, install_operator, pod_ready, step, wait_until};

const RTNS: &str = "calls";
const SELECTOR: &str = "app.kubernetes.io/instance=calls,app.kubernetes.io/name=socketfleet-gateway";
const REDIS_USER: &str = "socketfleet";
const ROOM: &str = "standup";

#[test]
fn full_example_runs_with_its_secrets() -> Result<()> {
    let cluster = Cluster::running()?;
    let mut namespace = TestNamespace::create(&cluster, "full-example")?;
    let redis = RedisUser::create(&cluster)?;
    let result = scenario(&cluster, &mut namespace, &redis);
    if let Err(error) = &result {
        eprintln!("e2e: failed: {error:#}");
        namespace.dump();
    }
    result
}

fn scenario(cluster: &Cluster, namespace: &mut TestNamespace<'_>, redis: &RedisUser) -> Result<()> {
    install_operator(cluster, namespace)?;
    let secrets = Secrets::generate()?;
    secrets.create(namespace, &redis.password)?;

    step("kubectl apply -f crds/examples/full.yaml");
    let example = cluster.repo.join("crds/examples/full.yaml");
    namespace.kubectl(&["apply", "-f", example.to_str().context("example path is UTF-8")?])?;

    let pods = wait_until("2 gateway pods Running and Ready", Duration::from_secs(240), || {
        let list = namespace.kubectl_json(&["get", "pods", "-l", SELECTOR])?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let ready: Vec<String> = items
            .iter()
            .filter(|pod| pod_ready(pod) && pod["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|pod| pod["status"]["podIP"].as_str().map(str::to_owned))
            .collect();
        Ok((items.len() == 2 && ready.len() == 2).then_some(ready))
    })?;
    step(&format!("gateway pods Ready at {pods:?}"));

    wait_until(
        "conditions Ready and RedisReachable True",
        Duration::from_secs(120),
        || {
            let rtns = namespace.kubectl_json(&["get", "realtimenamespace", RTNS])?;
            let conditions = rtns["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let is_true = |type_: &str| {
                conditions
                    .iter()
                    .any(|condition| condition["type"] == type_ && condition["status"] == "True")
            };
            Ok((is_true("Ready") && is_true("RedisReachable")).then_some(()))
        },
    )?;

    let balancer = wait_until("the Service's load balancer address", Duration::from_secs(60), || {
        let service = namespace.kubectl_json(&["get", "service", RTNS])?;
        Ok(service["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_owned))
    })?;
    let url = format!("http://{balancer}:3000/calls");

    let mut clients = Clients::start(&cluster.repo)?;
    let rejected = clients.connect("anonymous", &url);
    ensure!(rejected.is_err(), "a client without a token was accepted");
    step(&format!(
        "a client without a token was rejected: {:#}",
        rejected.unwrap_err()
    ));

    let members = ["ana", "ben"];
    for member in members {
        let token = secrets.client_token(member)?;
        clients.connect_with_auth(member, &url, json!({"token": token}))?;
        clients.listen(member, "news")?;
        ensure!(
            clients.request(member, "join", json!({"room": ROOM}))? == json!({"ok": true}),
            "{member} could not join"
        );
    }
    step("two clients with signed tokens joined one room through the load balancer");

    let message = json!({"text": "standup in 5"});
    let body = json!({"namespace": "/calls", "room": ROOM, "event": "news", "data": message});
    let (status, answer) = http(
        "POST",
        &format!("{}:9090", pods[0]),
        "/api/v1/publish",
        &[
            ("Authorization", &format!("Bearer {}", secrets.publish_token)),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    )?;
    ensure!((200..300).contains(&status), "publish API answered {status}: {answer}");
    for member in members {
        let received = wait_until(
            &format!("{member} to receive the publish"),
            Duration::from_secs(20),
            || {
                let received = clients.received(member, "news")?;
                Ok((!received.is_empty()).then_some(received))
            },
        )?;
        ensure!(received == vec![message.clone()], "{member} received {received:?}");
    }
    step("the publish API reached both members once");

    step("deleting the RealtimeNamespace");
    namespace.kubectl(&["delete", "realtimenamespace", RTNS, "--wait=true", "--timeout=120s"])?;
    wait_until(
        "every object the RealtimeNamespace owned to be gone",
        Duration::from_secs(180),
        || {
            let left = namespace.kubectl(&[
                "get",
                "deployments,replicasets,pods,services,pdb,hpa",
                "-l",
                "app.kubernetes.io/instance=calls",
                "-o",
                "name",
            ])?;
            Ok(left.trim().is_empty().then_some(()))
        },
    )?;
    step("Deployment, pods, Services, PDB and HPA are gone");
    Ok(())
}

// -------------------------------------------------------------------------------------------------
// Secrets the example names

/// The publish token, the JWT key pair and the Redis password behind the example's Secrets.
struct Secrets {
    folder: std::path::PathBuf,
    publish_token: String,
}

impl Secrets {
    fn generate() -> Result<Self> {
        let folder = std::env::temp_dir().join(format!("socketfleet-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&folder)?;
        let key = folder.join("private.pem");
        run(Command::new("openssl").args(["genrsa", "-out"]).arg(&key).arg("2048"))?;
        run(Command::new("openssl")
            .arg("rsa")
            .arg("-in")
            .arg(&key)
            .arg("-pubout")
            .arg("-out")
            .arg(folder.join("public.pem")))?;
        Ok(Self {
            folder,
            publish_token: random_hex()?,
        })
    }

    fn create(&self, namespace: &TestNamespace<'_>, redis_password: &str) -> Result<()> {
        let public = self.folder.join("public.pem");
        namespace.kubectl(&[
            "create",
            "secret",
            "generic",
            "calls-redis",
            &format!("--from-literal=password={redis_password}"),
        ])?;
        namespace.kubectl(&[
            "create",
            "secret",
            "generic",
            "calls-jwt",
            &format!("--from-file=public.pem={}", public.display()),
        ])?;
        namespace.kubectl(&[
            "create",
            "secret",
            "generic",
            "calls-publish",
            &format!("--from-literal=token={}", self.publish_token),
        ])?;
        Ok(())
    }

    /// Signs a token with the claims the example's `auth` section checks.
    fn client_token(&self, subject: &str) -> Result<String> {
        let key = std::fs::read(self.folder.join("private.pem"))?;
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            + 3600;
        let claims = json!({
            "sub": subject,
            "exp": expires,
            "iss": "https://auth.example.com",
            "aud": "calls",
            "rooms": [ROOM],
            "publish": [ROOM],
        });
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(&key)?,
        )?)
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

// -------------------------------------------------------------------------------------------------
// Redis ACL user

/// The ACL user the example names, created on every node of the local Redis Cluster (ACL users are
/// per node) and deleted again when dropped.
struct RedisUser {
    nodes: Vec<(String, String)>,
    password: String,
}

impl RedisUser {
    fn create(cluster: &Cluster) -> Result<Self> {
        let slices = cluster.kubectl_json(&[
            "get",
            "endpointslices",
            "-n",
            "redis",
            "-l",
            "kubernetes.io/service-name=redis-cluster",
        ])?;
        let (host, port) = first_endpoint(&slices).context("the redis-cluster Service has no endpoint")?;
        let topology = run(Command::new("redis-cli").args(["-h", &host, "-p", &port, "cluster", "nodes"]))?;
        let nodes: Vec<(String, String)> = topology
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter_map(|address| address.split('@').next())
            .filter_map(|address| address.rsplit_once(':'))
            .map(|(host, port)| (host.to_owned(), port.to_owned()))
            .collect();
        ensure!(nodes.len() == 6, "expected 6 Redis Cluster nodes, found {nodes:?}");

        let user = Self {
            nodes,
            password: random_hex()?,
        };
        for (host, port) in &user.nodes {
            let rule = format!(">{}", user.password);
            let reply = run(Command::new("redis-cli").args([
                "-h", host, "-p", port, "acl", "setuser", REDIS_USER, "reset", "on", &rule, "~*", "&*", "+@all",
            ]))?;
            ensure!(reply.trim() == "OK", "ACL SETUSER on {host}:{port} answered {reply}");
        }
        Ok(user)
    }
}

impl Drop for RedisUser {
    fn drop(&mut self) {
        for (host, port) in &self.nodes {
            let _ = run(Command::new("redis-cli").args(["-h", host, "-p", port, "acl", "deluser", REDIS_USER]));
        }
    }
}

fn first_endpoint(slices: &Value) -> Option<(String, String)> {
    let slice = slices["items"].as_array()?.first()?;
    let host = slice["endpoints"][0]["addresses"][0].as_str()?.to_owned();
    let port = slice["ports"][0]["port"].as_i64()?.to_string();
    Some((host, port))
}

fn random_hex() -> Result<String> {
    Ok(run(Command::new("openssl").args(["rand", "-hex", "16"]))?
        .trim()
        .to_owned())
}

fn run(command: &mut Command) -> Result<String> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
