//! Python's aiosmtpd as a downstream server (`scripts/aiosmtpd_sink.py`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::{Delivered, Downstream};
use crate::process::{python_server, ChildGuard};

/// An aiosmtpd server on loopback, killed when dropped. Each message it accepts is one
/// `<n>.eml` + `<n>.json` pair in its own temporary directory.
pub struct Aiosmtpd {
    _child: ChildGuard,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// How the server behaves; [`Aiosmtpd::start`] is the plain one on 127.0.0.1.
#[derive(Debug, Clone, Default)]
pub struct AiosmtpdBuilder {
    host: Option<IpAddr>,
    tempfail_data: u32,
    reject_rcpt: Vec<String>,
    tls: Option<(PathBuf, PathBuf)>,
    auth: Option<(String, String)>,
}

impl Aiosmtpd {
    /// A server on 127.0.0.1 that accepts everything.
    pub fn start() -> Aiosmtpd {
        Aiosmtpd::builder().start()
    }

    pub fn builder() -> AiosmtpdBuilder {
        AiosmtpdBuilder::default()
    }

    /// Plain servers on `hosts` (loopback addresses), all on the same port number, as MX
    /// hosts behind one `mx_port` need. The first binds port 0; the others take its number;
    /// if one of them cannot, all stop and the set starts again on a new port.
    pub fn on_one_port(hosts: &[IpAddr]) -> Vec<Aiosmtpd> {
        let (first, rest) = hosts.split_first().expect("at least one host");
        let builder = |host: &IpAddr| Aiosmtpd::builder().host(*host);
        let mut last_error = String::new();
        'attempt: for _ in 0..10 {
            let lead = builder(first)
                .try_start(0)
                .unwrap_or_else(|e| panic!("{e}"));
            let mut servers = vec![lead];
            for host in rest {
                match builder(host).try_start(servers[0].port()) {
                    Ok(server) => servers.push(server),
                    Err(e) => {
                        last_error = e;
                        continue 'attempt;
                    }
                }
            }
            return servers;
        }
        panic!("no common port for {hosts:?}: {last_error}");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl AiosmtpdBuilder {
    /// Listen on `host` instead of 127.0.0.1 (another loopback address).
    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = Some(host);
        self
    }

    /// Answer the first `n` DATA transactions with `451 4.3.0`.
    pub fn tempfail_data(mut self, n: u32) -> Self {
        self.tempfail_data = n;
        self
    }

    /// Answer `550 5.1.1` to recipients that contain `substring`.
    pub fn reject_rcpt(mut self, substring: &str) -> Self {
        self.reject_rcpt.push(substring.to_string());
        self
    }

    /// Offer STARTTLS with this certificate, and require it.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Require AUTH (over TLS) with these credentials.
    pub fn auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_string(), password.to_string()));
        self
    }

    pub fn start(self) -> Aiosmtpd {
        self.try_start(0).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start(&self, port: u16) -> Result<Aiosmtpd, String> {
        let dir = super::dump_dir();
        let host = self.host.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let mut args: Vec<String> = vec![
            dir.path().display().to_string(),
            "--host".into(),
            host.to_string(),
            "--port".into(),
            port.to_string(),
            "--tempfail-data".into(),
            self.tempfail_data.to_string(),
        ];
        for substring in &self.reject_rcpt {
            args.extend(["--reject-rcpt".into(), substring.clone()]);
        }
        if let Some((cert, key)) = &self.tls {
            args.extend(["--tls".into(), cert.display().to_string()]);
            args.push(key.display().to_string());
        }
        if let Some((user, password)) = &self.auth {
            args.extend(["--auth".into(), format!("{user}:{password}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (child, port) = python_server("aiosmtpd_sink.py", &args)?;
        Ok(Aiosmtpd {
            _child: child,
            addr: SocketAddr::new(host, port),
            dir,
        })
    }
}

impl Downstream for Aiosmtpd {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn messages(&self) -> Vec<Delivered> {
        // `<n>.json` is renamed into place after `<n>.eml`: a visible .json is a whole message.
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read the sink's directory")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|json| {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&json).expect("read .json"))
                        .expect("the sink writes JSON");
                let mail_from = match meta["mail_from"].as_str().expect("mail_from") {
                    "<>" => String::new(),
                    s => s.to_string(),
                };
                let rcpt_tos = meta["rcpt_tos"]
                    .as_array()
                    .expect("rcpt_tos")
                    .iter()
                    .map(|r| r.as_str().expect("a recipient").to_string())
                    .collect();
                Delivered {
                    mail_from,
                    rcpt_tos,
                    data: std::fs::read(json.with_extension("eml")).expect("read .eml"),
                    meta,
                }
            })
            .collect()
    }
}
