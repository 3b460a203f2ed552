//! The reconcile loop: applies the desired objects of each RealtimeNamespace with server-side
//! apply, observes the result and writes the status when it changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::FIELD_MANAGER;
use crate::builders::{self, BuildError, BuildSettings, DisruptionBudget};
use crate::conditions::{self, Observation, RedisCheck, RolloutObservation};
use crate::crd::{RealtimeNamespace, RealtimeNamespaceStatus, ServiceType};
use crate::metrics::Metrics;
use crate::probes::{self, RedisTarget};

/// Field manager that owns `spec.replicas` of a Deployment while it passes to the HPA. Without
/// it, the first apply that omits `spec.replicas` would remove the field (the operator was its
/// only owner) and the Deployment would fall back to one pod before the HPA acts.
pub const HANDOVER_MANAGER: &str = "socketfleet-operator-handover";

/// Maximum wait between two attempts at a failing RealtimeNamespace.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// First wait after a failed reconcile; it doubles with each further failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);

/// Reasons a reconcile failed.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot render objects: {0}")]
    Build(#[from] BuildError),
    #[error("failed to read {kind} {name}: {source}")]
    Read {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("failed to apply {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("failed to delete {kind} {name}: {source}")]
    Delete {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("failed to write the status of RealtimeNamespace {name}: {source}")]
    StatusPatch { name: String, source: kube::Error },
}

impl Error {
    /// Variant name, the label of the failure counter.
    pub fn variant(&self) -> &'static str {
        match self {
            Error::Build(_) => "Build",
            Error::Read { .. } => "Read",
            Error::Apply { .. } => "Apply",
            Error::Delete { .. } => "Delete",
            Error::StatusPatch { .. } => "StatusPatch",
        }
    }
}

/// Checks a Redis binding; a function so that tests run without a Redis server.
pub type RedisChecker = Arc<dyn Fn(RedisTarget) -> BoxFuture<'static, RedisCheck> + Send + Sync>;

/// Returns the checker that talks to the real Redis servers.
pub fn network_redis_checker() -> RedisChecker {
    Arc::new(|target: RedisTarget| Box::pin(async move { probes::check_redis(&target).await }))
}

/// State shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub settings: BuildSettings,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Time between reconciles of an unchanged RealtimeNamespace.
    pub resync: Duration,
    pub redis_checker: RedisChecker,
    /// Consecutive failures per `namespace/name`, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: BuildSettings,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        resync: Duration,
        redis_checker: RedisChecker,
    ) -> Self {
        Self {
            client,
            settings,
            recorder,
            metrics,
            resync,
            redis_checker,
            failures: Mutex::default(),
        }
    }

    fn record_failure(&self, key: String) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key).or_insert(0);
        *count += 1;
        *count
    }

    fn clear_failures(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
    }
}

/// Returns the wait after `failures` consecutive failed reconciles: 5 s, doubling up to 5 min.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF)
}

fn object_key(rtns: &RealtimeNamespace) -> String {
    format!("{}/{}", rtns.namespace().unwrap_or_default(), rtns.name_any())
}

// ---------------------------------------------------------------------------------------------
// Reconcile
// ---------------------------------------------------------------------------------------------

/// Brings the objects of one RealtimeNamespace to their desired state and updates its status.
pub async fn reconcile(rtns: Arc<RealtimeNamespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!("reconcile", namespace = %rtns.namespace().unwrap_or_default(), name = %rtns.name_any());
    async move {
        ctx.metrics.reconciles.inc();
        let started = Instant::now();
        let result = reconcile_inner(&rtns, &ctx).await;
        ctx.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            ctx.clear_failures(&object_key(&rtns));
        }
        result
    }
    .instrument(span)
    .await
}

async fn reconcile_inner(rtns: &RealtimeNamespace, ctx: &Context) -> Result<Action, Error> {
    if rtns.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector delete the fleet.
        return Ok(Action::await_change());
    }
    let namespace = rtns.namespace().ok_or(BuildError::MissingNamespace)?;
    let name = rtns.name_any();
    let client = &ctx.client;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let current = deployments.get_opt(&name).await.map_err(|source| Error::Read {
        kind: "Deployment",
        name: name.clone(),
        source,
    })?;
    let current_replicas = current.as_ref().and_then(|deployment| deployment.spec.replicas);
    let replicas = builders::desired_replicas(rtns, current_replicas);

    if replicas.is_none()
        && let Some(deployment) = &current
        && manager_owns_replicas(deployment, FIELD_MANAGER)
    {
        hand_replicas_to_autoscaler(&deployments, &name, current_replicas.unwrap_or(1)).await?;
        publish(
            ctx,
            rtns,
            EventType::Normal,
            "ReplicasHandedToAutoscaler",
            format!(
                "the HorizontalPodAutoscaler now owns the replica count, starting from {}",
                current_replicas.unwrap_or(1)
            ),
        )
        .await;
    }

    let deployment = apply(&deployments, &builders::deployment(rtns, &ctx.settings, replicas)?).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let service = apply(&services, &builders::service(rtns)?).await?;
    apply(&services, &builders::admin_service(rtns)?).await?;

    let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &namespace);
    match builders::horizontal_pod_autoscaler(rtns)? {
        Some(autoscaler) => {
            apply(&autoscalers, &autoscaler).await?;
        }
        None => delete_owned(&autoscalers, rtns).await?,
    }

    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
    let mut disruption_warning = None;
    match builders::pod_disruption_budget(rtns, replicas)? {
        DisruptionBudget::Apply(budget) => {
            apply(&budgets, budget.as_ref()).await?;
        }
        DisruptionBudget::NotNeeded => delete_owned(&budgets, rtns).await?,
        DisruptionBudget::Skipped { message } => {
            delete_owned(&budgets, rtns).await?;
            disruption_warning = Some(message);
        }
    }

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let redis = match probes::redis_target(&secrets, rtns).await {
        Ok(target) => (ctx.redis_checker)(target).await,
        Err(check) => check,
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let selector = builders::selector_string(rtns);
    let connections = match probes::live_connections(&pods, &selector).await {
        Ok(total) => total,
        Err(err) => {
            warn!(error = %err, "failed to list gateway pods for the connection count");
            None
        }
    };

    let observation = Observation {
        generation: rtns.metadata.generation,
        rollout: Some(observe_rollout(&deployment)),
        redis,
        disruption_warning,
    };
    let previous = rtns.status.clone().unwrap_or_default();
    let status = next_status(rtns, &previous, &observation, connections, &service, now_seconds());
    if status != previous {
        write_status(rtns, ctx, &status).await?;
        for transition in conditions::transitions(&previous.conditions, &status.conditions) {
            let type_ = if transition.is_warning() {
                EventType::Warning
            } else {
                EventType::Normal
            };
            let reason = format!("{}{}", transition.type_, transition.to);
            publish(ctx, rtns, type_, &reason, transition.message.clone()).await;
        }
    } else {
        debug!("status unchanged");
    }
    Ok(Action::requeue(ctx.resync))
}

/// Decides what to do after a failed reconcile: count it by variant and retry with backoff.
pub fn error_policy(rtns: Arc<RealtimeNamespace>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.count_failure(error.variant());
    let failures = ctx.record_failure(object_key(&rtns));
    let wait = backoff(failures);
    warn!(
        namespace = %rtns.namespace().unwrap_or_default(),
        name = %rtns.name_any(),
        error = %error,
        failures,
        retry_in_seconds = wait.as_secs(),
        "reconcile failed"
    );
    Action::requeue(wait)
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

fn now_seconds() -> Timestamp {
    // metav1.Time has whole seconds on the wire, so a finer time would differ after a read.
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}

/// Reads the rollout state the conditions need from a Deployment.
pub fn observe_rollout(deployment: &Deployment) -> RolloutObservation {
    let status = deployment.status.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or(0);
    RolloutObservation {
        desired: deployment.spec.replicas.unwrap_or(1),
        replicas: status.replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        generation_observed: status.observed_generation.unwrap_or(0) >= generation,
        deadline_exceeded: status.conditions.unwrap_or_default().iter().any(|condition| {
            condition.type_.as_deref() == Some("Progressing")
                && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
        }),
    }
}

/// Computes the next status. Equal inputs give an equal status, so a steady fleet is not
/// written again.
pub fn next_status(
    rtns: &RealtimeNamespace,
    previous: &RealtimeNamespaceStatus,
    observation: &Observation,
    connections: Option<i64>,
    service: &Service,
    now: Timestamp,
) -> RealtimeNamespaceStatus {
    let desired = conditions::desired_conditions(observation);
    let rollout = observation.rollout.clone().unwrap_or_default();
    RealtimeNamespaceStatus {
        conditions: conditions::merge_conditions(&previous.conditions, &desired, observation.generation, now),
        observed_generation: observation.generation,
        replicas: rollout.replicas,
        ready_replicas: rollout.ready,
        // When no pod responded, the last known count is kept rather than a false zero.
        connections: connections.unwrap_or(previous.connections),
        endpoint: Some(endpoint(rtns, service)),
        selector: Some(builders::selector_string(rtns)),
    }
}

/// Returns the URL clients connect to: the load balancer's address once it has one, else the
/// Service's cluster DNS name.
pub fn endpoint(rtns: &RealtimeNamespace, service: &Service) -> String {
    let path = &rtns.spec.path;
    let port = builders::SOCKET_PORT;
    if rtns.spec.service.type_ == ServiceType::LoadBalancer {
        let ingress = service
            .status
            .as_ref()
            .and_then(|status| status.load_balancer.as_ref())
            .and_then(|balancer| balancer.ingress.as_ref())
            .and_then(|ingress| ingress.first());
        if let Some(address) = ingress.and_then(|entry| entry.hostname.clone().or_else(|| entry.ip.clone())) {
            let host = if address.contains(':') {
                format!("[{address}]")
            } else {
                address
            };
            return format!("http://{host}:{port}{path}");
        }
    }
    format!(
        "http://{}.{}.svc:{port}{path}",
        rtns.name_any(),
        rtns.namespace().unwrap_or_default()
    )
}

async fn write_status(rtns: &RealtimeNamespace, ctx: &Context, status: &RealtimeNamespaceStatus) -> Result<(), Error> {
    let name = rtns.name_any();
    let api: Api<RealtimeNamespace> = Api::namespaced(ctx.client.clone(), &rtns.namespace().unwrap_or_default());

    // Conditions are a list-map keyed by type, so applying only the operator's own types leaves
    // other writers' conditions in place and never takes ownership of them.
    let mut owned = status.clone();
    owned
        .conditions
        .retain(|condition| conditions::TYPES.contains(&condition.type_.as_str()));
    let patch = serde_json::json!({
        "apiVersion": RealtimeNamespace::api_version(&()),
        "kind": RealtimeNamespace::kind(&()),
        "status": owned,
    });
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::StatusPatch {
            name: name.clone(),
            source,
        })?;
    ctx.metrics.status_writes.inc();
    info!(
        ready_replicas = status.ready_replicas,
        connections = status.connections,
        "updated status"
    );
    Ok(())
}

async fn publish(ctx: &Context, rtns: &RealtimeNamespace, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &rtns.object_ref(&())).await {
        warn!(error = %err, reason, "failed to publish event");
    }
}

// ---------------------------------------------------------------------------------------------
// Server-side apply helpers
// ---------------------------------------------------------------------------------------------

async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let kind = K::kind(&()).into_owned();
    let kind: &'static str = match kind.as_str() {
        "Deployment" => "Deployment",
        "Service" => "Service",
        "HorizontalPodAutoscaler" => "HorizontalPodAutoscaler",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        _ => "object",
    };
    let applied = api
        .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map_err(|source| Error::Apply {
            kind,
            name: name.clone(),
            source,
        })?;
    debug!(kind, object = %name, "applied");
    Ok(applied)
}

/// Deletes the object named like the RealtimeNamespace if the RealtimeNamespace controls it,
/// as when autoscaling is turned off. Objects someone else created are left alone.
async fn delete_owned<K>(api: &Api<K>, rtns: &RealtimeNamespace) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = rtns.name_any();
    let kind: &'static str = if K::kind(&()) == "HorizontalPodAutoscaler" {
        "HorizontalPodAutoscaler"
    } else {
        "PodDisruptionBudget"
    };
    let existing = api.get_opt(&name).await.map_err(|source| Error::Read {
        kind,
        name: name.clone(),
        source,
    })?;
    let Some(existing) = existing else {
        return Ok(());
    };
    let uid = rtns.metadata.uid.as_deref();
    let controlled = existing
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && Some(owner.uid.as_str()) == uid);
    if !controlled {
        return Ok(());
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            info!(kind, object = %name, "deleted object that is no longer desired");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Delete { kind, name, source }),
    }
}

/// Returns whether `manager` owns `spec.replicas` of the Deployment through an apply.
pub fn manager_owns_replicas(deployment: &Deployment, manager: &str) -> bool {
    deployment.metadata.managed_fields.iter().flatten().any(|entry| {
        entry.manager.as_deref() == Some(manager)
            && entry.operation.as_deref() == Some("Apply")
            && entry
                .fields_v1
                .as_ref()
                .and_then(|fields| fields.0.get("f:spec"))
                .and_then(|spec| spec.get("f:replicas"))
                .is_some()
    })
}

/// Applies only `spec.replicas` under [`HANDOVER_MANAGER`], so the field outlives the
/// operator's next apply without it and the HPA takes over from the current count.
async fn hand_replicas_to_autoscaler(api: &Api<Deployment>, name: &str, replicas: i32) -> Result<(), Error> {
    let patch = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": { "replicas": replicas },
    });
    api.patch(
        name,
        &PatchParams::apply(HANDOVER_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: "Deployment",
        name: name.to_owned(),
        source,
    })?;
    info!(deployment = %name, replicas, "handed spec.replicas over to the HorizontalPodAutoscaler");
    Ok(())
}
