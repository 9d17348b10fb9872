//! A downstream server on the bare protocol (`scripts/raw_sink.py`, Python's socketserver):
//! for the tests that need what a real server would not do or tell. The reply after DATA is
//! the test's to choose (down to characters that break a reply parser), AUTH accepts any
//! credentials over anything and logs them in clear (what an impostor on a smart host's
//! address collects), and each RCPT command is recorded as it was sent.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::{Delivered, Downstream};
use crate::process::{python_server, ChildGuard};

/// The raw sink on loopback, killed when dropped. Each message it accepts is one `<n>.eml` +
/// `<n>.json` pair in its own temporary directory; AUTH attempts go to `auth.jsonl` there.
pub struct RawSink {
    _child: ChildGuard,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// How the sink behaves; [`RawSink::start`] is the plain one on `127.0.0.1:0`.
#[derive(Debug, Clone, Default)]
pub struct RawSinkBuilder {
    host: Option<IpAddr>,
    port: u16,
    tls: Option<(PathBuf, PathBuf)>,
    auth: bool,
    reject_prefix: Option<String>,
    data_reply: Option<String>,
}

/// One AUTH exchange as the sink saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthAttempt {
    pub user: String,
    pub password: String,
    /// Whether it came over STARTTLS.
    pub tls: bool,
    /// The connection it came on, numbered from 1 in the order the sink accepted them.
    pub conn: u64,
}

impl RawSink {
    /// A sink on `127.0.0.1:0` that accepts every recipient and message.
    pub fn start() -> RawSink {
        RawSink::builder().start()
    }

    pub fn builder() -> RawSinkBuilder {
        RawSinkBuilder::default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every AUTH attempt so far, in order.
    pub fn auth_log(&self) -> Vec<AuthAttempt> {
        std::fs::read_to_string(self.dir.path().join("auth.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let v: serde_json::Value =
                    serde_json::from_str(line).expect("the sink writes JSON lines");
                let text = |key: &str| v[key].as_str().expect(key).to_string();
                AuthAttempt {
                    user: text("user"),
                    password: text("password"),
                    tls: v["tls"].as_bool().expect("tls"),
                    conn: v["conn"].as_u64().expect("conn"),
                }
            })
            .collect()
    }
}

impl RawSinkBuilder {
    /// Listen on `host` instead of 127.0.0.1: another loopback address, or `::1`.
    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = Some(host);
        self
    }

    /// Listen on `port` instead of a port of its own: one a
    /// [`ReservedPort`](crate::ReservedPort) holds for it (the sink binds with
    /// `SO_REUSEADDR`).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Offer STARTTLS with this certificate (the client may go on without it).
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Offer AUTH PLAIN and LOGIN, accept any credentials, and log them: [`RawSink::auth_log`].
    pub fn auth(mut self) -> Self {
        self.auth = true;
        self
    }

    /// Answer `550 5.1.1` to recipients whose address starts with `prefix`.
    pub fn reject_prefix(mut self, prefix: &str) -> Self {
        self.reject_prefix = Some(prefix.to_string());
        self
    }

    /// Answer the final dot of DATA with `250 <text>` (any Unicode, sent as UTF-8).
    pub fn data_reply(mut self, text: &str) -> Self {
        self.data_reply = Some(text.to_string());
        self
    }

    pub fn start(self) -> RawSink {
        let dir = super::dump_dir();
        let host = self.host.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let mut args: Vec<String> = vec![
            dir.path().display().to_string(),
            "--host".into(),
            host.to_string(),
            "--port".into(),
            self.port.to_string(),
        ];
        if let Some((cert, key)) = &self.tls {
            args.extend(["--cert".into(), cert.display().to_string()]);
            args.extend(["--key".into(), key.display().to_string()]);
        }
        if self.auth {
            args.push("--auth".into());
        }
        if let Some(prefix) = &self.reject_prefix {
            args.extend(["--reject-prefix".into(), prefix.clone()]);
        }
        if let Some(text) = &self.data_reply {
            args.extend(["--data-reply".into(), python_escaped(text)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (child, port) = python_server("raw_sink.py", &args).unwrap_or_else(|e| panic!("{e}"));
        RawSink {
            _child: child,
            addr: SocketAddr::new(host, port),
            dir,
        }
    }
}

impl Downstream for RawSink {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn messages(&self) -> Vec<Delivered> {
        super::numbered_dumps(self.dir.path())
    }
}

/// `text` in ASCII with Python's `unicode_escape` escapes, which the script undoes: a
/// command-line argument then carries any character whatever the locale.
fn python_escaped(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\\' => "\\\\".to_string(),
            ' '..='~' => c.to_string(),
            _ => format!("\\U{:08x}", u32::from(c)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_is_not_printable_ascii() {
        assert_eq!(
            python_escaped("\u{85}2.0.0 a\\b\u{1F600}"),
            "\\U000000852.0.0 a\\\\b\\U0001f600"
        );
    }
}
