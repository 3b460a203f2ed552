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
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec as CoreServiceSpec,
    TopologySpreadConstraint, Volume, VolumeMount,
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

/// The selector labels as a label selector string, for `status.selector`.
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
/// `spec.replicas` out of the applied object so the HPA's value stands.
pub fn deployment(
    rtns: &RealtimeNamespace,
    settings: &BuildSettings,
    replicas: Option<i32>,
) -> Result<Deployment, BuildError> {
    let spec = &rtns.spec;
    let mut pod_labels = spec.gateway.pod_labels.clone();
    pod_labels.extend(object_labels(rtns));

    let (env, volumes, mounts) = gateway_environment(rtns)?;
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(spec.gateway.image.clone().unwrap_or_else(|| settings.gateway_image.clone())),
        image_pull_policy: Some(spec.gateway.image_pull_policy.clone().unwrap_or_else(|| "IfNotPresent".to_owned())),
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
        ..Container::default()
    };

    // No preStop hook: the gateway itself turns unready on SIGTERM and keeps accepting for the
    // endpoint removal delay, then spreads disconnects over the drain window. The grace period
    // covers that window plus a margin for the final flush.
    let grace_period = i64::from(spec.drain.seconds) + GRACE_MARGIN_SECONDS;
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
    let mut config = GatewayConfig::from_env_pairs(Vec::new()).map_err(|err| BuildError::GatewayConfig(err.to_string()))?;

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

/// Returns the Redis URL built from `spec.redis.endpoints`, or `None` when the URL comes from a
/// Secret.
///
/// NOTE: the gateway takes one URL, so only the first endpoint reaches it. In cluster mode the
/// client discovers the other nodes from it, but if that seed node is down when a pod starts,
/// the pod cannot reach the cluster until it is back.
pub fn redis_url_from_endpoints(rtns: &RealtimeNamespace) -> Option<String> {
    let redis = &rtns.spec.redis;
    let endpoint = redis.endpoints.first()?;
    let scheme = if redis.tls { "rediss" } else { "redis" };
    Some(format!("{scheme}://{endpoint}"))
}

/// Renders the container environment and the Secret volumes behind it.
fn gateway_environment(rtns: &RealtimeNamespace) -> Result<(Vec<EnvVar>, Vec<Volume>, Vec<VolumeMount>), BuildError> {
    let spec = &rtns.spec;
    let config = gateway_config(rtns)?;

    let mut env: Vec<EnvVar> = config
        .to_env()
        .into_iter()
        .map(|(name, value)| EnvVar { name, value: Some(value), ..EnvVar::default() })
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
        empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity("64Mi".to_owned())), ..EmptyDirVolumeSource::default() }),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".to_owned(),
        mount_path: "/tmp".to_owned(),
        ..VolumeMount::default()
    }];
    let secret_files = [
        ("redis-password", "redis", "password", spec.redis.password_secret_ref.as_ref()),
        ("publish-token", "publish", "token", spec.publish.as_ref().map(|p| &p.token_secret_ref)),
        ("auth-key", "auth", "key", spec.auth.as_ref().map(|a| &a.secret_ref)),
    ];
    for (volume, directory, file, secret) in secret_files {
        let Some(secret) = secret else { continue };
        volumes.push(Volume {
            name: volume.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath { key: secret.key.clone(), path: file.to_owned(), ..KeyToPath::default() }]),
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
    Ok((env, volumes, mounts))
}

fn label_selector(rtns: &RealtimeNamespace) -> LabelSelector {
    LabelSelector { match_labels: Some(selector_labels(rtns)), ..LabelSelector::default() }
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
        pairs.iter().map(|(name, value)| (name.to_string(), Quantity(value.to_string()))).collect()
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
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), ..SeccompProfile::default() }),
        ..PodSecurityContext::default()
    }
}

fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Capabilities::default() }),
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
    metadata.labels.get_or_insert_default().insert(labels::METRICS.to_owned(), "true".to_owned());
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
/// NOTE: the connections target needs a custom metrics adapter (such as prometheus-adapter)
/// serving `socket_io_connected` for pods. Without one the HPA reports that metric as failed and,
/// as autoscaling/v2 does with a failed metric, scales up on CPU but never scales down.
pub fn horizontal_pod_autoscaler(rtns: &RealtimeNamespace) -> Result<Option<HorizontalPodAutoscaler>, BuildError> {
    let Some(scaling) = &rtns.spec.scaling else {
        return Ok(None);
    };
    let connections_target = scaling.connections_target(&rtns.spec.connections);

    let metrics = vec![
        MetricSpec {
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
        },
        MetricSpec {
            type_: "Pods".to_owned(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier { name: CONNECTIONS_METRIC.to_owned(), selector: None },
                target: MetricTarget {
                    type_: "AverageValue".to_owned(),
                    average_value: Some(Quantity(connections_target.to_string())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        },
    ];

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
/// including a single-pod fleet, and `AlwaysAllow` lets a drain evict pods that are not ready,
/// so the budget never blocks a drain.
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

/// Whether `maxUnavailable` allows zero disruptions. Percentages round up, so any percentage
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

