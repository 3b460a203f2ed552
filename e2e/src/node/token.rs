//! Service-account tokens from the TokenRequest API, bound to the pod that uses them, as a kubelet
//! requests them for a projected `serviceAccountToken` volume source.

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};

use super::{Error, Result};

/// Requests a token for the pod's service account, valid for `expiration_seconds` and for `audience`
/// (the API server's own audience when `None`).
pub async fn request(client: &Client, pod: &Pod, audience: Option<&str>, expiration_seconds: i64) -> Result<String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
    let service_account = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.service_account_name.clone())
        .unwrap_or_else(|| "default".to_owned());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: audience.map(|audience| vec![audience.to_owned()]),
            expiration_seconds: Some(expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let response = accounts
        .create_token_request(&service_account, &PostParams::default(), &request)
        .await?;
    response.status.and_then(|status| status.token).ok_or_else(|| {
        Error::NotFound(format!(
            "token in the TokenRequest response for {namespace}/{service_account}"
        ))
    })
}

/// Replaces a file by renaming a complete temporary copy over it, so a reader never sees half a token.
pub async fn write_atomically(path: &Path, contents: &[u8], mode: Option<u32>) -> Result<()> {
    let temporary: PathBuf = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|source| io_error(parent, source))?;
    }
    tokio::fs::write(&temporary, contents)
        .await
        .map_err(|source| io_error(&temporary, source))?;
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(|source| io_error(&temporary, source))?;
    }
    tokio::fs::rename(&temporary, path)
        .await
        .map_err(|source| io_error(path, source))
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}
