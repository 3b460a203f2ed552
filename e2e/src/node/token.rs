//! The pod's projected service-account token: requested from the TokenRequest API, bound to the pod,
//! and written with `ca.crt` and `namespace` into a folder that the pod sees at
//! `/var/run/secrets/kubernetes.io/serviceaccount`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::Client;

use super::{Error, Result};

/// A kubelet asks for one hour plus 7 s for the default projected token, and rotates it at 80 % of its
/// lifetime.
const EXPIRATION_SECONDS: i64 = 3607;

/// Requests a token for the pod's service account and writes the token folder. Returns how long to
/// wait before refreshing.
pub async fn write_token_folder(client: &Client, pod: &Pod, folder: &Path, ca_file: &Path) -> Result<Duration> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
    let service_account = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.service_account_name.clone())
        .unwrap_or_else(|| "default".to_owned());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(EXPIRATION_SECONDS),
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
    let response = accounts.create_token_request(&service_account, &PostParams::default(), &request).await?;
    let token = response
        .status
        .and_then(|status| status.token)
        .ok_or_else(|| Error::NotFound(format!("token in the TokenRequest response for {namespace}/{service_account}")))?;

    let ca = tokio::fs::read(ca_file).await.map_err(|source| io_error(ca_file, source))?;
    tokio::fs::create_dir_all(folder).await.map_err(|source| io_error(folder, source))?;
    write_atomically(&folder.join("token"), token.as_bytes()).await?;
    write_atomically(&folder.join("ca.crt"), &ca).await?;
    write_atomically(&folder.join("namespace"), namespace.as_bytes()).await?;
    Ok(Duration::from_secs((EXPIRATION_SECONDS as u64) * 8 / 10))
}

/// Replaces a file by renaming a complete temporary copy over it, so a reader never sees half a token.
async fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let temporary: PathBuf = path.with_extension("tmp");
    tokio::fs::write(&temporary, contents).await.map_err(|source| io_error(&temporary, source))?;
    tokio::fs::rename(&temporary, path).await.map_err(|source| io_error(path, source))
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}
