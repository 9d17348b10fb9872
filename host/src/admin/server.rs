//! The admin server's HTTP/1.1 side, on [`crate::http`]: connections by `max_connections`,
//! request heads by [`MAX_HEAD`] and [`MAX_HEADERS`], heads and bodies by
//! `request_timeout`, bodies by [`MAX_BODY`].

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use super::api::{self, Reply};
use super::guard::{Guard, Refusal};
use super::{Admin, Context};
use crate::http::{self, Limits};

/// Largest request body read (a list member with its JSON around it).
pub const MAX_BODY: usize = 16 * 1024;
/// Most of a too-large body read (and dropped) before answering `413`.
const MAX_DRAIN: usize = 1024 * 1024;
/// Largest request head (line and headers) hyper buffers.
const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request.
const MAX_HEADERS: usize = 48;

/// What every request shares.
struct Shared {
    context: Arc<Context>,
    guard: Guard,
    timeout: std::time::Duration,
}

pub(super) async fn serve(admin: Admin, context: Arc<Context>, shutdown: CancellationToken) {
    let timeout = admin.config.request_timeout;
    let limits = Limits {
        max_connections: admin.config.max_connections as usize,
        request_timeout: timeout,
        max_head: MAX_HEAD,
        max_headers: Some(MAX_HEADERS),
    };
    let shared = Arc::new(Shared {
        context,
        guard: Guard::new(admin.token.as_deref()),
        timeout,
    });
    http::serve(
        "admin server",
        admin.listener,
        limits,
        shutdown,
        move |req, _peer| {
            let shared = shared.clone();
            async move { respond(&shared, req).await.into_response() }
        },
    )
    .await;
}

async fn respond(shared: &Shared, req: hyper::Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    if !matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::POST | Method::DELETE
    ) {
        return Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            .header("allow", "GET, HEAD, POST, DELETE");
    }
    let path = parts.uri.path();
    match shared.guard.check(path, &parts.headers) {
        Ok(()) => {}
        Err(Refusal::Token) => {
            return Reply::error(StatusCode::UNAUTHORIZED, "a valid bearer token is required")
                .header("www-authenticate", "Bearer realm=\"wasmrelay admin\"");
        }
        Err(Refusal::Foreign) => {
            return Reply::error(
                StatusCode::FORBIDDEN,
                "refused: the Host or Origin of this request is not the admin server",
            )
        }
    }
    let body = if matches!(parts.method, Method::POST | Method::DELETE) {
        match tokio::time::timeout(shared.timeout, read_body(body)).await {
            Ok(Ok(body)) => body,
            Ok(Err(reply)) => return reply,
            Err(_) => {
                return Reply::error(StatusCode::REQUEST_TIMEOUT, "request body too slow")
                    .header("connection", "close")
            }
        }
    } else {
        Bytes::new()
    };
    api::route(&shared.context, &parts.method, path, &body).await
}

/// The body, up to [`MAX_BODY`]. A longer one is read to its end (up to [`MAX_DRAIN`]) before
/// the `413`, so that the client gets the answer rather than a reset connection.
async fn read_body(mut body: Incoming) -> Result<Bytes, Reply> {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(Reply::error(StatusCode::BAD_REQUEST, "broken request body")
                .header("connection", "close"));
        };
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_BODY {
                kept.extend_from_slice(&data);
            } else if seen > MAX_DRAIN {
                break;
            }
        }
    }
    if seen > MAX_BODY {
        let too_large = Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {MAX_BODY} bytes"),
        );
        return Err(if seen > MAX_DRAIN {
            too_large.header("connection", "close")
        } else {
            too_large
        });
    }
    Ok(Bytes::from(kept))
}

impl Reply {
    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}
