//! The `RealtimeNamespace` custom resource (socketfleet.io/v1alpha1).
//!
//! These types are the single source of the CRD: `socketfleet-operator crd` prints the YAML that
//! lands in crds/ and in the chart. Field docs become the schema descriptions `kubectl explain`
//! shows, and the `x_kube(validation = ...)` rules become CEL rules the API server checks at
//! admission.

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// API group of the custom resource.
pub const GROUP: &str = "socketfleet.io";

/// Default maximum of sockets one gateway pod accepts before it rejects upgrades.
pub const DEFAULT_MAX_CONNECTIONS_PER_POD: i32 = 25_000;

/// Default drain window in seconds: how long a terminating pod spreads its disconnects.
pub const DEFAULT_DRAIN_SECONDS: i32 = 30;

/// Default scale-down stabilization window in seconds. Each scale-down is a drain that makes
/// clients reconnect, so the HPA waits five minutes of lower load before it removes a pod.
pub const DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS: i32 = 300;

/// Default length in seconds of one scale-down period (see `scaleDownPodsPerPeriod`).
pub const DEFAULT_SCALE_DOWN_PERIOD_SECONDS: i32 = 120;

/// Default CPU utilization target of the HPA, in percent of the CPU request.
pub const DEFAULT_TARGET_CPU_UTILIZATION: i32 = 70;

// ---------------------------------------------------------------------------------------------
// RealtimeNamespace
// ---------------------------------------------------------------------------------------------

/// Desired state of one Socket.IO namespace served by one gateway fleet with one Redis binding.
// Each printcolumn repeats `type_`, which clippy reads as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "socketfleet.io",
    version = "v1alpha1",
    kind = "RealtimeNamespace",
    plural = "realtimenamespaces",
    shortname = "rtns",
    category = "socketfleet",
    namespaced,
    status = "RealtimeNamespaceStatus",
    derive = "PartialEq",
    doc = "A Socket.IO namespace served by a fleet of socketfleet gateway pods that share one Redis binding.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Path",
        type_ = "string",
        json_path = ".spec.path",
        description = "Socket.IO namespace path"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the fleet serves sockets"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Gateway pods"
    ),
    printcolumn(
        name = "Connections",
        type_ = "integer",
        json_path = ".status.connections",
        description = "Live sockets over all gateway pods"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        description = "URL clients connect to",
        priority = 1
    )
)]
#[x_kube(
    validation = Rule::new("!(has(self.replicas) && has(self.scaling))")
        .message("spec.replicas must not be set while spec.scaling is set: the HorizontalPodAutoscaler owns the replica count")
        .field_path(".replicas"),
    validation = Rule::new("!has(self.scaling) || !has(self.scaling.targetConnectionsPerPod) || self.scaling.targetConnectionsPerPod <= self.connections.maxPerPod")
        .message("spec.scaling.targetConnectionsPerPod must not exceed spec.connections.maxPerPod")
        .field_path(".scaling.targetConnectionsPerPod"),
    validation = Rule::new("!has(self.connections.perUser) || self.connections.perUser <= self.connections.maxPerPod")
        .message("spec.connections.perUser must not exceed spec.connections.maxPerPod")
        .field_path(".connections.perUser"),
    validation = Rule::new("!has(self.connections.perUser) || has(self.auth)")
        .message("spec.connections.perUser needs spec.auth, because users are told apart by the JWT sub claim")
        .field_path(".connections.perUser")
)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeNamespaceSpec {
    /// Socket.IO namespace path the fleet serves, such as `/calls`, or `/` for the main namespace.
    /// A slash followed by 1 to 63 lowercase letters, digits and inner hyphens. Commas, `#`, `?`,
    /// spaces and non-ASCII characters are rejected because they break the Socket.IO wire format
    /// and Redis channel names.
    #[schemars(pattern(socketfleet_gateway::namespace::PATH_PATTERN), length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.path is immutable: create a new RealtimeNamespace for another path"))]
    pub path: String,

    /// Fixed number of gateway pods, used only when `scaling` is not set. The scale subresource
    /// (`kubectl scale rtns NAME --replicas=N`) writes this field. When unset, the operator keeps
    /// the Deployment's current count, or starts with 1 pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Gateway pod settings: image, resources and scheduling.
    #[serde(default)]
    pub gateway: GatewaySpec,

    /// Limits and timings of client sockets.
    #[serde(default)]
    pub connections: ConnectionsSpec,

    /// Autoscaling with a HorizontalPodAutoscaler (autoscaling/v2). When set, the HPA owns the
    /// replica count and `replicas` must stay unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingSpec>,

    /// Redis binding that carries room broadcasts between the gateway pods.
    pub redis: RedisSpec,

    /// Optional JWT verification of clients. Without it every client may connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Publish API on the gateways' admin port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishSpec>,

    /// Termination of gateway pods.
    #[serde(default)]
    pub drain: DrainSpec,

    /// PodDisruptionBudget settings.
    #[serde(default)]
    pub disruption: DisruptionSpec,

    /// Service that exposes the socket port to clients.
    #[serde(default)]
    pub service: ServiceSpec,
}

/// Gateway pod settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Container image of the gateway. Defaults to the image the operator was installed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Image pull policy: Always, IfNotPresent or Never. Defaults to IfNotPresent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Always", "IfNotPresent", "Never"]))]
    pub image_pull_policy: Option<String>,

    /// Compute resources of the gateway container. Defaults to requests of 100m CPU and 128Mi
    /// memory and a 1Gi memory limit. The HPA's CPU target is a percentage of the CPU request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels a gateway pod requires, as in a Pod's `nodeSelector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the gateway pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity rules of the gateway pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Extra annotations on the gateway pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// Extra labels on the gateway pods. The operator's own selector labels take precedence.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,

    /// Priority class of the gateway pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Gateway log filter, in the `RUST_LOG` syntax, such as `info` or `socketfleet_gateway=debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
}

/// Limits and timings of client sockets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionsSpec {
    /// Maximum sockets one gateway pod accepts. At this count the pod rejects upgrades with HTTP
    /// 503 and reports not ready, so the Service routes new sockets to other pods.
    #[serde(default = "default_max_per_pod")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_per_pod: i32,

    /// Maximum sockets one user (the JWT `sub` claim) may hold over the whole fleet. Unset means
    /// no per-user limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub per_user: Option<i32>,

    /// Seconds between two Engine.IO pings sent by the gateway.
    #[serde(default = "default_ping_interval_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub ping_interval_seconds: i32,

    /// Seconds the gateway waits for a pong before it drops the socket.
    #[serde(default = "default_ping_timeout_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub ping_timeout_seconds: i32,

    /// Maximum size in bytes of one message, for websocket frames and polling bodies alike.
    #[serde(default = "default_max_payload_bytes")]
    #[schemars(range(min = 1024, max = 104_857_600))]
    pub max_payload_bytes: i64,

    /// Transports clients may use. Polling is opt-in because it needs more requests per socket.
    #[serde(default = "default_transports")]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u == t))").message("spec.connections.transports must not repeat a transport"))]
    pub transports: Vec<Transport>,
}

impl Default for ConnectionsSpec {
    fn default() -> Self {
        Self {
            max_per_pod: default_max_per_pod(),
            per_user: None,
            ping_interval_seconds: default_ping_interval_seconds(),
            ping_timeout_seconds: default_ping_timeout_seconds(),
            max_payload_bytes: default_max_payload_bytes(),
            transports: default_transports(),
        }
    }
}

/// An Engine.IO transport.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket.
    Websocket,
    /// HTTP long-polling.
    Polling,
}

/// Autoscaling of the fleet with a HorizontalPodAutoscaler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas")
        .message("spec.scaling.minReplicas must not exceed spec.scaling.maxReplicas")
        .field_path(".minReplicas")
)]
#[serde(rename_all = "camelCase")]
pub struct ScalingSpec {
    /// Minimum gateway pods.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,

    /// Maximum gateway pods.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Average live sockets per pod the HPA aims for. Setting it adds a Pods metric on the pods'
    /// `socket_io_connected`, which the HPA reads through the custom metrics API, so the cluster
    /// needs an adapter that serves it (such as prometheus-adapter). Without one the metric fails
    /// and the HPA never scales down. Unset: the HPA scales on CPU only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub target_connections_per_pod: Option<i32>,

    /// Average CPU utilization the HPA aims for, in percent of the CPU request.
    #[serde(default = "default_target_cpu_utilization", rename = "targetCPUUtilization")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: i32,

    /// Seconds of lower load the HPA waits for before it removes pods. At least 300, because each
    /// scale-down drains a pod and makes its clients reconnect.
    #[serde(default = "default_scale_down_stabilization_seconds")]
    #[schemars(range(min = 300, max = 3600))]
    pub scale_down_stabilization_seconds: i32,

    /// Maximum pods the HPA removes per `scaleDownPeriodSeconds`.
    #[serde(default = "default_scale_down_pods_per_period")]
    #[schemars(range(min = 1, max = 100))]
    pub scale_down_pods_per_period: i32,

    /// Length in seconds of one scale-down period.
    #[serde(default = "default_scale_down_period_seconds")]
    #[schemars(range(min = 15, max = 1800))]
    pub scale_down_period_seconds: i32,
}

/// Redis topology the gateways connect to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// Redis Cluster with sharded pub/sub (Redis 7 or later).
    #[default]
    Cluster,
    /// One Redis server.
    Standalone,
}

/// Redis binding of the fleet. Passwords and URLs with credentials come from Secrets only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("(has(self.endpoints) && size(self.endpoints) > 0) != has(self.urlSecretRef)")
        .message("spec.redis needs exactly one of endpoints (a non-empty list) or urlSecretRef")
        .field_path(".endpoints"),
    validation = Rule::new("self.mode != 'standalone' || !has(self.endpoints) || size(self.endpoints) == 1")
        .message("spec.redis.endpoints must hold exactly one endpoint when spec.redis.mode is standalone")
        .field_path(".endpoints"),
    // With urlSecretRef the scheme is in the Secret, so admission cannot check it. The operator
    // reports a `redis://` URL from that Secret next to a CA in the RedisReachable condition.
    validation = Rule::new("!has(self.caSecretRef) || has(self.urlSecretRef) || self.tls")
        .message("spec.redis.caSecretRef needs spec.redis.tls: true, because the CA only verifies rediss:// connections")
        .field_path(".tls")
)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Redis topology: `cluster` (sharded pub/sub) or `standalone`.
    #[serde(default)]
    pub mode: RedisMode,

    /// Redis servers as `host:port`. In cluster mode these are seed nodes: the client discovers
    /// the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 3, max = 261)))]
    #[x_kube(validation = Rule::new("self.all(e, e.matches('^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?:[0-9]{1,5}$') || e.matches('^\\\\[[0-9A-Fa-f:.]+\\\\]:[0-9]{1,5}$'))").message("spec.redis.endpoints entries must be host:port, such as redis-0.redis:6379"))]
    pub endpoints: Vec<String>,

    /// Secret key holding a full Redis URL (`redis://` or `rediss://`), used instead of
    /// `endpoints` when the URL carries credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,

    /// Secret key holding the Redis password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,

    /// Redis ACL user name. Unset means the default user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub username: Option<String>,

    /// Connect with TLS (`rediss://`).
    #[serde(default)]
    pub tls: bool,

    /// Secret key holding the PEM CA certificates that sign the Redis servers' TLS
    /// certificates, for a private CA. When set, the gateways trust only these CAs. Unset: they
    /// trust the webpki roots built into the gateway (Mozilla's CA list). Needs `tls: true`, or
    /// a `rediss://` URL in `urlSecretRef`. The gateways read it at startup, so a changed
    /// certificate under the same Secret key takes effect when the pods restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// A key in a Secret in the RealtimeNamespace's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key in the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// JWT verification of clients. The token travels in the Socket.IO `auth` payload.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret key holding the HS256 shared key or a PEM public key (RS256, ES256, EdDSA).
    pub secret_ref: SecretKeyRef,

    /// Signature algorithm of the key.
    #[serde(default)]
    pub algorithm: JwtAlgorithm,

    /// Required `iss` claim. Unset means any issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,

    /// Required `aud` claim. Unset means the audience is not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,

    /// Claim that lists the rooms a user may join.
    #[serde(default = "default_rooms_claim")]
    #[schemars(length(min = 1, max = 128))]
    pub rooms_claim: String,

    /// Claim that lists the rooms a user may publish to.
    #[serde(default = "default_publish_claim")]
    #[schemars(length(min = 1, max = 128))]
    pub publish_claim: String,
}

/// JWT signature algorithm.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared key.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

/// Publish API settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishSpec {
    /// Secret key holding the bearer token of the publish API. Without it the API returns 403.
    pub token_secret_ref: SecretKeyRef,
}

/// Termination of gateway pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainSpec {
    /// Seconds over which a terminating pod spreads the disconnects of its sockets, so clients do
    /// not reconnect all at once. The pod's termination grace period is this plus
    /// `endpointRemovalDelaySeconds` plus 15 seconds.
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub seconds: i32,

    /// Seconds a terminating pod keeps serving before the gateway gets SIGTERM, so that Services
    /// and load balancers stop sending it new sockets first (a preStop sleep). 0 sends SIGTERM
    /// at once.
    #[serde(default = "default_endpoint_removal_delay_seconds")]
    #[schemars(range(min = 0, max = 120))]
    pub endpoint_removal_delay_seconds: i32,
}

impl Default for DrainSpec {
    fn default() -> Self {
        Self {
            seconds: default_drain_seconds(),
            endpoint_removal_delay_seconds: default_endpoint_removal_delay_seconds(),
        }
    }
}

/// PodDisruptionBudget settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionSpec {
    /// Pods a voluntary disruption (such as a node drain) may take down at once: a count or a
    /// percentage such as `25%`, rounded up. A value that allows no disruption is not rendered,
    /// because such a budget would block every node drain. The Degraded condition reports it instead.
    #[serde(default = "default_max_unavailable")]
    #[x_kube(validation = Rule::new("string(self).matches('^[0-9]{1,9}$') || string(self).matches('^[0-9]{1,3}%$')").message("spec.disruption.maxUnavailable must be a count of at least 0 or a percentage such as 25%"))]
    pub max_unavailable: IntOrString,
}

impl Default for DisruptionSpec {
    fn default() -> Self {
        Self {
            max_unavailable: default_max_unavailable(),
        }
    }
}

/// Kubernetes Service type of the socket Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// A cluster-internal virtual IP.
    #[default]
    ClusterIP,
    /// A port on every node.
    NodePort,
    /// An external load balancer. socketfleet needs no sticky sessions, so any L4 balancer works.
    LoadBalancer,
}

/// Service that exposes the socket port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type. Session affinity is always off: any gateway pod serves any client.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,

    /// Extra annotations on the Service, such as load balancer settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/// Observed state of a RealtimeNamespace, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeNamespaceStatus {
    /// Ready, Progressing, Degraded and RedisReachable, one entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Gateway pods that exist, ready or not.
    #[serde(default)]
    pub replicas: i32,

    /// Gateway pods that pass their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Live sockets over all gateway pods: the sum of their `socket_io_connected` metrics.
    #[serde(default)]
    pub connections: i64,

    /// URL clients connect to, such as `http://calls.default.svc:3000/calls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Label selector of the gateway pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------------------

fn default_max_per_pod() -> i32 {
    DEFAULT_MAX_CONNECTIONS_PER_POD
}

fn default_ping_interval_seconds() -> i32 {
    25
}

fn default_ping_timeout_seconds() -> i32 {
    20
}

fn default_max_payload_bytes() -> i64 {
    // socket.io's maxHttpBufferSize default.
    1_000_000
}

fn default_transports() -> Vec<Transport> {
    vec![Transport::Websocket]
}

fn default_min_replicas() -> i32 {
    1
}

fn default_target_cpu_utilization() -> i32 {
    DEFAULT_TARGET_CPU_UTILIZATION
}

fn default_scale_down_stabilization_seconds() -> i32 {
    DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS
}

fn default_scale_down_pods_per_period() -> i32 {
    1
}

fn default_scale_down_period_seconds() -> i32 {
    DEFAULT_SCALE_DOWN_PERIOD_SECONDS
}

fn default_rooms_claim() -> String {
    "rooms".to_owned()
}

fn default_publish_claim() -> String {
    "publish".to_owned()
}

fn default_drain_seconds() -> i32 {
    DEFAULT_DRAIN_SECONDS
}

fn default_endpoint_removal_delay_seconds() -> i32 {
    // A few seconds covers kube-proxy and EndpointSlice propagation in a typical cluster.
    5
}

fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(1)
}

// ---------------------------------------------------------------------------------------------
// Derived values
// ---------------------------------------------------------------------------------------------
