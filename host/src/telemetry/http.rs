//! The OTLP exporter's HTTP client: one HTTP/1.1 POST per batch over hyper, the HTTP stack
//! the relay already has. The SDK's batch processor runs exports on a thread of its own
//! with a plain executor; each request is spawned onto the relay's tokio runtime and only
//! its result is awaited there.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use opentelemetry_http::{HttpClient, HttpError};
use tokio::net::TcpStream;

/// Largest collector response read; an OTLP response is a few bytes of protobuf.
const MAX_RESPONSE: usize = 64 << 10;

#[derive(Debug, Clone)]
pub(super) struct OtlpHttp {
    pub runtime: tokio::runtime::Handle,
    /// Connect, send and read the response, all told.
    pub timeout: Duration,
}

type Answer = Result<Response<Bytes>, HttpError>;

impl HttpClient for OtlpHttp {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Answer> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let timeout = self.timeout;
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(timeout, post(request)).await });
        Box::pin(async move {
            match task.await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(format!("no answer within {timeout:?}").into()),
                Err(e) => Err(Box::new(e) as HttpError),
            }
        })
    }
}

async fn post(request: Request<Bytes>) -> Answer {
    let (mut parts, body) = request.into_parts();
    let uri = parts.uri.clone();
    let host = uri.host().ok_or("the endpoint has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    // `[::1]` in a URL, `::1` to connect.
    let ip_or_name = host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((ip_or_name, port)).await?;
    stream.set_nodelay(true).ok();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let authority = uri.authority().map_or(host, |a| a.as_str());
    parts
        .headers
        .insert(HOST, HeaderValue::from_str(authority)?);
    // HTTP/1.1 names the path on the request line; the host goes in `Host`.
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = path.parse::<Uri>()?;
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE).collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
