//! Desired objects of a RealtimeNamespace: pure functions from the custom resource to the
//! Deployment, Services, HorizontalPodAutoscaler and PodDisruptionBudget the controller applies.
//!
//! Nothing here talks to the API server, so unit tests call these functions directly.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec, MetricTarget,
    PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    Lifecycle, LifecycleHandler, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort,
    ServiceSpec as CoreServiceSpec, SleepAction, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use socketfleet_gateway::config::{self as gateway_config, Config as GatewayConfig};
use thiserror::Error;

use crate::crd::{JwtAlgorithm, RealtimeNamespace, RedisMode, ServiceType, Transport};

/// Socket port of the gateway container, behind the public Service.
pub const SOCKET_PORT: i32 = 3000;

/// Admin port of the gateway container: `/livez`, `/readyz`, `/metrics` and the publish API.
pub const ADMIN_PORT: i32 = 9090;

/// Name of the gateway container in every gateway pod.
pub const CONTAINER_NAME: &str = "gateway";

/// Seconds a pod gets after its drain window before the kubelet kills it.
pub const GRACE_MARGIN_SECONDS: i64 = 15;

/// Directory under which Secret keys are mounted as files.
const SECRET_DIR: &str = "/var/run/secrets/socketfleet";

/// Label keys of every object the operator renders.
pub mod labels {
    pub const NAME: &str = "app.kubernetes.io/name";
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    /// Set on the admin Service so a ServiceMonitor can select every fleet's metrics.
    pub const METRICS: &str = "socketfleet.io/metrics";
}

/// Value of the `app.kubernetes.io/name` label of gateway objects.
pub const GATEWAY_APP_NAME: &str = "socketfleet-gateway";

/// Operator-wide settings the builders need besides the custom resource.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildSettings {
    /// Gateway image used when the RealtimeNamespace names none.
    pub gateway_image: String,
}

/// Reasons a desired object cannot be rendered.
#[derive(Debug, Error, PartialEq)]
pub enum BuildError {
    #[error("RealtimeNamespace has no metadata.namespace")]
    MissingNamespace,
    #[error("RealtimeNamespace has no metadata.uid; it was not read from the API server")]
    MissingUid,
    #[error("RealtimeNamespace renders a gateway configuration the gateway rejects: {0}")]
    GatewayConfig(String),
}

// ---------------------------------------------------------------------------------------------
// Labels and metadata
// ---------------------------------------------------------------------------------------------

/// Labels that select the gateway pods of one RealtimeNamespace. They never change, because a
/// Deployment's selector is immutable.
pub fn selector_labels(rtns: &RealtimeNamespace) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_owned(), GATEWAY_APP_NAME.to_owned()),
        (labels::INSTANCE.to_owned(), rtns.name_any()),
    ])
}

/// Formats the selector labels as a label selector string, for `status.selector`.
pub fn selector_string(rtns: &RealtimeNamespace) -> String {
    selector_labels(rtns)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels of every rendered object: the selector labels plus descriptive ones.
pub fn object_labels(rtns: &RealtimeNamespace) -> BTreeMap<String, String> {
    let mut labels = selector_labels(rtns);
    labels.insert(labels::COMPONENT.to_owned(), "gateway".to_owned());
    labels.insert(labels::MANAGED_BY.to_owned(), "socketfleet-operator".to_owned());
    labels.insert(labels::PART_OF.to_owned(), "socketfleet".to_owned());
    labels
}

/// Owner reference that makes the RealtimeNamespace the controller of a rendered object, so
/// deleting the RealtimeNamespace deletes the object through garbage collection.
pub fn owner_reference(rtns: &RealtimeNamespace) -> Result<OwnerReference, BuildError> {
    rtns.controller_owner_ref(&()).ok_or(BuildError::MissingUid)
}

fn object_meta(rtns: &RealtimeNamespace, name: String) -> Result<ObjectMeta, BuildError> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(rtns.namespace().ok_or(BuildError::MissingNamespace)?),
        labels: Some(object_labels(rtns)),
        owner_references: Some(vec![owner_reference(rtns)?]),
        ..ObjectMeta::default()
    })
}

/// Name of the headless Service that exposes the gateways' admin port inside the cluster.
pub fn admin_service_name(rtns: &RealtimeNamespace) -> String {
    format!("{}-admin", rtns.name_any())
}

// ---------------------------------------------------------------------------------------------
// Deployment
// ---------------------------------------------------------------------------------------------

/// Returns the replica count the operator writes into the Deployment, or `None` when the HPA
/// owns it. Without `spec.replicas` the operator keeps the Deployment's current count, so
/// turning autoscaling off keeps the size the HPA last chose instead of dropping to one pod.
pub fn desired_replicas(rtns: &RealtimeNamespace, current: Option<i32>) -> Option<i32> {
    if rtns.spec.scaling.is_some() {
        return None;
    }
    Some(rtns.spec.replicas.or(current).unwrap_or(1))
}

/// Renders the gateway Deployment. `replicas` comes from [`desired_replicas`]; `None` leaves
/// `spec.replicas` out of the applied object so the HPA's value is kept.
pub fn deployment(
    rtns: &RealtimeNamespace,
    settings: &BuildSettings,
    replicas: Option<i32>,
) -> Result<Deployment, BuildError> {
    let spec = &rtns.spec;
    let mut pod_labels = spec.gateway.pod_labels.clone();
    pod_labels.extend(object_labels(rtns));

    let PodEnvironment { env, volumes, mounts } = gateway_environment(rtns)?;
    let delay = spec.drain.endpoint_removal_delay_seconds;
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(
            spec.gateway
                .image
                .clone()
                .unwrap_or_else(|| settings.gateway_image.clone()),
        ),
        image_pull_policy: Some(
            spec.gateway
                .image_pull_policy
                .clone()
                .unwrap_or_else(|| "IfNotPresent".to_owned()),
        ),
        ports: Some(vec![
            container_port("socket", SOCKET_PORT),
            container_port("admin", ADMIN_PORT),
        ]),
        env: Some(env),
        resources: Some(spec.gateway.resources.clone().unwrap_or_else(default_resources)),
        readiness_probe: Some(http_probe("/readyz", 2, 1)),
        liveness_probe: Some(http_probe("/livez", 10, 3)),
        startup_probe: Some(http_probe("/livez", 1, 30)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        lifecycle: (delay > 0).then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: i64::from(delay),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        ..Container::default()
    };

    // The gateway rejects new sockets from the moment it gets SIGTERM, so a preStop sleep keeps
    // it serving until Services and load balancers have dropped the terminating pod. The grace
    // period covers that delay, the drain window and a margin for the final flush.
    let grace_period = i64::from(delay) + i64::from(spec.drain.seconds) + GRACE_MARGIN_SECONDS;
    let pod_spec = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(grace_period),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(pod_security_context()),
        node_selector: non_empty_map(&spec.gateway.node_selector),
        tolerations: (!spec.gateway.tolerations.is_empty()).then(|| spec.gateway.tolerations.clone()),
        affinity: spec.gateway.affinity.clone(),
        priority_class_name: spec.gateway.priority_class_name.clone(),
        topology_spread_constraints: Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(label_selector(rtns)),
            ..TopologySpreadConstraint::default()
        }]),
        ..PodSpec::default()
    };

    Ok(Deployment {
        metadata: object_meta(rtns, rtns.name_any())?,
        spec: DeploymentSpec {
            replicas,
            selector: label_selector(rtns),
            // A new pod must be ready before an old one drains, so a rollout never lowers capacity.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".to_owned())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: non_empty_map(&spec.gateway.pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    })
}

/// Builds the gateway's `Config` for this RealtimeNamespace with the gateway's own types, so
/// every name and default comes from the gateway crate. Secrets are left out: they reach the pod
/// as files or `secretKeyRef` variables.
pub fn gateway_config(rtns: &RealtimeNamespace) -> Result<GatewayConfig, BuildError> {
    let spec = &rtns.spec;
    let mut config =
        GatewayConfig::from_env_pairs(Vec::new()).map_err(|err| BuildError::GatewayConfig(err.to_string()))?;

    config.port = SOCKET_PORT as u16;
    config.admin_port = ADMIN_PORT as u16;
    config.namespaces = vec![spec.path.clone()];
    config.max_connections = spec.connections.max_per_pod as u32;
    config.max_connections_per_user = spec.connections.per_user.map(|limit| limit as u32);
    config.ping_interval = std::time::Duration::from_secs(spec.connections.ping_interval_seconds as u64);
    config.ping_timeout = std::time::Duration::from_secs(spec.connections.ping_timeout_seconds as u64);
    config.max_payload_bytes = spec.connections.max_payload_bytes as u64;
    config.transports = spec
        .connections
        .transports
        .iter()
        .map(|transport| match transport {
            Transport::Websocket => gateway_config::Transport::Websocket,
            Transport::Polling => gateway_config::Transport::Polling,
        })
        .collect();
    config.drain_seconds = spec.drain.seconds as u64;

    config.redis_mode = match spec.redis.mode {
        RedisMode::Cluster => gateway_config::RedisMode::Cluster,
        RedisMode::Standalone => gateway_config::RedisMode::Standalone,
    };
    config.redis_url = redis_url_from_endpoints(rtns);
    config.redis_username = spec.redis.username.clone();
    if spec.redis.password_secret_ref.is_some() {
        config.redis_password_file = Some(format!("{SECRET_DIR}/redis/password").into());
    }
    if spec.redis.ca_secret_ref.is_some() {
        config.redis_ca_file = Some(format!("{SECRET_DIR}/redis-ca/ca.crt").into());
    }
    if spec.publish.is_some() {
        config.publish_token_file = Some(format!("{SECRET_DIR}/publish/token").into());
    }
    if let Some(auth) = &spec.auth {
        config.auth_key_file = Some(format!("{SECRET_DIR}/auth/key").into());
        config.auth_algorithm = match auth.algorithm {
            JwtAlgorithm::HS256 => gateway_config::JwtAlgorithm::Hs256,
            JwtAlgorithm::RS256 => gateway_config::JwtAlgorithm::Rs256,
            JwtAlgorithm::ES256 => gateway_config::JwtAlgorithm::Es256,
            JwtAlgorithm::EdDSA => gateway_config::JwtAlgorithm::EdDsa,
        };
        config.auth_rooms_claim = auth.rooms_claim.clone();
        config.auth_publish_claim = auth.publish_claim.clone();
        config.auth_issuer = auth.issuer.clone();
        config.auth_audience = auth.audience.clone();
    }
    if let Some(level) = &spec.gateway.log_level {
        config.log_level = level.clone();
    }
    Ok(config)
}

/// Returns the Redis URLs built from `spec.redis.endpoints`, comma-separated as the gateway's
/// `--redis-url` takes seed nodes, or `None` when the URL comes from a Secret.
pub fn redis_url_from_endpoints(rtns: &RealtimeNamespace) -> Option<String> {
    let redis = &rtns.spec.redis;
    if redis.endpoints.is_empty() {
        return None;
    }
    let scheme = if redis.tls { "rediss" } else { "redis" };
    let urls: Vec<String> = redis
        .endpoints
        .iter()
        .map(|endpoint| format!("{scheme}://{endpoint}"))
        .collect();
    Some(urls.join(","))
}

/// Container environment of a gateway pod and the volumes its Secret files come from.
struct PodEnvironment {
    env: Vec<EnvVar>,
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
}

/// Renders the container environment and the Secret volumes behind it.
fn gateway_environment(rtns: &RealtimeNamespace) -> Result<PodEnvironment, BuildError> {
    let spec = &rtns.spec;
    let config = gateway_config(rtns)?;

    let mut env: Vec<EnvVar> = config
        .to_env()
        .into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            ..EnvVar::default()
        })
        .collect();

    // A URL with credentials stays in its Secret; the kubelet resolves it at pod start.
    if let Some(secret) = &spec.redis.url_secret_ref {
        env.push(EnvVar {
            name: format!("{}REDIS_URL", gateway_config::ENV_PREFIX),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }

    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("64Mi".to_owned())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".to_owned(),
        mount_path: "/tmp".to_owned(),
        ..VolumeMount::default()
    }];
    let secret_files = [
        (
            "redis-password",
            "redis",
            "password",
            spec.redis.password_secret_ref.as_ref(),
        ),
        ("redis-ca", "redis-ca", "ca.crt", spec.redis.ca_secret_ref.as_ref()),
        (
            "publish-token",
            "publish",
            "token",
            spec.publish.as_ref().map(|p| &p.token_secret_ref),
        ),
        ("auth-key", "auth", "key", spec.auth.as_ref().map(|a| &a.secret_ref)),
    ];
    // NOTE: the pod template names each Secret and key but not its content, so a new value
    // under the same key causes no rollout. The kubelet refreshes the mounted file, but the
    // gateway reads its key, password, token and CA files at startup only, so running pods keep
    // the old value until they restart (`kubectl rollout restart deployment NAME`).
    for (volume, directory, file, secret) in secret_files {
        let Some(secret) = secret else { continue };
        volumes.push(Volume {
            name: volume.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: secret.key.clone(),
                    path: file.to_owned(),
                    ..KeyToPath::default()
                }]),
                default_mode: Some(0o440),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: volume.to_owned(),
            mount_path: format!("{SECRET_DIR}/{directory}"),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    Ok(PodEnvironment { env, volumes, mounts })
}

fn label_selector(rtns: &RealtimeNamespace) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(rtns)),
        ..LabelSelector::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        success_threshold: Some(1),
        timeout_seconds: Some(1),
        ..Probe::default()
    }
}

fn default_resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), Quantity(value.to_string())))
            .collect()
    };
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "100m"), ("memory", "128Mi")])),
        limits: Some(quantities(&[("memory", "1Gi")])),
        ..ResourceRequirements::default()
    }
}

fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        fs_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn non_empty_map(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then(|| map.clone())
}

// ---------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------

/// Renders the public Service of the socket port. Session affinity is off: the adapter carries
/// broadcasts between pods, so any pod serves any client.
pub fn service(rtns: &RealtimeNamespace) -> Result<Service, BuildError> {
    let mut metadata = object_meta(rtns, rtns.name_any())?;
    metadata.annotations = non_empty_map(&rtns.spec.service.annotations);
    let type_ = match rtns.spec.service.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Ok(Service {
        metadata,
        spec: Some(CoreServiceSpec {
            type_: Some(type_.to_owned()),
            selector: Some(selector_labels(rtns)),
            session_affinity: Some("None".to_owned()),
            ports: Some(vec![ServicePort {
                name: Some("socket".to_owned()),
                port: SOCKET_PORT,
                target_port: Some(IntOrString::String("socket".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..CoreServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// Renders the headless admin Service: every pod's metrics and publish API, ready or not, for
/// scrapers and backends inside the cluster. It never carries client sockets.
pub fn admin_service(rtns: &RealtimeNamespace) -> Result<Service, BuildError> {
    let mut metadata = object_meta(rtns, admin_service_name(rtns))?;
    metadata
        .labels
        .get_or_insert_default()
        .insert(labels::METRICS.to_owned(), "true".to_owned());
    Ok(Service {
        metadata,
        spec: Some(CoreServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            cluster_ip: Some("None".to_owned()),
            selector: Some(selector_labels(rtns)),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![ServicePort {
                name: Some("admin".to_owned()),
                port: ADMIN_PORT,
                target_port: Some(IntOrString::String("admin".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..CoreServiceSpec::default()
        }),
        ..Service::default()
    })
}

// ---------------------------------------------------------------------------------------------
// HorizontalPodAutoscaler
// ---------------------------------------------------------------------------------------------

/// Name of the per-pod metric the HPA reads through the custom metrics API.
pub const CONNECTIONS_METRIC: &str = "socket_io_connected";

/// Renders the HPA, or `None` when the fleet has a fixed size.
///
/// The HPA scales on CPU, and on `socket_io_connected` per pod only when the spec sets
/// `targetConnectionsPerPod`. That metric needs a custom metrics adapter, and with any metric
/// failing the HPA controller never scales down (`computeReplicasForMetrics` in Kubernetes'
/// pkg/controller/podautoscaler/horizontal.go), so it is opt-in.
pub fn horizontal_pod_autoscaler(rtns: &RealtimeNamespace) -> Result<Option<HorizontalPodAutoscaler>, BuildError> {
    let Some(scaling) = &rtns.spec.scaling else {
        return Ok(None);
    };

    let mut metrics = vec![MetricSpec {
        type_: "Resource".to_owned(),
        resource: Some(ResourceMetricSource {
            name: "cpu".to_owned(),
            target: MetricTarget {
                type_: "Utilization".to_owned(),
                average_utilization: Some(scaling.target_cpu_utilization),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }];
    if let Some(connections_target) = scaling.target_connections_per_pod {
        metrics.push(MetricSpec {
            type_: "Pods".to_owned(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: CONNECTIONS_METRIC.to_owned(),
                    selector: None,
                },
                target: MetricTarget {
                    type_: "AverageValue".to_owned(),
                    average_value: Some(Quantity(connections_target.to_string())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }

    // Each removed pod drains its sockets, which then reconnect elsewhere: scale down slowly and
    // only after a sustained drop, so a short dip does not cost a reconnect storm.
    let behavior = HorizontalPodAutoscalerBehavior {
        scale_down: Some(HPAScalingRules {
            stabilization_window_seconds: Some(scaling.scale_down_stabilization_seconds),
            select_policy: Some("Min".to_owned()),
            policies: Some(vec![HPAScalingPolicy {
                type_: "Pods".to_owned(),
                value: scaling.scale_down_pods_per_period,
                period_seconds: scaling.scale_down_period_seconds,
            }]),
            ..HPAScalingRules::default()
        }),
        scale_up: None,
    };

    Ok(Some(HorizontalPodAutoscaler {
        metadata: object_meta(rtns, rtns.name_any())?,
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: rtns.name_any(),
            },
            min_replicas: Some(scaling.min_replicas),
            max_replicas: scaling.max_replicas,
            metrics: Some(metrics),
            behavior: Some(behavior),
        },
        ..HorizontalPodAutoscaler::default()
    }))
}

// ---------------------------------------------------------------------------------------------
// PodDisruptionBudget
// ---------------------------------------------------------------------------------------------

/// Outcome of rendering the PodDisruptionBudget.
#[derive(Clone, Debug, PartialEq)]
pub enum DisruptionBudget {
    /// Apply this budget. It always allows at least one disruption.
    Apply(Box<PodDisruptionBudget>),
    /// A fixed fleet of zero pods has nothing to protect.
    NotNeeded,
    /// The settings would allow no disruption and so block every node drain. No budget is
    /// rendered and the Degraded condition carries this message.
    Skipped { message: String },
}

/// Renders the PodDisruptionBudget. `replicas` is the fixed size, or `None` with autoscaling
/// (the HPA's minimum is at least 1).
///
/// `maxUnavailable` rather than `minAvailable` keeps one disruption allowed for any pod count,
/// including a single-pod fleet, and `AlwaysAllow` lets a drain evict pods that are not ready.
/// The `budget_never_blocks_a_drain` test checks both for 0 to 3 pods and HPA minimums 1 and 2.
pub fn pod_disruption_budget(rtns: &RealtimeNamespace, replicas: Option<i32>) -> Result<DisruptionBudget, BuildError> {
    if replicas == Some(0) {
        return Ok(DisruptionBudget::NotNeeded);
    }
    let max_unavailable = &rtns.spec.disruption.max_unavailable;
    if allows_no_disruption(max_unavailable) {
        return Ok(DisruptionBudget::Skipped {
            message: format!(
                "spec.disruption.maxUnavailable {} allows no disruption and would block node drains; \
                 no PodDisruptionBudget is applied. Set it to 1 or more.",
                int_or_string_text(max_unavailable)
            ),
        });
    }

    Ok(DisruptionBudget::Apply(Box::new(PodDisruptionBudget {
        metadata: object_meta(rtns, rtns.name_any())?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(max_unavailable.clone()),
            selector: Some(label_selector(rtns)),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })))
}

/// Returns whether `maxUnavailable` allows zero disruptions. Percentages round up, so any percentage
/// above zero allows one pod for a fleet of at least one pod.
fn allows_no_disruption(max_unavailable: &IntOrString) -> bool {
    match max_unavailable {
        IntOrString::Int(count) => *count <= 0,
        IntOrString::String(text) => {
            let digits = text.trim_end_matches('%');
            digits.parse::<u32>().map(|percent| percent == 0).unwrap_or(true)
        }
    }
}

fn int_or_string_text(value: &IntOrString) -> String {
    match value {
        IntOrString::Int(count) => count.to_string(),
        IntOrString::String(text) => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RealtimeNamespaceSpec;
    use kube::CustomResourceExt;

    fn settings() -> BuildSettings {
        BuildSettings {
            gateway_image: "ghcr.io/socketfleet/gateway:0.1.0".into(),
        }
    }

    /// Loads an example from crds/examples as the API server would hand it to the operator.
    fn example(name: &str) -> RealtimeNamespace {
        let path = format!("{}/../crds/examples/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("failed to read {path}: {err}"));
        let mut rtns: RealtimeNamespace = serde_yaml::from_str(&text).unwrap();
        rtns.metadata.namespace = Some("apps".into());
        rtns.metadata.uid = Some("0b5c7c9e-1111-4222-8333-444455556666".into());
        rtns
    }

    fn with_spec(edit: impl FnOnce(&mut RealtimeNamespaceSpec)) -> RealtimeNamespace {
        let mut rtns = example("minimal.yaml");
        edit(&mut rtns.spec);
        rtns
    }

    fn container(deployment: &Deployment) -> &Container {
        &deployment.spec.template.spec.as_ref().unwrap().containers[0]
    }

    fn pod_spec(deployment: &Deployment) -> &PodSpec {
        deployment.spec.template.spec.as_ref().unwrap()
    }

    /// Turns the container env into pairs, giving `secretKeyRef` variables a placeholder value
    /// because the kubelet, not the operator, resolves them.
    fn env_pairs(deployment: &Deployment) -> Vec<(String, String)> {
        container(deployment)
            .env
            .iter()
            .flatten()
            .map(|var| {
                let value = match (&var.value, &var.value_from) {
                    (Some(value), None) => value.clone(),
                    (None, Some(source)) => {
                        assert!(source.secret_key_ref.is_some(), "{} must come from a Secret", var.name);
                        "redis://placeholder.invalid:6379".to_owned()
                    }
                    _ => panic!("{} has neither a value nor a source", var.name),
                };
                (var.name.clone(), value)
            })
            .collect()
    }

    #[test]
    fn minimal_example_env_parses_with_gateway_config() {
        let rtns = example("minimal.yaml");
        let deployment = deployment(&rtns, &settings(), Some(1)).unwrap();
        let config = GatewayConfig::from_env_pairs(env_pairs(&deployment)).unwrap();
        assert_eq!(config.namespaces, vec!["/chat".to_string()]);
        assert_eq!(config.port, 3000);
        assert_eq!(config.admin_port, 9090);
        assert_eq!(config.max_connections, 25_000);
        assert_eq!(
            config.redis_url.as_deref(),
            Some("redis://redis-cluster.redis.svc:6379")
        );
        assert_eq!(config.redis_mode, gateway_config::RedisMode::Cluster);
        assert_eq!(config.transports, vec![gateway_config::Transport::Websocket]);
        assert_eq!(config.drain_seconds, 30);
        assert_eq!(config.publish_token_file, None);
        assert_eq!(config.auth_key_file, None);
    }

    #[test]
    fn full_example_env_parses_with_gateway_config() {
        let rtns = example("full.yaml");
        let deployment = deployment(&rtns, &settings(), None).unwrap();
        let config = GatewayConfig::from_env_pairs(env_pairs(&deployment)).unwrap();
        assert_eq!(config.namespaces, vec!["/calls".to_string()]);
        assert_eq!(config.max_connections, 20_000);
        assert_eq!(config.max_connections_per_user, Some(5));
        assert_eq!(config.ping_interval, std::time::Duration::from_secs(25));
        assert_eq!(config.ping_timeout, std::time::Duration::from_secs(20));
        assert_eq!(config.max_payload_bytes, 1_000_000);
        assert_eq!(
            config.transports,
            vec![gateway_config::Transport::Websocket, gateway_config::Transport::Polling]
        );
        assert_eq!(
            config.redis_url.as_deref(),
            Some("redis://redis-0.redis.svc:6379,redis://redis-1.redis.svc:6379,redis://redis-2.redis.svc:6379")
        );
        assert_eq!(config.redis_username.as_deref(), Some("socketfleet"));
        assert_eq!(config.redis_password, None);
        assert_eq!(
            config.redis_password_file.as_deref(),
            Some(std::path::Path::new("/var/run/secrets/socketfleet/redis/password"))
        );
        assert_eq!(
            config.publish_token_file.as_deref(),
            Some(std::path::Path::new("/var/run/secrets/socketfleet/publish/token"))
        );
        assert_eq!(
            config.auth_key_file.as_deref(),
            Some(std::path::Path::new("/var/run/secrets/socketfleet/auth/key"))
        );
        assert_eq!(config.auth_algorithm, gateway_config::JwtAlgorithm::Rs256);
        assert_eq!(config.auth_issuer.as_deref(), Some("https://auth.example.com"));
        assert_eq!(config.auth_audience.as_deref(), Some("calls"));
    }

    #[test]
    fn redis_url_secret_is_passed_by_reference() {
        let rtns = with_spec(|spec| {
            spec.redis.endpoints.clear();
            spec.redis.url_secret_ref = Some(crate::crd::SecretKeyRef {
                name: "redis-url".into(),
                key: "url".into(),
            });
        });
        let deployment = deployment(&rtns, &settings(), Some(1)).unwrap();
        let env = container(&deployment).env.clone().unwrap();
        let url = env.iter().find(|var| var.name == "SOCKETFLEET_REDIS_URL").unwrap();
        assert_eq!(url.value, None);
        let reference = url.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!(reference.name, "redis-url");
        assert_eq!(reference.key, "url");
        assert_eq!(env.iter().filter(|var| var.name == "SOCKETFLEET_REDIS_URL").count(), 1);

        let config = GatewayConfig::from_env_pairs(env_pairs(&deployment)).unwrap();
        assert_eq!(config.redis_url.as_deref(), Some("redis://placeholder.invalid:6379"));
    }

    fn with_redis_ca(name: &str, key: &str) -> RealtimeNamespace {
        with_spec(|spec| {
            spec.redis.tls = true;
            spec.redis.ca_secret_ref = Some(crate::crd::SecretKeyRef {
                name: name.into(),
                key: key.into(),
            });
        })
    }

    #[test]
    fn redis_ca_secret_is_mounted_as_a_file() {
        let deployment = deployment(&with_redis_ca("redis-tls", "ca.crt"), &settings(), Some(1)).unwrap();

        let volumes = pod_spec(&deployment).volumes.clone().unwrap();
        let volume = volumes
            .iter()
            .find(|v| v.name == "redis-ca")
            .expect("a redis-ca volume");
        let source = volume.secret.as_ref().unwrap();
        assert_eq!(source.secret_name.as_deref(), Some("redis-tls"));
        assert_eq!(
            source.items,
            Some(vec![KeyToPath {
                key: "ca.crt".into(),
                path: "ca.crt".into(),
                ..KeyToPath::default()
            }])
        );
        assert_eq!(source.default_mode, Some(0o440));
        assert_eq!(source.optional, Some(false));

        let mounts = container(&deployment).volume_mounts.clone().unwrap();
        let mount = mounts.iter().find(|m| m.name == "redis-ca").expect("a redis-ca mount");
        assert_eq!(mount.mount_path, "/var/run/secrets/socketfleet/redis-ca");
        assert_eq!(mount.read_only, Some(true));

        let env = env_pairs(&deployment);
        assert!(
            env.contains(&(
                "SOCKETFLEET_REDIS_CA_FILE".to_string(),
                "/var/run/secrets/socketfleet/redis-ca/ca.crt".to_string()
            )),
            "{env:?}"
        );
        // The gateway's own validation accepts the CA file next to the rediss:// seeds.
        let config = GatewayConfig::from_env_pairs(env).unwrap();
        assert_eq!(
            config.redis_ca_file.as_deref(),
            Some(std::path::Path::new("/var/run/secrets/socketfleet/redis-ca/ca.crt"))
        );
        assert_eq!(
            config.redis_url.as_deref(),
            Some("rediss://redis-cluster.redis.svc:6379")
        );
    }

    #[test]
    fn fleet_without_redis_ca_has_no_ca_file() {
        let tls_only = with_spec(|spec| spec.redis.tls = true);
        for rtns in [example("minimal.yaml"), example("full.yaml"), tls_only] {
            let deployment = deployment(&rtns, &settings(), Some(1)).unwrap();
            let volumes = pod_spec(&deployment).volumes.clone().unwrap();
            assert!(volumes.iter().all(|v| v.name != "redis-ca"), "{volumes:?}");
            let mounts = container(&deployment).volume_mounts.clone().unwrap();
            assert!(mounts.iter().all(|m| m.name != "redis-ca"), "{mounts:?}");
            let env = env_pairs(&deployment);
            assert!(
                env.iter().all(|(name, _)| name != "SOCKETFLEET_REDIS_CA_FILE"),
                "{env:?}"
            );
        }
    }

    #[test]
    fn changed_ca_reference_changes_template() {
        let template = |rtns: &RealtimeNamespace| deployment(rtns, &settings(), Some(1)).unwrap().spec.template;
        let first = template(&with_redis_ca("redis-tls", "ca.crt"));
        assert_eq!(first, template(&with_redis_ca("redis-tls", "ca.crt")));
        assert_ne!(first, template(&with_redis_ca("redis-tls-2", "ca.crt")));
        assert_ne!(first, template(&with_redis_ca("redis-tls", "tls.crt")));
    }

    #[test]
    fn secrets_never_appear_as_plain_env() {
        let deployment = deployment(&example("full.yaml"), &settings(), None).unwrap();
        let secret_names = GatewayConfig::secret_env_names();
        for var in container(&deployment).env.iter().flatten() {
            if var.name == "SOCKETFLEET_REDIS_URL"
                && let Some(url) = &var.value
            {
                // Built from endpoints, so it carries no credentials.
                assert!(!url.contains('@'), "{url}");
                continue;
            }
            if secret_names.contains(&var.name) {
                assert!(var.value.is_none(), "{} has a plain value", var.name);
            }
        }
        let volumes = pod_spec(&deployment).volumes.clone().unwrap();
        let secrets: Vec<String> = volumes
            .iter()
            .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
            .collect();
        assert_eq!(secrets, vec!["calls-redis", "calls-publish", "calls-jwt"]);
    }

    #[test]
    fn autoscaled_deployment_leaves_replicas_out() {
        let rtns = example("full.yaml");
        assert_eq!(desired_replicas(&rtns, Some(6)), None);
        let deployment = deployment(&rtns, &settings(), desired_replicas(&rtns, Some(6))).unwrap();
        let json = serde_json::to_value(&deployment).unwrap();
        assert!(json["spec"].get("replicas").is_none(), "{}", json["spec"]);
    }

    #[test]
    fn fixed_replicas_come_from_spec_then_current_then_one() {
        let pinned = with_spec(|spec| spec.replicas = Some(4));
        assert_eq!(desired_replicas(&pinned, Some(6)), Some(4));
        let unpinned = example("minimal.yaml");
        assert_eq!(desired_replicas(&unpinned, Some(6)), Some(6));
        assert_eq!(desired_replicas(&unpinned, None), Some(1));
        let zero = with_spec(|spec| spec.replicas = Some(0));
        assert_eq!(desired_replicas(&zero, Some(3)), Some(0));
    }

    #[test]
    fn grace_period_covers_delay_and_drain() {
        let rtns = with_spec(|spec| spec.drain.seconds = 45);
        let deployment = deployment(&rtns, &settings(), Some(1)).unwrap();
        assert_eq!(pod_spec(&deployment).termination_grace_period_seconds, Some(65));
        let pre_stop = container(&deployment)
            .lifecycle
            .as_ref()
            .unwrap()
            .pre_stop
            .as_ref()
            .unwrap();
        assert_eq!(pre_stop.sleep.as_ref().unwrap().seconds, 5);
        let env = env_pairs(&deployment);
        assert!(
            env.contains(&("SOCKETFLEET_DRAIN_SECONDS".to_string(), "45".to_string())),
            "{env:?}"
        );
    }

    #[test]
    fn zero_delay_has_no_pre_stop_hook() {
        let rtns = with_spec(|spec| spec.drain.endpoint_removal_delay_seconds = 0);
        let deployment = deployment(&rtns, &settings(), Some(1)).unwrap();
        assert_eq!(container(&deployment).lifecycle, None);
        assert_eq!(pod_spec(&deployment).termination_grace_period_seconds, Some(45));
    }

    #[test]
    fn pod_is_hardened() {
        let deployment = deployment(&example("minimal.yaml"), &settings(), Some(1)).unwrap();
        let pod = pod_spec(&deployment);
        let pod_context = pod.security_context.as_ref().unwrap();
        assert_eq!(pod_context.run_as_non_root, Some(true));
        assert_eq!(pod_context.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(pod.automount_service_account_token, Some(false));

        let context = container(&deployment).security_context.as_ref().unwrap();
        assert_eq!(context.allow_privilege_escalation, Some(false));
        assert_eq!(context.read_only_root_filesystem, Some(true));
        assert_eq!(
            context.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
    }

    #[test]
    fn probes_use_the_admin_port() {
        let deployment = deployment(&example("minimal.yaml"), &settings(), Some(1)).unwrap();
        let container = container(&deployment);
        let readiness = container.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(readiness.path.as_deref(), Some("/readyz"));
        assert_eq!(readiness.port, IntOrString::String("admin".into()));
        let liveness = container.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(liveness.path.as_deref(), Some("/livez"));
        let ports: Vec<(Option<String>, i32)> = container
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.container_port))
            .collect();
        assert_eq!(ports, vec![(Some("socket".into()), 3000), (Some("admin".into()), 9090)]);
    }

    #[test]
    fn image_defaults_to_the_operator_setting() {
        let deployment = deployment(&example("minimal.yaml"), &settings(), Some(1)).unwrap();
        assert_eq!(
            container(&deployment).image.as_deref(),
            Some("ghcr.io/socketfleet/gateway:0.1.0")
        );
        let custom = with_spec(|spec| spec.gateway.image = Some("registry.example/gw:1".into()));
        let deployment = super::deployment(&custom, &settings(), Some(1)).unwrap();
        assert_eq!(container(&deployment).image.as_deref(), Some("registry.example/gw:1"));
    }

    #[test]
    fn selector_labels_win_over_pod_labels() {
        let rtns = with_spec(|spec| {
            spec.gateway.pod_labels.insert(labels::INSTANCE.into(), "hijack".into());
            spec.gateway.pod_labels.insert("team".into(), "rt".into());
        });
        let deployment = deployment(&rtns, &settings(), Some(1)).unwrap();
        let pod_labels = deployment
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        assert_eq!(pod_labels[labels::INSTANCE], "chat");
        assert_eq!(pod_labels["team"], "rt");
        assert_eq!(deployment.spec.selector.match_labels, Some(selector_labels(&rtns)));
        assert_eq!(
            selector_string(&rtns),
            "app.kubernetes.io/instance=chat,app.kubernetes.io/name=socketfleet-gateway"
        );
    }

    #[test]
    fn objects_are_controlled_by_the_realtime_namespace() {
        let rtns = example("minimal.yaml");
        let deployment = deployment(&rtns, &settings(), Some(1)).unwrap();
        let owners = deployment.metadata.owner_references.unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "RealtimeNamespace");
        assert_eq!(owners[0].name, "chat");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(owners[0].uid, "0b5c7c9e-1111-4222-8333-444455556666");
        assert_eq!(deployment.metadata.namespace.as_deref(), Some("apps"));
    }

    #[test]
    fn objects_need_a_uid_and_namespace() {
        let mut rtns = example("minimal.yaml");
        rtns.metadata.uid = None;
        assert_eq!(service(&rtns).unwrap_err(), BuildError::MissingUid);
        let mut rtns = example("minimal.yaml");
        rtns.metadata.namespace = None;
        assert_eq!(service(&rtns).unwrap_err(), BuildError::MissingNamespace);
    }

    #[test]
    fn service_has_no_session_affinity_and_no_admin_port() {
        let rtns = example("full.yaml");
        let service = service(&rtns).unwrap();
        let spec = service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
        let ports: Vec<i32> = spec.ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(ports, vec![3000]);
        assert_eq!(
            service.metadata.annotations.unwrap()["example.com/load-balancer-class"],
            "internal"
        );

        let minimal = super::service(&example("minimal.yaml")).unwrap();
        assert_eq!(minimal.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    }

    #[test]
    fn admin_service_is_headless_on_the_admin_port() {
        let service = admin_service(&example("minimal.yaml")).unwrap();
        assert_eq!(service.metadata.name.as_deref(), Some("chat-admin"));
        assert_eq!(service.metadata.labels.unwrap()[labels::METRICS], "true");
        let spec = service.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        let ports: Vec<i32> = spec.ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(ports, vec![9090]);
    }

    #[test]
    fn fixed_fleet_has_no_autoscaler() {
        assert_eq!(horizontal_pod_autoscaler(&example("minimal.yaml")).unwrap(), None);
    }

    #[test]
    fn autoscaler_scales_down_slowly_by_default() {
        let rtns = with_spec(|spec| {
            spec.scaling = serde_json::from_value(serde_json::json!({"minReplicas": 2, "maxReplicas": 10})).unwrap();
        });
        let autoscaler = horizontal_pod_autoscaler(&rtns).unwrap().unwrap();
        let spec = autoscaler.spec;
        assert_eq!(spec.min_replicas, Some(2));
        assert_eq!(spec.max_replicas, 10);
        assert_eq!(spec.scale_target_ref.kind, "Deployment");
        assert_eq!(spec.scale_target_ref.name, "chat");

        let scale_down = spec.behavior.unwrap().scale_down.unwrap();
        assert!(scale_down.stabilization_window_seconds.unwrap() >= 300);
        let policies = scale_down.policies.unwrap();
        assert_eq!(policies.len(), 1);
        assert_eq!(policies[0].type_, "Pods");
        assert_eq!(policies[0].value, 1);
        assert_eq!(policies[0].period_seconds, 120);

        let metrics = spec.metrics.unwrap();
        let cpu = metrics.iter().find_map(|m| m.resource.as_ref()).unwrap();
        assert_eq!(cpu.name, "cpu");
        assert_eq!(cpu.target.average_utilization, Some(70));
        // Without targetConnectionsPerPod no metric needs a custom metrics adapter, so a missing
        // adapter cannot block scale-down.
        assert_eq!(metrics.len(), 1, "{metrics:?}");
        assert!(metrics.iter().all(|m| m.pods.is_none()), "{metrics:?}");
    }

    #[test]
    fn autoscaler_adds_connections_metric_when_targeted() {
        let rtns = with_spec(|spec| {
            spec.scaling = serde_json::from_value(serde_json::json!({
                "minReplicas": 2,
                "maxReplicas": 10,
                "targetConnectionsPerPod": 12000
            }))
            .unwrap();
        });
        let metrics = horizontal_pod_autoscaler(&rtns).unwrap().unwrap().spec.metrics.unwrap();
        assert_eq!(metrics.len(), 2, "{metrics:?}");
        let connections = metrics.iter().find_map(|m| m.pods.as_ref()).unwrap();
        assert_eq!(connections.metric.name, "socket_io_connected");
        assert_eq!(connections.target.type_, "AverageValue");
        assert_eq!(connections.target.average_value, Some(Quantity("12000".into())));
    }

    #[test]
    fn autoscaler_follows_the_spec() {
        let autoscaler = horizontal_pod_autoscaler(&example("full.yaml")).unwrap().unwrap();
        let metrics = autoscaler.spec.metrics.unwrap();
        let connections = metrics.iter().find_map(|m| m.pods.as_ref()).unwrap();
        assert_eq!(connections.target.average_value, Some(Quantity("15000".into())));
    }

    fn budget_allows_disruption(budget: &DisruptionBudget) -> bool {
        match budget {
            DisruptionBudget::Apply(budget) => {
                let spec = budget.spec.as_ref().unwrap();
                spec.min_available.is_none()
                    && spec.unhealthy_pod_eviction_policy.as_deref() == Some("AlwaysAllow")
                    && !allows_no_disruption(spec.max_unavailable.as_ref().unwrap())
            }
            DisruptionBudget::NotNeeded | DisruptionBudget::Skipped { .. } => true,
        }
    }

    #[test]
    fn budget_never_blocks_a_drain() {
        for replicas in [0, 1, 2, 3] {
            let rtns = with_spec(|spec| spec.replicas = Some(replicas));
            let budget = pod_disruption_budget(&rtns, desired_replicas(&rtns, None)).unwrap();
            assert!(budget_allows_disruption(&budget), "replicas {replicas}: {budget:?}");
            assert_eq!(
                matches!(budget, DisruptionBudget::NotNeeded),
                replicas == 0,
                "replicas {replicas}"
            );
        }
        for min in [1, 2] {
            let rtns = with_spec(|spec| {
                spec.scaling =
                    serde_json::from_value(serde_json::json!({"minReplicas": min, "maxReplicas": 5})).unwrap();
            });
            let budget = pod_disruption_budget(&rtns, desired_replicas(&rtns, Some(min))).unwrap();
            assert!(matches!(budget, DisruptionBudget::Apply(_)), "min {min}: {budget:?}");
            assert!(budget_allows_disruption(&budget), "min {min}: {budget:?}");
        }
    }

    #[test]
    fn budget_that_allows_nothing_is_skipped_with_a_warning() {
        for value in [IntOrString::Int(0), IntOrString::String("0%".into())] {
            let rtns = with_spec(|spec| spec.disruption.max_unavailable = value.clone());
            match pod_disruption_budget(&rtns, Some(3)).unwrap() {
                DisruptionBudget::Skipped { message } => {
                    assert!(message.contains("spec.disruption.maxUnavailable"), "{message}");
                }
                other => panic!("{value:?} gave {other:?}"),
            }
        }
        let rtns = with_spec(|spec| spec.disruption.max_unavailable = IntOrString::String("25%".into()));
        assert!(matches!(
            pod_disruption_budget(&rtns, Some(1)).unwrap(),
            DisruptionBudget::Apply(_)
        ));
    }

    #[test]
    fn crd_has_printer_columns_and_scale_subresource() {
        let crd = RealtimeNamespace::crd();
        let version = &crd.spec.versions[0];
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            vec!["Path", "Ready", "Replicas", "Connections", "Age", "Endpoint"]
        );
        let wide_only: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority == Some(1))
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(wide_only, vec!["Endpoint"]);
        let scale = version.subresources.as_ref().unwrap().scale.as_ref().unwrap();
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(scale.label_selector_path.as_deref(), Some(".status.selector"));
        assert_eq!(crd.spec.names.short_names, Some(vec!["rtns".to_string()]));
    }

    #[test]
    fn crd_conditions_are_a_list_map_keyed_by_type() {
        let crd = serde_json::to_value(RealtimeNamespace::crd()).unwrap();
        let conditions = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
            ["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]));
    }

    #[test]
    fn crd_path_pattern_is_the_gateway_rule() {
        let crd = serde_json::to_value(RealtimeNamespace::crd()).unwrap();
        let path = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["path"];
        assert_eq!(path["pattern"], socketfleet_gateway::namespace::PATH_PATTERN);
        assert!(
            path["description"]
                .as_str()
                .unwrap()
                .contains("Socket.IO namespace path")
        );
    }
}
