//! Memory kept per socket from its handshake request.
//!
//! hyper 1.13 parses a request's URI and header values as slices of the connection's read buffer
//! of 8 to 16 KiB (src/proto/h1/role.rs). axum 0.8.9's router keeps a clone of the URI in the
//! `OriginalUri` extension (src/routing/path_router.rs).
//! engineioxide 0.17 stores the handshake request's parts for the whole life of the socket, so every
//! idle websocket kept that read buffer alive through these slices. That cost 16 KiB of heap per
//! socket, measured with `bench/heap-profile.sh` (heaptrack) on hyper 1.13, axum 0.8.9 and
//! socketioxide 0.18.9.
//! [`detach_request_parts`] copies those values into allocations of their own size before socketioxide
//! sees the request, so hyper's buffer is freed when the upgrade is done. The
//! `idle_socket_heap` integration test fails if the saving is lost.

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, Uri};

/// Size of each websocket connection's initial read buffer, in bytes.
///
/// socketioxide allocates this much per socket up front (its default is 4 KiB). A frame larger than
/// the buffer is still read whole, because tungstenite 0.30 reserves room for a frame once its header
/// is read, but it takes one read call per this many bytes.
pub const WS_READ_BUFFER_BYTES: usize = 1024;

/// Rebuilds the request's URI, header values and `OriginalUri` extension in fresh allocations so
/// that none of them shares hyper's connection read buffer.
pub async fn detach_request_parts(request: Request) -> Request {
    let (mut parts, body) = request.into_parts();

    parts.uri = copy_uri(&parts.uri);
    parts.headers = copy_headers(&parts.headers);
    if parts.extensions.get::<OriginalUri>().is_some() {
        parts.extensions.insert(OriginalUri(parts.uri.clone()));
    }

    Request::from_parts(parts, body)
}

fn copy_uri(uri: &Uri) -> Uri {
    // Parsing a String makes the URI own a buffer of exactly its length.
    match uri.to_string().parse() {
        Ok(copy) => copy,
        // Unreachable for a URI hyper parsed, but keeping the original only costs memory.
        Err(_) => uri.clone(),
    }
}

fn copy_headers(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let owned = match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(mut owned) => {
                owned.set_sensitive(value.is_sensitive());
                owned
            }
            Err(_) => value.clone(),
        };
        copy.append(name.clone(), owned);
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[tokio::test]
    async fn detached_request_keeps_uri_and_headers() {
        let request = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-for", "10.0.0.2")
            .body(Body::empty())
            .unwrap();

        let detached = detach_request_parts(request).await;

        assert_eq!(detached.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(detached.headers()["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        let forwarded: Vec<_> = detached.headers().get_all("x-forwarded-for").iter().collect();
        assert_eq!(forwarded, ["10.0.0.1", "10.0.0.2"]);
    }

    #[tokio::test]
    async fn detached_request_replaces_original_uri() {
        let mut request = Request::builder().uri("/socket.io/?EIO=4").body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(OriginalUri("/socket.io/?EIO=4".parse().unwrap()));

        let detached = detach_request_parts(request).await;

        let original = detached.extensions().get::<OriginalUri>().expect("OriginalUri is kept");
        assert_eq!(original.0, "/socket.io/?EIO=4");
    }

    #[tokio::test]
    async fn detached_request_keeps_sensitive_flag() {
        let mut value = HeaderValue::from_static("Bearer token");
        value.set_sensitive(true);
        let request = Request::builder()
            .header("authorization", value)
            .body(Body::empty())
            .unwrap();

        let detached = detach_request_parts(request).await;

        assert!(detached.headers()["authorization"].is_sensitive());
    }
}
