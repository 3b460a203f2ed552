//! Container environment as a kubelet builds it: `envFrom` first, then `env` in order (later entries
//! win), with downward API field refs, resource field refs, Secret and ConfigMap keys, and `$(VAR)`
//! expansion against the variables defined before.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Client;
use kube::api::Api;

use super::{Error, Result};

/// Reads Secrets and ConfigMaps of the pod's namespace.
pub struct Sources {
    secrets: Api<Secret>,
    config_maps: Api<ConfigMap>,
}

impl Sources {
    pub fn new(client: &Client, namespace: &str) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), namespace),
            config_maps: Api::namespaced(client.clone(), namespace),
        }
    }

    async fn secret(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        let Some(secret) = self.secrets.get_opt(name).await? else {
            return Ok(None);
        };
        let mut values: BTreeMap<String, String> = secret.string_data.unwrap_or_default();
        for (key, bytes) in secret.data.unwrap_or_default() {
            values.insert(key, String::from_utf8_lossy(&bytes.0).into_owned());
        }
        Ok(Some(values))
    }

    async fn config_map(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        Ok(self
            .config_maps
            .get_opt(name)
            .await?
            .map(|config_map| config_map.data.unwrap_or_default()))
    }
}

/// Builds the environment of `container` in `pod`; `pod_ip` is the address the agent assigned, which
/// the pod object may not carry yet.
pub async fn container_env(
    sources: &Sources,
    pod: &Pod,
    container: &Container,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = Vec::new();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (values, optional, what) = if let Some(reference) = &from.secret_ref {
            (
                sources.secret(&reference.name).await?,
                reference.optional,
                format!("Secret {}", reference.name),
            )
        } else if let Some(reference) = &from.config_map_ref {
            (
                sources.config_map(&reference.name).await?,
                reference.optional,
                format!("ConfigMap {}", reference.name),
            )
        } else {
            continue;
        };
        match values {
            Some(values) => {
                for (key, value) in values {
                    set(&mut env, format!("{prefix}{key}"), value);
                }
            }
            None if optional == Some(true) => {}
            None => return Err(Error::NotFound(what)),
        }
    }

    for variable in container.env.iter().flatten() {
        let value = match (&variable.value, &variable.value_from) {
            (Some(value), _) => Some(expand(value, &env)),
            (None, Some(source)) => value_from(sources, pod, container, source, pod_ip, host_ip).await?,
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            set(&mut env, variable.name.clone(), value);
        }
    }
    Ok(env)
}

fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
    match env.iter_mut().find(|(existing, _)| *existing == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name, value)),
    }
}

/// Resolves one `valueFrom`; `None` means an optional key that is absent, so the variable is not set.
async fn value_from(
    sources: &Sources,
    pod: &Pod,
    container: &Container,
    source: &EnvVarSource,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Option<String>> {
    if let Some(field) = &source.field_ref {
        return field_value(pod, &field.field_path, pod_ip, host_ip).map(Some);
    }
    if let Some(resource) = &source.resource_field_ref {
        return resource_value(container, &resource.resource, resource.divisor.as_ref()).map(Some);
    }
    if let Some(key) = &source.secret_key_ref {
        let value = sources
            .secret(&key.name)
            .await?
            .and_then(|values| values.get(&key.key).cloned());
        return match value {
            Some(value) => Ok(Some(value)),
            None if key.optional == Some(true) => Ok(None),
            None => Err(Error::NotFound(format!("key {} in Secret {}", key.key, key.name))),
        };
    }
    if let Some(key) = &source.config_map_key_ref {
        let value = sources
            .config_map(&key.name)
            .await?
            .and_then(|values| values.get(&key.key).cloned());
        return match value {
            Some(value) => Ok(Some(value)),
            None if key.optional == Some(true) => Ok(None),
            None => Err(Error::NotFound(format!("key {} in ConfigMap {}", key.key, key.name))),
        };
    }
    Err(Error::InvalidSpec(
        "env valueFrom has no source this node supports".to_owned(),
    ))
}

/// Returns a downward API field of the pod, as a kubelet resolves `fieldRef.fieldPath`.
pub fn field_value(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Result<String> {
    let metadata = &pod.metadata;
    let spec = pod.spec.as_ref();
    let value = match path {
        "metadata.name" => metadata.name.clone(),
        "metadata.namespace" => metadata.namespace.clone(),
        "metadata.uid" => metadata.uid.clone(),
        "spec.nodeName" => spec.and_then(|spec| spec.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|spec| spec.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(pod_ip.to_owned()),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_owned()),
        _ => {
            let labeled = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
                path.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix("']"))
                    .map(|key| map.as_ref().and_then(|map| map.get(key).cloned()).unwrap_or_default())
            };
            let found = labeled("metadata.labels['", &metadata.labels)
                .or_else(|| labeled("metadata.annotations['", &metadata.annotations));
            return found.ok_or_else(|| Error::InvalidSpec(format!("unsupported fieldRef path {path:?}")));
        }
    };
    Ok(value.unwrap_or_default())
}

/// Returns a container's request or limit in units of `divisor` (default 1), rounded up as a
/// kubelet does. Only `cpu` and `memory` are understood; a missing limit reads as the node's
/// allocatable in a kubelet, here as 0.
fn resource_value(container: &Container, resource: &str, divisor: Option<&Quantity>) -> Result<String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| Error::InvalidSpec(format!("unsupported resourceFieldRef {resource:?}")))?;
    let resources = container.resources.as_ref();
    let map = match kind {
        "limits" => resources.and_then(|resources| resources.limits.as_ref()),
        "requests" => resources.and_then(|resources| resources.requests.as_ref()),
        _ => return Err(Error::InvalidSpec(format!("unsupported resourceFieldRef {resource:?}"))),
    };
    let amount = map
        .and_then(|map| map.get(name))
        .map(|quantity| parse_quantity(&quantity.0))
        .transpose()?
        .unwrap_or(0.0);
    let divisor = divisor
        .map(|quantity| parse_quantity(&quantity.0))
        .transpose()?
        .unwrap_or(1.0);
    if divisor <= 0.0 {
        return Err(Error::InvalidSpec(format!(
            "resourceFieldRef {resource:?} has a divisor of zero"
        )));
    }
    Ok(format!("{}", (amount / divisor).ceil() as i64))
}

/// Parses a Kubernetes quantity (`250m`, `1.5`, `128Mi`, `1G`) into a plain number.
pub fn parse_quantity(text: &str) -> Result<f64> {
    let invalid = || Error::InvalidSpec(format!("invalid quantity {text:?}"));
    let split = text
        .find(|character: char| character.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(invalid()),
    };
    Ok(number * factor)
}

/// Expands `$(NAME)` references to variables defined in `env`; `$$(NAME)` stays literal as `$(NAME)`
/// and unknown names stay as written, as in Kubernetes.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        output.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            output.push('$');
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix('(')
            && let Some(end) = reference.find(')')
        {
            let name = &reference[..end];
            match env.iter().rev().find(|(existing, _)| existing == name) {
                Some((_, value)) => output.push_str(value),
                None => output.push_str(&rest[position..position + 2 + end + 1]),
            }
            rest = &reference[end + 1..];
        } else {
            output.push('$');
            rest = after;
        }
    }
    output.push_str(rest);
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn expand_replaces_known_references() {
        let defined = env(&[("POD_IP", "10.0.0.5")]);
        assert_eq!(expand("http://$(POD_IP):3000", &defined), "http://10.0.0.5:3000");
    }

    #[test]
    fn expand_keeps_unknown_and_escaped_references() {
        let defined = env(&[("A", "1")]);
        assert_eq!(expand("$(MISSING)", &defined), "$(MISSING)");
        assert_eq!(expand("$$(A)", &defined), "$(A)");
        assert_eq!(expand("cost: $5", &defined), "cost: $5");
        assert_eq!(expand("$(A", &defined), "$(A");
    }

    #[test]
    fn field_value_reads_downward_api_paths() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "calls", "labels": {"app": "web"}},
            "spec": {"containers": [], "nodeName": "node-a"}
        }))
        .unwrap();
        assert_eq!(
            field_value(&pod, "metadata.name", "10.0.0.5", "10.0.0.1").unwrap(),
            "web-1"
        );
        assert_eq!(
            field_value(&pod, "metadata.namespace", "10.0.0.5", "10.0.0.1").unwrap(),
            "calls"
        );
        assert_eq!(
            field_value(&pod, "status.podIP", "10.0.0.5", "10.0.0.1").unwrap(),
            "10.0.0.5"
        );
        assert_eq!(
            field_value(&pod, "spec.nodeName", "10.0.0.5", "10.0.0.1").unwrap(),
            "node-a"
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['app']", "10.0.0.5", "10.0.0.1").unwrap(),
            "web"
        );
        assert!(field_value(&pod, "status.phase", "10.0.0.5", "10.0.0.1").is_err());
    }

    #[test]
    fn quantities_parse_with_suffixes() {
        assert_eq!(parse_quantity("250m").unwrap(), 0.25);
        assert_eq!(parse_quantity("128Mi").unwrap(), 128.0 * 1024.0 * 1024.0);
        assert_eq!(parse_quantity("2").unwrap(), 2.0);
        assert!(parse_quantity("12x").is_err());
    }
}
