//! One request in, one typed reply out. No sockets here: the server reads the request (the
//! body of a POST included) and writes the reply.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use wasmrelay_tracking_token::{html_escape as escape, verify_any, Claims, Kind};

use super::Endpoint;

/// A request as the handler needs it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a Method,
    /// The path without the query.
    pub path: &'a str,
    pub client_ip: IpAddr,
    pub user_agent: Option<&'a str>,
}

/// What the endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 200 with the 1×1 GIF.
    Pixel,
    /// 302 to this URL (already checked to be http or https, and ASCII).
    Redirect(String),
    /// 200 with the unsubscribe page asking to confirm (its form POSTs back).
    ConfirmUnsubscribe {
        recipient: String,
        sender_domain: String,
    },
    /// 200 with the page saying it is done.
    Unsubscribed { recipient: String },
    /// 404, for unknown paths and every token that does not verify alike.
    NotFound,
    /// 405 with `Allow`.
    MethodNotAllowed(&'static str),
    /// 503: the suppression list could not be written; the client should try again.
    Unavailable,
}

/// A transparent 1×1 GIF (GIF89a, one-colour palette, transparency extension).
pub const PIXEL: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\
\x21\xf9\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

impl Endpoint {
    pub async fn handle(&self, req: &Request<'_>) -> Reply {
        let Some((kind, token)) = route(req.path) else {
            return Reply::NotFound;
        };
        let allowed = match kind {
            Kind::Unsubscribe => "GET, HEAD, POST",
            Kind::Open | Kind::Click => "GET, HEAD",
        };
        let post = *req.method == Method::POST;
        if !(*req.method == Method::GET
            || *req.method == Method::HEAD
            || post && kind == Kind::Unsubscribe)
        {
            return Reply::MethodNotAllowed(allowed);
        }
        let Some(claims) = self.verify(token, kind) else {
            return Reply::NotFound;
        };
        // HEAD answers like GET and records nothing: it is a probe, not a reader.
        let record = *req.method != Method::HEAD;
        match kind {
            Kind::Open => {
                if record {
                    self.record_view(&claims, req).await;
                }
                Reply::Pixel
            }
            Kind::Click => {
                if record {
                    self.record_view(&claims, req).await;
                }
                Reply::Redirect(location(&claims.url))
            }
            Kind::Unsubscribe if post => match self.record_unsubscribe(&claims, req).await {
                Ok(()) => Reply::Unsubscribed {
                    recipient: claims.recipient,
                },
                Err(()) => Reply::Unavailable,
            },
            Kind::Unsubscribe => Reply::ConfirmUnsubscribe {
                recipient: claims.recipient,
                sender_domain: claims.sender_domain,
            },
        }
    }

    /// The claims of a token that verifies for `kind` and is not past `max_age`.
    fn verify(&self, token: &str, kind: Kind) -> Option<Claims> {
        let claims = verify_any(&self.keys(), token, kind)?;
        let issued = UNIX_EPOCH + Duration::from_secs(claims.issued.into());
        let age = SystemTime::now().duration_since(issued).unwrap_or_default();
        (age <= self.config.max_age).then_some(claims)
    }
}

/// `/o/TOKEN` → (open, TOKEN); anything else (more segments, an empty token) is not ours.
fn route(path: &str) -> Option<(Kind, &str)> {
    let rest = path.strip_prefix('/')?;
    let (letter, token) = rest.split_once('/')?;
    let mut chars = letter.chars();
    let kind = Kind::from_letter(chars.next()?)?;
    if chars.next().is_some() || token.is_empty() || token.contains('/') {
        return None;
    }
    Some((kind, token))
}

/// The URL for a `Location` header: non-ASCII bytes (an IRI in the HTML) percent-encoded,
/// so the header is plain ASCII. The token check already refused controls and spaces.
fn location(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        if b.is_ascii() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Reply {
    pub fn status(&self) -> StatusCode {
        match self {
            Reply::Pixel | Reply::ConfirmUnsubscribe { .. } | Reply::Unsubscribed { .. } => {
                StatusCode::OK
            }
            Reply::Redirect(_) => StatusCode::FOUND,
            Reply::NotFound => StatusCode::NOT_FOUND,
            Reply::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Reply::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let (content_type, body): (&str, Bytes) = match &self {
            Reply::Pixel => ("image/gif", Bytes::from_static(PIXEL)),
            Reply::ConfirmUnsubscribe {
                recipient,
                sender_domain,
            } => {
                let from = match sender_domain.as_str() {
                    "" => String::new(),
                    d => format!(" from mail sent by <b>{}</b>", escape(d)),
                };
                let body = format!(
                    "<p>Unsubscribe <b>{}</b>{from}?</p>\n<form method=\"post\">\
                     <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
                     <button type=\"submit\">Unsubscribe</button></form>",
                    escape(recipient)
                );
                ("text/html; charset=utf-8", page(&body))
            }
            Reply::Unsubscribed { recipient } => {
                let body = format!("<p><b>{}</b> is unsubscribed.</p>", escape(recipient));
                ("text/html; charset=utf-8", page(&body))
            }
            Reply::Redirect(_) => ("text/plain; charset=utf-8", Bytes::new()),
            Reply::NotFound => (
                "text/plain; charset=utf-8",
                Bytes::from_static(b"not found\n"),
            ),
            Reply::MethodNotAllowed(_) => (
                "text/plain; charset=utf-8",
                Bytes::from_static(b"method not allowed\n"),
            ),
            Reply::Unavailable => (
                "text/plain; charset=utf-8",
                Bytes::from_static(b"try again later\n"),
            ),
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        let fixed = |s: &'static str| HeaderValue::from_static(s);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("ASCII"),
        );
        headers.insert(header::CACHE_CONTROL, fixed("no-store"));
        headers.insert(header::REFERRER_POLICY, fixed("no-referrer"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, fixed("nosniff"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            fixed("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
        );
        match self {
            Reply::Redirect(url) => {
                // `location` made it ASCII and the token check kept controls out.
                if let Ok(v) = HeaderValue::from_str(&url) {
                    headers.insert(header::LOCATION, v);
                }
            }
            Reply::MethodNotAllowed(allow) => {
                headers.insert(header::ALLOW, fixed(allow));
            }
            Reply::Unavailable => {
                headers.insert(header::RETRY_AFTER, fixed("60"));
            }
            _ => {}
        }
        response
    }
}

fn page(body: &str) -> Bytes {
    Bytes::from(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>Unsubscribe</title></head>\n\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">\n{body}\n</body></html>\n"
    ))
}

#[cfg(test)]
mod tests;
