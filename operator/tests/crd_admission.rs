//! The generated CRD accepts the examples in crds/examples and rejects bad specs with a message
//! that names the field, the way the API server's admission would.
//!
//! Two checks stand in for the API server: the openAPIV3Schema as JSON Schema (draft 4, the
//! dialect OpenAPI v3 schemas derive from), and the CRD's CEL rules evaluated with kube's
//! client-side CEL validator.

use kube::CustomResourceExt;
use serde_json::{Value, json};
use socketfleet_operator::crd::RealtimeNamespace;

fn schema() -> Value {
    let crd = RealtimeNamespace::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    serde_json::to_value(schema).unwrap()
}

fn example(name: &str) -> Value {
    let path = format!("{}/../crds/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("failed to read {path}: {err}"));
    serde_yaml::from_str(&text).unwrap()
}

/// Returns the schema errors as "path: message" lines.
fn schema_errors(object: &Value) -> Vec<String> {
    let validator = jsonschema::draft4::new(&schema()).expect("the CRD schema is valid JSON Schema");
    validator
        .iter_errors(object)
        .map(|error| format!("{}: {}", error.instance_path(), error))
        .collect()
}

/// Returns the CEL rule failures as "fieldPath: message" lines. The object goes through the
/// Rust type first, which fills in the defaults the API server would apply.
fn cel_errors(object: &Value) -> Vec<String> {
    let typed: RealtimeNamespace =
        serde_json::from_value(object.clone()).expect("object parses as a RealtimeNamespace");
    match kube::core::cel::validate_cel(&typed) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .as_slice()
            .iter()
            .map(|error| format!("{}: {}", error.field_path, error.message))
            .collect(),
    }
}

fn minimal_with(path: &str, value: Value) -> Value {
    let mut object = example("minimal.yaml");
    let mut target = &mut object;
    let keys: Vec<&str> = path.split('.').collect();
    for key in &keys[..keys.len() - 1] {
        target = target
            .as_object_mut()
            .unwrap()
            .entry(key.to_string())
            .or_insert_with(|| json!({}));
    }
    target[keys[keys.len() - 1]] = value;
    object
}

#[test]
fn examples_pass_schema_and_cel_rules() {
    for name in ["minimal.yaml", "full.yaml"] {
        let object = example(name);
        assert_eq!(schema_errors(&object), Vec::<String>::new(), "{name} schema");
        assert_eq!(cel_errors(&object), Vec::<String>::new(), "{name} CEL rules");
    }
}

#[test]
fn bad_namespace_paths_are_rejected_naming_spec_path() {
    let long = format!("/{}", "a".repeat(300));
    for path in [
        "/Acme, Inc.",
        "/tenant,x",
        "/chat?x=1",
        "/café",
        long.as_str(),
        "/a#b",
        "chat",
        "/a-",
        "",
    ] {
        let errors = schema_errors(&minimal_with("spec.path", json!(path)));
        assert!(!errors.is_empty(), "{path:?} was accepted");
        assert!(
            errors.iter().all(|e| e.starts_with("/spec/path")),
            "{path:?}: {errors:?}"
        );
    }
}

#[test]
fn valid_namespace_paths_are_accepted() {
    for path in ["/", "/calls", "/chat-2", &format!("/{}", "a".repeat(63))] {
        assert_eq!(
            schema_errors(&minimal_with("spec.path", json!(path))),
            Vec::<String>::new(),
            "{path:?}"
        );
    }
}

#[test]
fn min_replicas_above_max_is_rejected() {
    let object = minimal_with("spec.scaling", json!({"minReplicas": 5, "maxReplicas": 2}));
    let errors = cel_errors(&object);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("spec.scaling.minReplicas must not exceed spec.scaling.maxReplicas"),
        "{errors:?}"
    );
}

#[test]
fn limits_out_of_range_are_rejected_naming_the_field() {
    let cases = [
        ("spec.connections.maxPerPod", json!(0), "/spec/connections/maxPerPod"),
        (
            "spec.connections.maxPerPod",
            json!(2_000_000),
            "/spec/connections/maxPerPod",
        ),
        (
            "spec.connections.pingIntervalSeconds",
            json!(0),
            "/spec/connections/pingIntervalSeconds",
        ),
        (
            "spec.connections.pingTimeoutSeconds",
            json!(0),
            "/spec/connections/pingTimeoutSeconds",
        ),
        (
            "spec.connections.maxPayloadBytes",
            json!(10),
            "/spec/connections/maxPayloadBytes",
        ),
        ("spec.replicas", json!(-1), "/spec/replicas"),
        ("spec.drain.seconds", json!(-5), "/spec/drain/seconds"),
        ("spec.connections.transports", json!([]), "/spec/connections/transports"),
        (
            "spec.connections.transports",
            json!(["carrier-pigeon"]),
            "/spec/connections/transports/0",
        ),
    ];
    for (field, value, path) in cases {
        let errors = schema_errors(&minimal_with(field, value.clone()));
        assert!(!errors.is_empty(), "{field} = {value} was accepted");
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "{field} = {value}: {errors:?}"
        );
    }
}

#[test]
fn scale_down_faster_than_five_minutes_is_rejected() {
    let object = minimal_with(
        "spec.scaling",
        json!({"minReplicas": 1, "maxReplicas": 3, "scaleDownStabilizationSeconds": 60}),
    );
    let errors = schema_errors(&object);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("/spec/scaling/scaleDownStabilizationSeconds")),
        "{errors:?}"
    );
}

#[test]
fn missing_redis_endpoints_are_rejected() {
    let errors = cel_errors(&minimal_with("spec.redis", json!({"mode": "cluster"})));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("spec.redis needs exactly one of endpoints"),
        "{errors:?}"
    );

    let errors = cel_errors(&minimal_with("spec.redis", json!({"endpoints": []})));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.redis needs exactly one of endpoints")),
        "{errors:?}"
    );
}

#[test]
fn missing_redis_is_rejected_by_the_schema() {
    let mut object = example("minimal.yaml");
    object["spec"].as_object_mut().unwrap().remove("redis");
    let errors = schema_errors(&object);
    assert!(errors.iter().any(|e| e.contains("redis")), "{errors:?}");
}

#[test]
fn malformed_redis_endpoint_is_rejected() {
    for endpoint in ["redis-0", "redis://redis-0:6379", "redis 0:6379", "host:port"] {
        let errors = cel_errors(&minimal_with("spec.redis.endpoints", json!([endpoint])));
        assert!(
            errors.iter().any(|e| e.contains("host:port")),
            "{endpoint:?}: {errors:?}"
        );
    }
    for endpoint in ["redis-0.redis.svc:6379", "10.0.0.5:7000", "[fd00::1]:6379"] {
        assert_eq!(
            cel_errors(&minimal_with("spec.redis.endpoints", json!([endpoint]))),
            Vec::<String>::new(),
            "{endpoint:?}"
        );
    }
}

#[test]
fn standalone_redis_takes_one_endpoint() {
    let object = minimal_with(
        "spec.redis",
        json!({"mode": "standalone", "endpoints": ["a:6379", "b:6379"]}),
    );
    let errors = cel_errors(&object);
    assert!(errors.iter().any(|e| e.contains("exactly one endpoint")), "{errors:?}");
}

#[test]
fn fixed_replicas_with_autoscaling_is_rejected() {
    let object = minimal_with("spec.scaling", json!({"minReplicas": 2, "maxReplicas": 4}));
    let mut object = object;
    object["spec"]["replicas"] = json!(3);
    let errors = cel_errors(&object);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.replicas must not be set while spec.scaling is set")),
        "{errors:?}"
    );
}

#[test]
fn connection_target_above_pod_maximum_is_rejected() {
    let object = minimal_with(
        "spec.scaling",
        json!({"minReplicas": 1, "maxReplicas": 4, "targetConnectionsPerPod": 30000}),
    );
    let errors = cel_errors(&object);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("targetConnectionsPerPod must not exceed")),
        "{errors:?}"
    );
}

#[test]
fn per_user_limit_without_auth_is_rejected() {
    let errors = cel_errors(&minimal_with("spec.connections.perUser", json!(3)));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.connections.perUser needs spec.auth")),
        "{errors:?}"
    );
}

#[test]
fn zero_max_unavailable_passes_admission_for_the_warning_path() {
    // A budget allowing no disruption is accepted at admission and reported by the Degraded
    // condition instead, so the operator can explain why no PodDisruptionBudget exists.
    let object = minimal_with("spec.disruption.maxUnavailable", json!(0));
    assert_eq!(schema_errors(&object), Vec::<String>::new());
    assert_eq!(cel_errors(&object), Vec::<String>::new());

    let errors = cel_errors(&minimal_with("spec.disruption.maxUnavailable", json!("half")));
    assert!(errors.iter().any(|e| e.contains("maxUnavailable")), "{errors:?}");
}

#[test]
fn unknown_service_type_is_rejected() {
    let errors = schema_errors(&minimal_with("spec.service.type", json!("ExternalName")));
    assert!(errors.iter().any(|e| e.starts_with("/spec/service/type")), "{errors:?}");
}

#[test]
fn redis_ca_with_endpoints_needs_tls() {
    let object = minimal_with("spec.redis.caSecretRef", json!({"name": "redis-tls", "key": "ca.crt"}));
    assert_eq!(schema_errors(&object), Vec::<String>::new());
    let errors = cel_errors(&object);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("spec.redis.caSecretRef needs spec.redis.tls: true"),
        "{errors:?}"
    );

    let mut with_tls = object;
    with_tls["spec"]["redis"]["tls"] = json!(true);
    assert_eq!(schema_errors(&with_tls), Vec::<String>::new());
    assert_eq!(cel_errors(&with_tls), Vec::<String>::new());
}

#[test]
fn redis_ca_with_url_secret_is_accepted() {
    // The scheme of a URL from a Secret is not visible at admission, so TLS is not required.
    let object = minimal_with(
        "spec.redis",
        json!({
            "urlSecretRef": {"name": "redis-url", "key": "url"},
            "caSecretRef": {"name": "redis-tls", "key": "ca.crt"}
        }),
    );
    assert_eq!(schema_errors(&object), Vec::<String>::new());
    assert_eq!(cel_errors(&object), Vec::<String>::new());
}

#[test]
fn redis_ca_reference_needs_name_and_key() {
    for reference in [
        json!({"name": "redis-tls"}),
        json!({"key": "ca.crt"}),
        json!({"name": "", "key": "ca.crt"}),
    ] {
        let mut object = minimal_with("spec.redis.caSecretRef", reference.clone());
        object["spec"]["redis"]["tls"] = json!(true);
        let errors = schema_errors(&object);
        assert!(!errors.is_empty(), "{reference} was accepted");
        assert!(
            errors.iter().all(|e| e.starts_with("/spec/redis/caSecretRef")),
            "{reference}: {errors:?}"
        );
    }
}
