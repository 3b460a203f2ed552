//! The kubelet's container log endpoint, so `kubectl logs [-f] [--tail N]` works: the API server
//! proxies `GET /containerLogs/{namespace}/{pod}/{container}` to the node's address on the Node's
//! kubelet port (10250) over TLS with its kubelet client certificate.
//!
//! NOTE: any client certificate the cluster CA signed is accepted, without the SubjectAccessReview a
//! kubelet makes, and `sinceSeconds`, `timestamps` and `previous` are ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::{Error, Result};

/// The files the endpoint needs: its serving certificate and key, and the CA that signs clients.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// Serves container logs from `pods_folder` on `address` until the task is aborted.
pub async fn serve(address: SocketAddr, tls: Tls, pods_folder: PathBuf) -> Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(server_config(&tls)?));
    let listener = TcpListener::bind(address).await.map_err(|source| Error::Io {
        path: address.to_string(),
        source,
    })?;
    let router = Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_log))
        .with_state(Arc::new(pods_folder));
    info!(%address, "container log endpoint listening");

    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "log endpoint accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(stream) => stream,
                Err(error) => {
                    debug!(%peer, %error, "log endpoint TLS handshake failed");
                    return;
                }
            };
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, %error, "log endpoint connection ended with an error");
            }
        });
    }
}

fn server_config(tls: &Tls) -> Result<rustls::ServerConfig> {
    let invalid = |what: &Path, error: String| Error::InvalidSpec(format!("{}: {error}", what.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(Iterator::collect)
        .map_err(|error| invalid(&tls.cert, error.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|error| invalid(&tls.key, error.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in
        CertificateDer::pem_file_iter(&tls.client_ca).map_err(|error| invalid(&tls.client_ca, error.to_string()))?
    {
        let ca = ca.map_err(|error| invalid(&tls.client_ca, error.to_string()))?;
        roots
            .add(ca)
            .map_err(|error| invalid(&tls.client_ca, error.to_string()))?;
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| invalid(&tls.client_ca, error.to_string()))?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_client_cert_verifier(verifier).with_single_cert(certs, key))
        .map_err(|error| invalid(&tls.cert, error.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    #[serde(default)]
    follow: bool,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
}

async fn container_log(
    State(pods_folder): State<Arc<PathBuf>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let Some(file) = log_file(&pods_folder, &namespace, &pod, &container) else {
        let message = format!("no log of container {container} in pod {namespace}/{pod} on this node\n");
        return (StatusCode::NOT_FOUND, message).into_response();
    };
    let contents = match tokio::fs::read(&file).await {
        Ok(contents) => contents,
        Err(error) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {}: {error}\n", file.display()),
            )
                .into_response();
        }
    };
    let offset = contents.len() as u64;
    let mut start = 0;
    if let Some(lines) = query.tail_lines {
        start = tail_start(&contents, lines);
    }
    let mut first = contents[start..].to_vec();
    if let Some(limit) = query.limit_bytes {
        first.truncate(limit);
    }
    if !query.follow {
        return first.into_response();
    }

    // Following: the current contents first, then whatever the container appends, checked twice a
    // second until the client goes away.
    let stream = futures::stream::unfold((Some(first), file, offset), |(pending, file, offset)| async move {
        if let Some(chunk) = pending {
            return Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), (None, file, offset)));
        }
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match read_from(&file, offset).await {
                Ok(chunk) if !chunk.is_empty() => {
                    let next = offset + chunk.len() as u64;
                    return Some((Ok(Bytes::from(chunk)), (None, file, next)));
                }
                Ok(_) => {}
                Err(error) => return Some((Err(error), (None, file, offset))),
            }
        }
    });
    Body::from_stream(stream).into_response()
}

/// Finds the log file of `container` in the newest folder of the pod (a pod name can be reused by a
/// new pod, whose folder carries another UID).
fn log_file(pods_folder: &Path, namespace: &str, pod: &str, container: &str) -> Option<PathBuf> {
    let prefix = format!("{namespace}_{pod}_");
    std::fs::read_dir(pods_folder)
        .ok()?
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path().join(format!("{container}.log")))
        .filter(|file| file.exists())
        .max_by_key(|file| file.metadata().and_then(|metadata| metadata.modified()).ok())
}

/// Returns the byte offset where the last `lines` lines start.
fn tail_start(contents: &[u8], lines: usize) -> usize {
    if lines == 0 {
        return contents.len();
    }
    let body = contents.strip_suffix(b"\n").unwrap_or(contents);
    body.iter()
        .enumerate()
        .rev()
        .filter(|(_, byte)| **byte == b'\n')
        .nth(lines - 1)
        .map_or(0, |(position, _)| position + 1)
}

async fn read_from(file: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut handle = tokio::fs::File::open(file).await?;
    handle.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut chunk = Vec::new();
    handle.read_to_end(&mut chunk).await?;
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_start_finds_the_last_lines() {
        let text = b"one\ntwo\nthree\n";
        assert_eq!(&text[tail_start(text, 1)..], b"three\n");
        assert_eq!(&text[tail_start(text, 2)..], b"two\nthree\n");
        assert_eq!(&text[tail_start(text, 10)..], text);
        assert_eq!(&text[tail_start(text, 0)..], b"");
    }
}
