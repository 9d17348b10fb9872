//! The smallest HTTP/1.1 client the webhooks need: one POST per connection
//! (`Connection: close`), over TLS verified against the webpki roots for `https://`, and the
//! status code of the answer; the body of the answer is not read.

use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest status line and headers read from a receiver before giving up on it.
const MAX_HEAD: usize = 16 * 1024;

/// Where a webhook POSTs: from `[[webhooks]] url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Endpoint {
    /// `http://host[:port][/path]` or `https://...`; no user info, no fragment, nothing that
    /// could break the request line.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let bad = |why: &str| format!("{why}: {url:?}");
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        if url.bytes().any(|b| b.is_ascii_control() || b == b' ') || url.contains('#') {
            return Err(bad(
                "spaces, control characters and fragments are not allowed",
            ));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad("user info is not allowed (the secret signs requests)"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
                (h, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?,
            None if tls => 443,
            None => 80,
        };
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Endpoint {
            tls,
            host: host.to_string(),
            port,
            path,
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (true, 443) | (false, 80) => host,
            _ => format!("{host}:{}", self.port),
        }
    }
}

/// POSTs `body` (JSON) with `headers`; returns the status code, or why there is none. The
/// whole exchange, connect to status line, is bounded by `timeout`.
pub async fn post(
    endpoint: &Endpoint,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<u16, String> {
    tokio::time::timeout(timeout, exchange(endpoint, headers, body))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

async fn exchange(
    endpoint: &Endpoint,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<u16, String> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: wasmrelay/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        endpoint.path,
        endpoint.host_header(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    if endpoint.tls {
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|e| format!("TLS server name: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(crate::delivery::tls::verified());
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        request(tls, &head, body).await
    } else {
        request(tcp, &head, body).await
    }
}

async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &str,
    body: &[u8],
) -> Result<u16, String> {
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.flush().await
    };
    write.await.map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return status(&buf[..end]);
        }
        if buf.len() > MAX_HEAD {
            return Err("status line too long".into());
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before a status line".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `HTTP/1.1 204 No Content` → 204.
fn status(line: &[u8]) -> Result<u16, String> {
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (
        words.next(),
        words.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") && (100..600).contains(&code) => Ok(code),
        _ => Err(format!("not an HTTP status line: {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = Endpoint::parse("https://hooks.example.com/in?k=1").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.path.as_str()),
            (true, "hooks.example.com", 443, "/in?k=1")
        );
        assert_eq!(e.host_header(), "hooks.example.com");
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (e.port, e.path.as_str(), e.host_header().as_str()),
            (8080, "/", "127.0.0.1:8080")
        );
        let e = Endpoint::parse("http://[::1]:9/x").unwrap();
        assert_eq!(
            (e.host.as_str(), e.host_header().as_str()),
            ("::1", "[::1]:9")
        );
        for bad in [
            "ftp://x/",
            "http://",
            "http://u:p@x/",
            "http://x:0/",
            "http://x/a b",
            "http://x/\r\nX: y",
            "http://x/#f",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status(b"HTTP/1.1 204 No Content"), Ok(204));
        assert_eq!(status(b"HTTP/1.0 500"), Ok(500));
        assert!(status(b"SSH-2.0-OpenSSH").is_err());
        assert!(status(b"HTTP/1.1 99999 x").is_err());
    }
}
