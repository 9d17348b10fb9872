//! Who may use the admin API.
//!
//! - The bearer token, when configured, on every `/api/` and `/metrics` request. Both sides
//!   are hashed (SHA-256) and the digests compared without an early exit, so neither the
//!   token's bytes nor its length show in response times.
//! - `Host`: without a token the API trusts the loopback interface, and a web page could
//!   otherwise reach it through a DNS name that resolves to 127.0.0.1 (DNS rebinding). So a
//!   token-less server answers only requests addressed to a loopback IP or `localhost`.
//! - `Origin`: browsers send it with cross-site requests; one whose host is not the
//!   request's `Host` is refused, so no other site can make a visitor's browser hold,
//!   delete or flush mail (a token-less loopback API would otherwise accept it). A reverse
//!   proxy in front must pass `Host` through.

use hyper::header::{HeaderMap, AUTHORIZATION, HOST, ORIGIN};
use sha2::{Digest, Sha256};

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no token, or the wrong one.
    Token,
    /// 403: a `Host` or `Origin` that is not this server.
    Foreign,
}

/// The checks of one admin server.
pub struct Guard {
    token: Option<[u8; 32]>,
}

impl Guard {
    pub fn new(token: Option<&str>) -> Guard {
        Guard {
            token: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// Whether a request with `headers` may see `path`.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok());
        if let Some(origin) = headers.get(ORIGIN) {
            let authority = origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://").or(o.strip_prefix("https://")))
                .filter(|a| !a.contains('/'));
            if authority.is_none() || authority != host {
                return Err(Refusal::Foreign);
            }
        }
        if self.token.is_none() && !host.is_some_and(is_loopback_host) {
            return Err(Refusal::Foreign);
        }
        let protected = path.starts_with("/api/") || path == "/api" || path == "/metrics";
        match &self.token {
            Some(expected) if protected => {
                let given = headers
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                if same(expected, &Sha256::digest(given.as_bytes()).into()) {
                    Ok(())
                } else {
                    Err(Refusal::Token)
                }
            }
            _ => Ok(()),
        }
    }
}

/// Equal without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `127.0.0.1:8026`, `[::1]:8026`, `localhost:8026` (and without the port).
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&hyper::header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    const TOKEN: &str = "0123456789abcdef-secret";

    #[test]
    fn the_token_guards_the_api_and_metrics_only() {
        let g = Guard::new(Some(TOKEN));
        let host = (&HOST, "relay.example:8026");
        let good = format!("Bearer {TOKEN}");
        let with = headers(&[host, (&AUTHORIZATION, good.as_str())]);
        let without = headers(&[host]);
        for path in ["/api/queue", "/api/stats", "/metrics", "/api"] {
            assert_eq!(g.check(path, &with), Ok(()), "{path}");
            assert_eq!(g.check(path, &without), Err(Refusal::Token), "{path}");
        }
        for wrong in [
            "Bearer 0123456789abcdef-secreT",
            "Bearer 0123456789abcdef-secret ",
            "bearer 0123456789abcdef-secret",
            "Bearer ",
            "Basic abc",
        ] {
            let h = headers(&[host, (&AUTHORIZATION, wrong)]);
            assert_eq!(g.check("/api/queue", &h), Err(Refusal::Token), "{wrong}");
        }
        // The page and its scripts hold no data.
        assert_eq!(g.check("/", &without), Ok(()));
        assert_eq!(g.check("/dashboard.js", &without), Ok(()));
    }

    #[test]
    fn without_a_token_only_loopback_hosts_are_answered() {
        let g = Guard::new(None);
        for host in [
            "127.0.0.1:8026",
            "127.0.0.1",
            "[::1]:8026",
            "localhost:8026",
            "LOCALHOST",
            "127.9.9.9:1",
        ] {
            let h = headers(&[(&HOST, host)]);
            assert_eq!(g.check("/api/queue", &h), Ok(()), "{host}");
        }
        for host in [
            "evil.example:8026",
            "127.0.0.1.evil.example",
            "10.0.0.1:8026",
        ] {
            let h = headers(&[(&HOST, host)]);
            assert_eq!(g.check("/api/queue", &h), Err(Refusal::Foreign), "{host}");
        }
        assert_eq!(
            g.check("/api/queue", &HeaderMap::new()),
            Err(Refusal::Foreign)
        );
    }

    #[test]
    fn foreign_origins_are_refused() {
        let g = Guard::new(None);
        let host = (&HOST, "127.0.0.1:8026");
        for origin in ["http://127.0.0.1:8026", "https://127.0.0.1:8026"] {
            let same_origin = headers(&[host, (&ORIGIN, origin)]);
            assert_eq!(g.check("/api/queue", &same_origin), Ok(()), "{origin}");
        }
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:9999",
            "null",
            "http://127.0.0.1:8026/x",
            "ftp://127.0.0.1:8026",
        ] {
            let h = headers(&[host, (&ORIGIN, origin)]);
            assert_eq!(g.check("/api/queue", &h), Err(Refusal::Foreign), "{origin}");
        }
        // A token does not make a cross-site request acceptable.
        let g = Guard::new(Some(TOKEN));
        let auth = format!("Bearer {TOKEN}");
        let h = headers(&[
            host,
            (&ORIGIN, "http://evil.example"),
            (&AUTHORIZATION, auth.as_str()),
        ]);
        assert_eq!(g.check("/api/queue", &h), Err(Refusal::Foreign));
    }
}
