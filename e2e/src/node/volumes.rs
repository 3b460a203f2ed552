//! Pod volumes as folders on the host, bind-mounted into each container's private mount namespace.
//!
//! Supported types: `emptyDir`, `secret`, `configMap`, `downwardAPI` and `projected` with
//! `serviceAccountToken`, `secret`, `configMap` and `downwardAPI` sources. That covers the
//! `kube-api-access-*` volume the ServiceAccount admission plugin adds to every pod, so the token
//! appears at `/var/run/secrets/kubernetes.io/serviceaccount` as on any node. Any other type makes the
//! pod fail to start with a message naming it.
//!
//! NOTE: Secret and ConfigMap contents are written once at pod start. A kubelet updates them within
//! about a minute, but here only service-account tokens are refreshed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, Volume};
use kube::Client;
use kube::api::Api;

use super::{Error, Result, env, token};

/// A kubelet requests one hour plus 7 s for the default token and rotates it at 80 % of its lifetime.
const DEFAULT_TOKEN_SECONDS: i64 = 3607;

/// One bind mount for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// A token file that needs refreshing before it expires.
#[derive(Debug, Clone)]
pub struct TokenFile {
    pub path: PathBuf,
    pub audience: Option<String>,
    pub expiration_seconds: i64,
    pub mode: Option<u32>,
}

impl TokenFile {
    pub fn refresh_after(&self) -> Duration {
        Duration::from_secs(self.expiration_seconds.max(600) as u64 * 8 / 10)
    }

    pub async fn write(&self, client: &Client, pod: &Pod) -> Result<()> {
        let value = token::request(client, pod, self.audience.as_deref(), self.expiration_seconds).await?;
        token::write_atomically(&self.path, value.as_bytes(), self.mode).await
    }
}

/// The host folders of a pod's volumes.
#[derive(Debug, Default)]
pub struct PodVolumes {
    folders: BTreeMap<String, (PathBuf, bool)>,
    pub tokens: Vec<TokenFile>,
}

impl PodVolumes {
    /// Creates every volume of the pod under `root` (one folder per volume) and fills it.
    pub async fn prepare(client: &Client, pod: &Pod, root: &Path, pod_ip: &str, host_ip: &str) -> Result<Self> {
        let mut volumes = Self::default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);

        for volume in pod
            .spec
            .as_ref()
            .and_then(|spec| spec.volumes.clone())
            .unwrap_or_default()
        {
            let folder = root.join(&volume.name);
            let _ = tokio::fs::remove_dir_all(&folder).await;
            create_dir(&folder).await?;
            let read_only = fill(
                &mut volumes,
                client,
                pod,
                &volume,
                &folder,
                &secrets,
                &config_maps,
                pod_ip,
                host_ip,
            )
            .await?;
            volumes.folders.insert(volume.name.clone(), (folder, read_only));
        }
        Ok(volumes)
    }

    /// Returns the bind mounts of one container, in the order the pod spec lists them.
    pub fn mounts(&self, container: &Container) -> Result<Vec<Mount>> {
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let (folder, read_only) = self
                .folders
                .get(&mount.name)
                .ok_or_else(|| Error::InvalidSpec(format!("volume mount {} names no volume of the pod", mount.name)))?;
            let source = match mount.sub_path.as_deref().filter(|sub_path| !sub_path.is_empty()) {
                Some(sub_path) if sub_path.split('/').any(|part| part == "..") => {
                    return Err(Error::InvalidSpec(format!("subPath {sub_path:?} leaves its volume")));
                }
                Some(sub_path) => folder.join(sub_path),
                None => folder.clone(),
            };
            mounts.push(Mount {
                source,
                target: mount.mount_path.clone(),
                read_only: *read_only || mount.read_only == Some(true),
            });
        }
        Ok(mounts)
    }
}

/// Fills one volume's folder; returns whether the volume type is read-only.
#[allow(clippy::too_many_arguments)]
async fn fill(
    volumes: &mut PodVolumes,
    client: &Client,
    pod: &Pod,
    volume: &Volume,
    folder: &Path,
    secrets: &Api<Secret>,
    config_maps: &Api<ConfigMap>,
    pod_ip: &str,
    host_ip: &str,
) -> Result<bool> {
    if volume.empty_dir.is_some() {
        return Ok(false);
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let data = secret_data(secrets, &name).await?;
        write_items(
            folder,
            data,
            source.items.as_deref(),
            source.default_mode,
            source.optional,
            &format!("Secret {name}"),
        )
        .await?;
        return Ok(true);
    }
    if let Some(source) = &volume.config_map {
        let data = config_map_data(config_maps, &source.name).await?;
        write_items(
            folder,
            data,
            source.items.as_deref(),
            source.default_mode,
            source.optional,
            &format!("ConfigMap {}", source.name),
        )
        .await?;
        return Ok(true);
    }
    if let Some(source) = &volume.downward_api {
        for item in source.items.iter().flatten() {
            let Some(field) = &item.field_ref else { continue };
            let value = env::field_value(pod, &field.field_path, pod_ip, host_ip)?;
            token::write_atomically(
                &folder.join(&item.path),
                value.as_bytes(),
                mode(item.mode.or(source.default_mode)),
            )
            .await?;
        }
        return Ok(true);
    }
    if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let file = TokenFile {
                    path: folder.join(&token.path),
                    audience: token.audience.clone().filter(|audience| !audience.is_empty()),
                    expiration_seconds: token.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS),
                    mode: mode(projected.default_mode),
                };
                file.write(client, pod).await?;
                volumes.tokens.push(file);
            }
            if let Some(config_map) = &source.config_map {
                let data = config_map_data(config_maps, &config_map.name).await?;
                let what = format!("ConfigMap {}", config_map.name);
                write_items(
                    folder,
                    data,
                    config_map.items.as_deref(),
                    projected.default_mode,
                    config_map.optional,
                    &what,
                )
                .await?;
            }
            if let Some(secret) = &source.secret {
                let data = secret_data(secrets, &secret.name).await?;
                let what = format!("Secret {}", secret.name);
                write_items(
                    folder,
                    data,
                    secret.items.as_deref(),
                    projected.default_mode,
                    secret.optional,
                    &what,
                )
                .await?;
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    let Some(field) = &item.field_ref else { continue };
                    let value = env::field_value(pod, &field.field_path, pod_ip, host_ip)?;
                    token::write_atomically(
                        &folder.join(&item.path),
                        value.as_bytes(),
                        mode(item.mode.or(projected.default_mode)),
                    )
                    .await?;
                }
            }
        }
        return Ok(true);
    }
    Err(Error::InvalidSpec(format!(
        "volume {} has a type this node does not support (only emptyDir, secret, configMap, downwardAPI and projected)",
        volume.name
    )))
}

async fn secret_data(secrets: &Api<Secret>, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    Ok(secrets.get_opt(name).await?.map(|secret| {
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.into_bytes()))
            .collect();
        data.extend(
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (key, value.0)),
        );
        data
    }))
}

async fn config_map_data(config_maps: &Api<ConfigMap>, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    Ok(config_maps.get_opt(name).await?.map(|config_map| {
        let mut data: BTreeMap<String, Vec<u8>> = config_map
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.into_bytes()))
            .collect();
        data.extend(
            config_map
                .binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (key, value.0)),
        );
        data
    }))
}

/// Writes the selected keys (all keys without `items`) as files. A missing object or key fails unless
/// the source is optional.
async fn write_items(
    folder: &Path,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: Option<bool>,
    what: &str,
) -> Result<()> {
    let optional = optional == Some(true);
    let Some(data) = data else {
        return if optional {
            Ok(())
        } else {
            Err(Error::NotFound(what.to_owned()))
        };
    };
    match items {
        Some(items) => {
            for item in items {
                if item.path.split('/').any(|part| part == "..") {
                    return Err(Error::InvalidSpec(format!(
                        "item path {:?} of {what} leaves its volume",
                        item.path
                    )));
                }
                match data.get(&item.key) {
                    Some(value) => {
                        token::write_atomically(&folder.join(&item.path), value, mode(item.mode.or(default_mode)))
                            .await?
                    }
                    None if optional => {}
                    None => return Err(Error::NotFound(format!("key {} in {what}", item.key))),
                }
            }
        }
        None => {
            for (key, value) in &data {
                token::write_atomically(&folder.join(key), value, mode(default_mode)).await?;
            }
        }
    }
    Ok(())
}

fn mode(value: Option<i32>) -> Option<u32> {
    value.map(|mode| mode as u32)
}

async fn create_dir(folder: &Path) -> Result<()> {
    tokio::fs::create_dir_all(folder).await.map_err(|source| Error::Io {
        path: folder.display().to_string(),
        source,
    })
}
