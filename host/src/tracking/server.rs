//! The endpoint's HTTP/1.1 server (hyper). Anyone on the Internet can reach it, so
//! everything is bounded: connections by an owned semaphore permit (`max_connections`),
//! request heads by hyper's buffer (16 KiB) and `request_timeout`, POST bodies by
//! [`MAX_BODY`] and the same timeout, a connection's life by [`MAX_CONNECTION_LIFE`].
//! Malformed requests get hyper's `400` and cost only their connection.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::handler::{Reply, Request};
use super::{Endpoint, Tracking};

/// Largest POST body read (RFC 8058 sends `List-Unsubscribe=One-Click`, 26 bytes).
const MAX_BODY: usize = 4096;
/// Largest request head (line and headers) hyper buffers.
const MAX_HEAD: usize = 16 * 1024;
/// A connection is closed after this long, keep-alive or not.
const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(300);
/// How long requests in flight get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Tracking {
    /// Serves until `shutdown`, then lets requests in flight finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let address = self.local_addr();
        tracing::info!(%address, "tracking endpoint up");
        let timeout = self.endpoint.config.request_timeout;
        let permits = Arc::new(Semaphore::new(
            self.endpoint.config.max_connections as usize,
        ));
        let mut connections = JoinSet::new();
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "tracking: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let endpoint = self.endpoint.clone();
            let shutdown = shutdown.clone();
            connections.spawn(async move {
                let _permit = permit;
                serve_connection(endpoint, stream, peer.ip(), timeout, shutdown).await;
            });
            while connections.try_join_next().is_some() {}
        }
        drop(self.listener);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        tracing::info!(%address, "tracking endpoint stopped");
    }
}

async fn serve_connection(
    endpoint: Arc<Endpoint>,
    stream: tokio::net::TcpStream,
    client_ip: IpAddr,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let endpoint = endpoint.clone();
        async move { Ok::<_, Infallible>(respond(&endpoint, req, client_ip, timeout).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = tokio::time::sleep(MAX_CONNECTION_LIFE) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await;
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await;
        }
    }
}

async fn respond(
    endpoint: &Endpoint,
    req: hyper::Request<Incoming>,
    client_ip: IpAddr,
    timeout: Duration,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if parts.method == Method::POST {
        // The body says nothing we need (RFC 8058's is fixed), but it is read, within
        // bounds, so the connection can carry the next request.
        let read = tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await;
        if !matches!(read, Ok(Ok(_))) {
            let mut r = Response::new(Full::new(Bytes::from_static(b"bad request\n")));
            *r.status_mut() = hyper::StatusCode::BAD_REQUEST;
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return r;
        }
    }
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let request = Request {
        method: &parts.method,
        path: parts.uri.path(),
        client_ip: client_ip.to_canonical(),
        user_agent,
    };
    let reply: Reply = endpoint.handle(&request).await;
    reply.into_response()
}
