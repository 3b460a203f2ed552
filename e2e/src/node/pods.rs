//! The pod runner: watches the pods bound to this node and gives each one a worker that sets up its
//! network namespace, starts its containers, runs probes, reports status and stops it on deletion.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event as WatchEvent};
use rustix::process::Signal;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use super::network::PodNetwork;
use super::probe::ProbeSpec;
use super::process::{self, Launch};
use super::status::{self, ConditionClock, ContainerView, PodView, State};
use super::volumes::PodVolumes;
use super::{Context, Error, Result, env};

/// How often a worker checks its processes, probes and timers.
const TICK: Duration = Duration::from_millis(250);
/// Maximum wait between restarts of a crashing container. A kubelet waits up to 5 minutes, but a short
/// cap keeps a local cluster responsive after a fix.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);
/// Upper bound on how long the agent waits for a pod's processes when the agent itself stops.
const SHUTDOWN_GRACE_CAP: Duration = Duration::from_secs(30);

struct Worker {
    pod: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

/// Runs workers for this node's pods until `shutdown` turns true, then waits for every worker to stop
/// its processes.
pub async fn run(context: Arc<Context>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::all(context.client.clone());
    let selector = format!("spec.nodeName={}", context.config.node_name);
    let mut events = watcher::watcher(pods, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut workers: BTreeMap<String, Worker> = BTreeMap::new();
    let mut listed: BTreeSet<String> = BTreeSet::new();

    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => break,
            event = events.try_next() => event,
        };
        let event = match event {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(error) => {
                warn!(%error, "pod watch failed; the watcher retries with backoff");
                continue;
            }
        };
        workers.retain(|_, worker| !worker.task.is_finished());

        match event {
            WatchEvent::Init => listed.clear(),
            WatchEvent::InitApply(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    listed.insert(uid);
                }
                deliver(&context, &shutdown, &mut workers, pod);
            }
            WatchEvent::InitDone => {
                // Pods that vanished while the watch was down get stopped as deleted.
                for (uid, worker) in &workers {
                    if !listed.contains(uid) {
                        let _ = worker.pod.send(None);
                    }
                }
            }
            WatchEvent::Apply(pod) => deliver(&context, &shutdown, &mut workers, pod),
            WatchEvent::Delete(pod) => {
                if let Some(worker) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                    let _ = worker.pod.send(None);
                }
            }
        }
    }

    info!(pods = workers.len(), "stopping the pods this agent runs");
    for (_, worker) in workers {
        let _ = worker.task.await;
    }
    Ok(())
}

/// Hands the latest pod object to its worker, starting one for a pod seen the first time.
fn deliver(context: &Arc<Context>, shutdown: &watch::Receiver<bool>, workers: &mut BTreeMap<String, Worker>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else { return };
    if let Some(worker) = workers.get(&uid) {
        let _ = worker.pod.send(Some(pod));
        return;
    }
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let span = tracing::info_span!("pod", namespace = %namespace, name = %name);
    let (sender, receiver) = watch::channel(Some(pod.clone()));
    let runtime = PodRuntime::new(context.clone(), pod);
    let task = tokio::spawn(runtime.run(receiver, shutdown.clone()).instrument(span));
    workers.insert(uid, Worker { pod: sender, task });
}

// -------------------------------------------------------------------------------------------------
// One pod

/// Probe bookkeeping for one probe of one container.
struct ProbeState {
    spec: ProbeSpec,
    next_at: Instant,
    successes: u32,
    failures: u32,
    passing: bool,
}

impl ProbeState {
    fn new(spec: ProbeSpec, started: Instant) -> Self {
        Self {
            next_at: started + spec.initial_delay,
            spec,
            successes: 0,
            failures: 0,
            passing: false,
        }
    }

    /// Records one result; returns true when the probe's verdict flipped.
    fn record(&mut self, result: &std::result::Result<(), String>, now: Instant) -> bool {
        self.next_at = now + self.spec.period;
        let before = self.passing;
        match result {
            Ok(()) => {
                self.failures = 0;
                self.successes += 1;
                if self.successes >= self.spec.success_threshold {
                    self.passing = true;
                }
            }
            Err(_) => {
                self.successes = 0;
                self.failures += 1;
                if self.failures >= self.spec.failure_threshold {
                    self.passing = false;
                }
            }
        }
        before != self.passing
    }
}

struct ContainerRuntime {
    spec: Container,
    binary: Option<PathBuf>,
    child: Option<Child>,
    state: State,
    last_state: Option<State>,
    restart_count: i32,
    restart_at: Option<Instant>,
    started_instant: Instant,
    readiness: Option<ProbeState>,
    liveness: Option<ProbeState>,
    startup: Option<ProbeState>,
    container_id: String,
}

impl ContainerRuntime {
    fn new(spec: Container) -> Self {
        Self {
            spec,
            binary: None,
            child: None,
            state: State::Waiting {
                reason: "ContainerCreating".to_owned(),
                message: String::new(),
            },
            last_state: None,
            restart_count: 0,
            restart_at: None,
            started_instant: Instant::now(),
            readiness: None,
            liveness: None,
            startup: None,
            container_id: String::new(),
        }
    }

    fn started(&self) -> bool {
        matches!(self.state, State::Running { .. }) && self.startup.as_ref().is_none_or(|probe| probe.passing)
    }

    fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(|probe| probe.passing)
    }
}

struct PodRuntime {
    context: Arc<Context>,
    pod: Pod,
    recorder: Recorder,
    network: Option<PodNetwork>,
    volumes: Option<PodVolumes>,
    log_folder: PathBuf,
    token_refresh_at: Option<Instant>,
    containers: Vec<ContainerRuntime>,
    clock: ConditionClock,
    start_time: Timestamp,
    last_status: Option<serde_json::Value>,
    setup_retry_at: Instant,
}

impl PodRuntime {
    fn new(context: Arc<Context>, pod: Pod) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let folder = format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("pod"),
            uid.chars().take(8).collect::<String>()
        );
        let pod_folder = context.config.state_dir.join("pods").join(folder);
        let containers = pod
            .spec
            .as_ref()
            .map(|spec| spec.containers.iter().cloned().map(ContainerRuntime::new).collect())
            .unwrap_or_default();
        let recorder = Recorder::new(
            context.client.clone(),
            Reporter {
                controller: "socketfleet-node".to_owned(),
                instance: Some(context.config.node_name.clone()),
            },
        );
        Self {
            recorder,
            volumes: None,
            log_folder: pod_folder,
            context,
            pod,
            network: None,
            token_refresh_at: None,
            containers,
            clock: ConditionClock::default(),
            start_time: Timestamp::now(),
            last_status: None,
            setup_retry_at: Instant::now(),
        }
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(
            self.context.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    /// Drives the pod from start to removal.
    async fn run(mut self, mut updates: watch::Receiver<Option<Pod>>, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(TICK);
        let mut gone = false;
        loop {
            if *shutdown.borrow() {
                self.stop(SHUTDOWN_GRACE_CAP).await;
                self.teardown().await;
                return;
            }
            match updates.borrow_and_update().clone() {
                Some(pod) => self.pod = pod,
                None => gone = true,
            }
            if gone || self.pod.metadata.deletion_timestamp.is_some() {
                self.terminate(gone).await;
                return;
            }

            if self.network.is_none() {
                self.try_setup().await;
            } else {
                self.supervise().await;
            }
            self.report().await;

            tokio::select! {
                _ = ticker.tick() => {}
                _ = updates.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Sets up the network, token and processes; on failure reports why and retries later, as a kubelet
    /// does for a missing Secret or ConfigMap.
    async fn try_setup(&mut self) {
        if Instant::now() < self.setup_retry_at {
            return;
        }
        if let Err(error) = self.setup().await {
            warn!(%error, "pod setup failed; retrying in 5 s");
            let reason = match error {
                Error::ImageNotMapped { .. } => "ErrImageNeverPull",
                _ => "CreateContainerConfigError",
            };
            for container in &mut self.containers {
                container.state = State::Waiting {
                    reason: reason.to_owned(),
                    message: error.to_string(),
                };
            }
            self.event(EventType::Warning, "Failed", &error.to_string()).await;
            self.setup_retry_at = Instant::now() + Duration::from_secs(5);
            self.teardown().await;
        }
    }

    async fn setup(&mut self) -> Result<()> {
        for container in &mut self.containers {
            container.binary = Some(
                self.context
                    .images
                    .binary_for(container.spec.image.as_deref().unwrap_or(""))?
                    .clone(),
            );
        }
        tokio::fs::create_dir_all(&self.log_folder)
            .await
            .map_err(|source| Error::Io {
                path: self.log_folder.display().to_string(),
                source,
            })?;

        let address = self.context.pod_ips.allocate()?;
        let network = PodNetwork::for_pod(self.pod.metadata.uid.as_deref().unwrap_or_default(), address);
        let config = &self.context.config;
        self.network = Some(network.clone());
        network
            .create(&config.bridge, config.node_ip, config.prefix_len)
            .await?;
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
        self.context
            .hosts
            .add_pod(&network.netns, &namespace, &self.name(), address);
        info!(address = %address, netns = %network.netns, "pod network ready");

        let volumes = PodVolumes::prepare(
            &self.context.client,
            &self.pod,
            &self.log_folder.join("volumes"),
            &address.to_string(),
            &config.node_ip.to_string(),
        )
        .await?;
        self.token_refresh_at = volumes
            .tokens
            .iter()
            .map(|token| Instant::now() + token.refresh_after())
            .min();
        self.volumes = Some(volumes);

        for index in 0..self.containers.len() {
            self.start_container(index).await?;
        }
        Ok(())
    }

    fn pod_ip(&self) -> String {
        self.network
            .as_ref()
            .map(|network| network.address.to_string())
            .unwrap_or_default()
    }

    /// Starts (or restarts) one container's process.
    async fn start_container(&mut self, index: usize) -> Result<()> {
        let config = &self.context.config;
        let pod_ip = self.pod_ip();
        let host_ip = config.node_ip.to_string();
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
        let sources = env::Sources::new(&self.context.client, &namespace);
        let spec = self.containers[index].spec.clone();

        let mut variables = vec![
            ("HOSTNAME".to_owned(), self.name()),
            ("KUBERNETES_SERVICE_HOST".to_owned(), host_ip.clone()),
            ("KUBERNETES_SERVICE_PORT".to_owned(), config.apiserver_port.to_string()),
            (
                "KUBERNETES_SERVICE_PORT_HTTPS".to_owned(),
                config.apiserver_port.to_string(),
            ),
            (
                "KUBERNETES_PORT".to_owned(),
                format!("tcp://{host_ip}:{}", config.apiserver_port),
            ),
        ];
        variables.extend(env::container_env(&sources, &self.pod, &spec, &pod_ip, &host_ip).await?);
        let args = container_args(&spec, &variables)?;
        let mounts = self
            .volumes
            .as_ref()
            .expect("volumes exist before containers start")
            .mounts(&spec)?;

        let container = &mut self.containers[index];
        let binary = container
            .binary
            .clone()
            .expect("binary is resolved before containers start");
        let log_file = self.log_folder.join(format!("{}.log", spec.name));
        let network = self.network.as_ref().expect("network exists before containers start");
        let child = process::spawn(&Launch {
            netns: &network.netns,
            binary: &binary,
            args: &args,
            env: &variables,
            mounts: &mounts,
            working_dir: &self.log_folder,
            log_file: &log_file,
        })?;

        let now = Instant::now();
        container.container_id = format!("socketfleet://{}", child.id().unwrap_or_default());
        container.child = Some(child);
        container.state = State::Running {
            started_at: Timestamp::now(),
        };
        container.started_instant = now;
        container.restart_at = None;
        container.readiness = spec
            .readiness_probe
            .as_ref()
            .map(|probe| ProbeState::new(ProbeSpec::from_probe(probe, &spec), now));
        container.liveness = spec
            .liveness_probe
            .as_ref()
            .map(|probe| ProbeState::new(ProbeSpec::from_probe(probe, &spec), now));
        container.startup = spec
            .startup_probe
            .as_ref()
            .map(|probe| ProbeState::new(ProbeSpec::from_probe(probe, &spec), now));
        info!(container = %spec.name, binary = %binary.display(), log = %log_file.display(), "container started");
        self.event(
            EventType::Normal,
            "Started",
            &format!("Started container {}", spec.name),
        )
        .await;
        Ok(())
    }

    /// Checks exits, restarts, probes and the token refresh once.
    async fn supervise(&mut self) {
        let now = Instant::now();
        let restart_policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|spec| spec.restart_policy.clone())
            .unwrap_or_else(|| "Always".to_owned());

        for index in 0..self.containers.len() {
            self.check_exit(index, &restart_policy);
            let due = self.containers[index].restart_at.is_some_and(|at| at <= now);
            if due && let Err(error) = self.start_container(index).await {
                warn!(container = %self.containers[index].spec.name, %error, "container restart failed");
                self.containers[index].restart_at = Some(now + MAX_RESTART_BACKOFF);
            }
        }

        self.run_probes().await;

        if self.token_refresh_at.is_some_and(|at| at <= now) {
            self.refresh_tokens(now).await;
        }
    }

    /// Requests fresh service-account tokens for the pod's projected volumes.
    async fn refresh_tokens(&mut self, now: Instant) {
        let Some(volumes) = self.volumes.as_ref() else { return };
        let mut next = None;
        for token in &volumes.tokens {
            let at = match token.write(&self.context.client, &self.pod).await {
                Ok(()) => now + token.refresh_after(),
                Err(error) => {
                    warn!(path = %token.path.display(), %error, "service-account token refresh failed; retrying in 10 s");
                    now + Duration::from_secs(10)
                }
            };
            next = Some(next.map_or(at, |next: Instant| next.min(at)));
        }
        self.token_refresh_at = next;
    }

    /// Notices a container process that exited and schedules its restart per the restart policy.
    fn check_exit(&mut self, index: usize, restart_policy: &str) {
        let container = &mut self.containers[index];
        let Some(child) = container.child.as_mut() else { return };
        let Ok(Some(exit)) = child.try_wait() else { return };
        container.child = None;

        let started_at = match container.state {
            State::Running { started_at } => started_at,
            _ => Timestamp::now(),
        };
        let exit_code = exit
            .code()
            .unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&exit).unwrap_or(0));
        let terminated = State::Terminated {
            exit_code,
            signal: std::os::unix::process::ExitStatusExt::signal(&exit),
            reason: if exit_code == 0 {
                "Completed".to_owned()
            } else {
                "Error".to_owned()
            },
            started_at,
            finished_at: Timestamp::now(),
        };
        warn!(container = %container.spec.name, exit_code, "container exited");

        let restart = match restart_policy {
            "Never" => false,
            "OnFailure" => exit_code != 0,
            _ => true,
        };
        if restart {
            let backoff = Duration::from_secs(1u64 << container.restart_count.clamp(0, 5)).min(MAX_RESTART_BACKOFF);
            container.last_state = Some(terminated);
            container.restart_count += 1;
            container.restart_at = Some(Instant::now() + backoff);
            container.state = State::Waiting {
                reason: "CrashLoopBackOff".to_owned(),
                message: format!(
                    "back-off {}s restarting failed container {}",
                    backoff.as_secs(),
                    container.spec.name
                ),
            };
        } else {
            container.state = terminated;
        }
    }

    /// Runs the probes that are due. A failing startup or liveness probe kills the container, which
    /// the restart policy then restarts.
    async fn run_probes(&mut self) {
        let address = match &self.network {
            Some(network) => network.address,
            None => return,
        };
        let now = Instant::now();
        let mut unhealthy: Vec<(usize, String)> = Vec::new();

        for (index, container) in self.containers.iter_mut().enumerate() {
            if container.child.is_none() {
                continue;
            }
            if let Some(probe) = container
                .startup
                .as_mut()
                .filter(|probe| !probe.passing && probe.next_at <= now)
            {
                let result = probe.spec.check(address).await;
                probe.record(&result, now);
                if let Err(reason) = result
                    && probe.failures >= probe.spec.failure_threshold
                {
                    unhealthy.push((index, format!("Startup probe failed: {reason}")));
                }
                continue;
            }
            if container.startup.as_ref().is_some_and(|probe| !probe.passing) {
                continue;
            }
            if let Some(probe) = container.readiness.as_mut().filter(|probe| probe.next_at <= now) {
                let result = probe.spec.check(address).await;
                if probe.record(&result, now) {
                    info!(container = %container.spec.name, ready = probe.passing, result = ?result, "readiness changed");
                }
            }
            if let Some(probe) = container.liveness.as_mut().filter(|probe| probe.next_at <= now) {
                let result = probe.spec.check(address).await;
                probe.record(&result, now);
                if let Err(reason) = result
                    && probe.failures >= probe.spec.failure_threshold
                {
                    probe.failures = 0;
                    unhealthy.push((index, format!("Liveness probe failed: {reason}")));
                }
            }
        }

        for (index, message) in unhealthy {
            warn!(container = %self.containers[index].spec.name, %message, "killing unhealthy container");
            self.event(EventType::Warning, "Unhealthy", &message).await;
            if let Some(child) = self.containers[index].child.as_ref() {
                process::signal(child, Signal::KILL);
            }
        }
    }

    /// Patches the pod status when it differs from the last report.
    async fn report(&mut self) {
        let views: Vec<ContainerView> = self
            .containers
            .iter()
            .map(|container| ContainerView {
                name: container.spec.name.clone(),
                image: container.spec.image.clone().unwrap_or_default(),
                image_id: container
                    .binary
                    .as_ref()
                    .map(|binary| format!("file://{}", binary.display()))
                    .unwrap_or_default(),
                container_id: container.container_id.clone(),
                state: container.state.clone(),
                last_state: container.last_state.clone(),
                ready: container.ready(),
                started: container.started(),
                restart_count: container.restart_count,
            })
            .collect();
        let phase = self.phase();
        let view = PodView {
            phase: &phase,
            pod_ip: self.network.as_ref().map(|network| network.address.to_string()),
            host_ip: self.context.config.node_ip.to_string(),
            start_time: self.start_time,
            network_ready: self.network.is_some(),
            containers: &views,
        };
        let status = status::pod_status(&view, &mut self.clock, Timestamp::now());
        let body = serde_json::json!({ "status": status });
        if self.last_status.as_ref() == Some(&body) {
            return;
        }
        match self
            .api()
            .patch_status(&self.name(), &PatchParams::default(), &Patch::Strategic(&body))
            .await
        {
            Ok(_) => {
                debug!(phase = %phase, "pod status reported");
                self.last_status = Some(body);
            }
            Err(error) => warn!(%error, "pod status patch failed; retrying next tick"),
        }
    }

    fn phase(&self) -> String {
        let terminated: Vec<i32> = self
            .containers
            .iter()
            .filter_map(|container| match container.state {
                State::Terminated { exit_code, .. } if container.child.is_none() && container.restart_at.is_none() => {
                    Some(exit_code)
                }
                _ => None,
            })
            .collect();
        let running = self
            .containers
            .iter()
            .any(|container| container.child.is_some() || container.restart_at.is_some());
        if running {
            "Running".to_owned()
        } else if !self.containers.is_empty() && terminated.len() == self.containers.len() {
            if terminated.iter().all(|code| *code == 0) {
                "Succeeded".to_owned()
            } else {
                "Failed".to_owned()
            }
        } else {
            "Pending".to_owned()
        }
    }

    /// Stops a pod that is being deleted: SIGTERM, the grace period, SIGKILL, a final status, then the
    /// deletion of the pod object (unless it is already gone) and of its network.
    async fn terminate(&mut self, gone: bool) {
        let grace_seconds = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0) as u64;
        info!(grace_seconds, "stopping pod");
        if self.containers.iter().any(|container| container.child.is_some()) {
            self.event(
                EventType::Normal,
                "Killing",
                &format!("Stopping containers with a grace period of {grace_seconds}s"),
            )
            .await;
        }
        self.stop(Duration::from_secs(grace_seconds)).await;

        if !gone {
            self.report().await;
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: self.pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.api().delete(&self.name(), &params).await {
                Ok(_) => info!("pod removed"),
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(error) => warn!(%error, "pod removal failed; the pod object stays until deleted again"),
            }
        }
        self.teardown().await;
    }

    /// Sends SIGTERM to every process, waits up to `grace`, then sends SIGKILL to what is left.
    async fn stop(&mut self, grace: Duration) {
        for container in &mut self.containers {
            container.restart_at = None;
            if let Some(child) = container.child.as_ref() {
                process::signal(child, Signal::TERM);
            }
        }
        let deadline = Instant::now() + grace;
        for container in &mut self.containers {
            let Some(mut child) = container.child.take() else {
                continue;
            };
            let started_at = match container.state {
                State::Running { started_at } => started_at,
                _ => Timestamp::now(),
            };
            let exit = match tokio::time::timeout_at(deadline, child.wait()).await {
                Ok(exit) => exit.ok(),
                Err(_) => {
                    warn!(container = %container.spec.name, "container outlived its grace period; sending SIGKILL");
                    process::signal(&child, Signal::KILL);
                    child.wait().await.ok()
                }
            };
            let signal = exit.and_then(|exit| std::os::unix::process::ExitStatusExt::signal(&exit));
            let exit_code = exit.and_then(|exit| exit.code()).unwrap_or(128 + signal.unwrap_or(9));
            container.state = State::Terminated {
                exit_code,
                signal,
                reason: if exit_code == 0 {
                    "Completed".to_owned()
                } else {
                    "Error".to_owned()
                },
                started_at,
                finished_at: Timestamp::now(),
            };
        }
    }

    /// Removes the pod's network, hosts file and volumes; container logs stay for inspection.
    async fn teardown(&mut self) {
        if let Some(network) = self.network.take() {
            self.context.hosts.remove_pod(&network.netns);
            network.delete().await;
            self.context.pod_ips.release(network.address);
        }
        self.volumes = None;
        let _ = tokio::fs::remove_dir_all(self.log_folder.join("volumes")).await;
    }

    /// Publishes an event on the pod; failures only get logged, since events are best effort.
    async fn event(&self, type_: EventType, reason: &str, note: &str) {
        let reference = self.pod.object_ref(&());
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.to_owned()),
            action: reason.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            debug!(%error, reason, "event publish failed");
        }
    }
}

/// Returns the arguments for the mapped binary with `$(VAR)` references expanded. A `command` replaces
/// the image's entrypoint in Kubernetes; here the entrypoint is the mapped binary, so a command is
/// accepted only when it names that binary (by file name) and its remaining words are used as leading
/// arguments.
fn container_args(spec: &Container, env: &[(String, String)]) -> Result<Vec<String>> {
    let mut words = Vec::new();
    if let Some(command) = spec.command.as_ref().filter(|command| !command.is_empty()) {
        let image = super::images::image_name(spec.image.as_deref().unwrap_or(""));
        let program = command[0].rsplit('/').next().unwrap_or(&command[0]);
        if !program.ends_with(image) {
            return Err(Error::InvalidSpec(format!(
                "container {} overrides the entrypoint with {:?}; this node runs only the image's own binary",
                spec.name, command[0]
            )));
        }
        words.extend(command[1..].iter().cloned());
    }
    words.extend(spec.args.iter().flatten().cloned());
    Ok(words.iter().map(|word| env::expand(word, env)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn args_expand_env_references() {
        let spec = container(serde_json::json!({
            "name": "gateway", "image": "ghcr.io/socketfleet/gateway:1", "args": ["--advertise=$(POD_IP):3000"]
        }));
        let env = vec![("POD_IP".to_owned(), "10.0.0.7".to_owned())];
        assert_eq!(container_args(&spec, &env).unwrap(), vec!["--advertise=10.0.0.7:3000"]);
    }

    #[test]
    fn command_naming_the_image_binary_is_accepted() {
        let spec = container(serde_json::json!({
            "name": "operator", "image": "ghcr.io/socketfleet/operator:1",
            "command": ["/usr/local/bin/socketfleet-operator", "run"], "args": ["--log=debug"]
        }));
        assert_eq!(container_args(&spec, &[]).unwrap(), vec!["run", "--log=debug"]);
    }

    #[test]
    fn command_naming_another_program_is_rejected() {
        let spec = container(serde_json::json!({
            "name": "shell", "image": "ghcr.io/socketfleet/gateway:1", "command": ["/bin/sh", "-c", "sleep 1"]
        }));
        assert!(matches!(container_args(&spec, &[]), Err(Error::InvalidSpec(_))));
    }

    #[test]
    fn probe_verdict_needs_thresholds() {
        let probe: k8s_openapi::api::core::v1::Probe = serde_json::from_value(serde_json::json!({
            "tcpSocket": {"port": 3000}, "successThreshold": 1, "failureThreshold": 2
        }))
        .unwrap();
        let spec = ProbeSpec::from_probe(&probe, &container(serde_json::json!({"name": "c"})));
        let now = Instant::now();
        let mut state = ProbeState::new(spec, now);

        assert!(state.record(&Ok(()), now));
        assert!(state.passing);
        assert!(!state.record(&Err("refused".to_owned()), now));
        assert!(state.passing, "one failure is below the threshold of 2");
        assert!(state.record(&Err("refused".to_owned()), now));
        assert!(!state.passing);
    }
}
