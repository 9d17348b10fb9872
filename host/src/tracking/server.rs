//! The endpoint's HTTP/1.1 server (hyper, through [`crate::http`]). Anyone on the Internet
//! can reach it, so everything is bounded: connections by an owned semaphore permit
//! (`max_connections`), request heads by hyper's buffer (16 KiB) and `request_timeout`,
//! POST bodies by [`MAX_BODY`] and the same timeout, a connection's life by
//! [`http::MAX_CONNECTION_LIFE`]. Malformed requests get hyper's `400` and cost only their
//! connection.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Response};
use tokio_util::sync::CancellationToken;

use super::handler::{Reply, Request};
use super::{Endpoint, Tracking};
use crate::http::{self, Limits};

/// Largest POST body read (RFC 8058 sends `List-Unsubscribe=One-Click`, 26 bytes).
const MAX_BODY: usize = 4096;
/// Largest request head (line and headers) hyper buffers.
const MAX_HEAD: usize = 16 * 1024;

impl Tracking {
    /// Serves until `shutdown`, then lets requests in flight finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let config = &self.endpoint.config;
        let timeout = config.request_timeout;
        let limits = Limits {
            max_connections: config.max_connections as usize,
            request_timeout: timeout,
            max_head: MAX_HEAD,
            max_headers: None,
        };
        let endpoint = self.endpoint.clone();
        http::serve(
            "tracking endpoint",
            self.listener,
            limits,
            shutdown,
            move |req, peer| {
                let endpoint = endpoint.clone();
                async move { respond(&endpoint, req, peer.ip(), timeout).await }
            },
        )
        .await;
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
