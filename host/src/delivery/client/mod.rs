//! The SMTP client: one connection to one next hop, reusable for several transactions.
//!
//! [`SmtpClient::connect`] (here) does TCP, the greeting, EHLO (HELO if EHLO is refused), STARTTLS
//! per policy and AUTH; [`SmtpClient::send`] (in `transaction`) runs one transaction (pipelined when offered)
//! and returns an [`Outcome`] per recipient. Every phase has its own timeout, so a stalled
//! server never holds a worker longer than RFC 5321 §4.5.3.2 allows.
//!
//! 8-bit and SMTPUTF8 messages to a server that does not offer 8BITMIME / SMTPUTF8 fail
//! permanently (5.6.3 / 5.6.7) rather than being downgraded: converting MIME would break
//! DKIM signatures made upstream, and RFC 6152 allows either.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

mod transaction;

pub use transaction::{Transaction, TxRecipient};
use wasmrelay_codec::reply::{parse_reply, Enhanced, Reply};

use super::Failure;
use crate::config::delivery::{AuthConfig, TimeoutConfig, TlsPolicy};

/// Any byte stream the client can speak over (TCP, TLS over TCP, an in-memory duplex).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to talk to one next hop.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Our name in EHLO/HELO.
    pub helo_name: String,
    /// STARTTLS policy.
    pub tls: TlsPolicy,
    /// Verify the server certificate when `tls` is `Require` or credentials are to be sent;
    /// `false` is a route's explicit opt-out.
    pub tls_verify: bool,
    /// AUTH credentials (smart hosts).
    pub auth: Option<AuthConfig>,
    /// Per-phase timeouts.
    pub timeouts: TimeoutConfig,
}

/// What the server offered in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub esmtp: bool,
    pub pipelining: bool,
    pub starttls: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    /// SIZE limit; `Some(0)` means offered without a limit.
    pub size: Option<u64>,
    /// AUTH mechanisms, upper-cased.
    pub auth: Vec<String>,
}

impl Capabilities {
    fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities {
            esmtp: true,
            ..Default::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => caps.auth = words.map(|w| w.to_ascii_uppercase()).collect(),
                _ => {}
            }
        }
        caps
    }
}

/// A failure of the connection or session itself (as opposed to a per-recipient reply).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{remote}: timed out waiting for {phase}")]
    Timeout { remote: String, phase: &'static str },
    #[error("{remote}: connection lost during {phase}: {source}")]
    Io {
        remote: String,
        phase: &'static str,
        source: std::io::Error,
    },
    #[error("{remote}: protocol error: {why}")]
    Protocol { remote: String, why: String },
    #[error("{remote}: TLS handshake failed: {why}")]
    Tls { remote: String, why: String },
    #[error("{remote}: STARTTLS is required but not offered")]
    TlsUnavailable { remote: String },
    #[error("{remote}: authentication failed: {why}")]
    Auth { remote: String, why: String },
    #[error("{remote} answered {phase} with {reply}")]
    Reply {
        remote: String,
        phase: &'static str,
        reply: Reply,
    },
}

impl ClientError {
    /// The DSN-ready classification: 5xx replies are permanent, everything else retries.
    pub fn to_failure(&self) -> Failure {
        let (status, remote) = match self {
            ClientError::Connect { .. } => (Enhanced(4, 4, 1), None),
            ClientError::Timeout { remote, .. } => (Enhanced(4, 4, 2), Some(remote.clone())),
            ClientError::Io { remote, .. } => (Enhanced(4, 4, 2), Some(remote.clone())),
            ClientError::Protocol { remote, .. } => (Enhanced(4, 5, 0), Some(remote.clone())),
            ClientError::Tls { remote, .. } => (Enhanced(4, 7, 5), Some(remote.clone())),
            ClientError::TlsUnavailable { remote } => (Enhanced(4, 7, 4), Some(remote.clone())),
            // A rejected login is our configuration's fault; keep the mail and retry.
            ClientError::Auth { remote, .. } => (Enhanced(4, 7, 8), Some(remote.clone())),
            ClientError::Reply { remote, reply, .. } => {
                return reply_failure(remote, reply);
            }
        };
        // The remote is reported separately; keep it out of the words.
        let text = self.to_string();
        let diagnostic = match &remote {
            Some(r) => text
                .strip_prefix(&format!("{r}: "))
                .unwrap_or(&text)
                .to_string(),
            None => text,
        };
        Failure {
            remote,
            ..Failure::local(status, diagnostic)
        }
    }

    /// Whether a fresh plaintext connection might succeed where this STARTTLS attempt failed.
    pub fn is_tls_failure(&self) -> bool {
        matches!(self, ClientError::Tls { .. })
    }
}

/// A remote reply as a failure: its own enhanced code, or a generic one of its class.
pub fn reply_failure(remote: &str, reply: &Reply) -> Failure {
    Failure::remote_reply(remote, reply)
}

/// An open SMTP session.
pub struct SmtpClient {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    caps: Capabilities,
    remote: String,
    tls: bool,
    /// TLS is up and the server's certificate chain and name were verified.
    verified: bool,
    timeouts: TimeoutConfig,
    transactions: usize,
}

impl SmtpClient {
    /// Connects to `addr` and readies a session: greeting, EHLO, STARTTLS per policy, AUTH.
    /// `server_name` is the host name used for SNI and certificate checks. Under
    /// opportunistic TLS a failed handshake is retried once in plaintext, unless credentials
    /// are to be sent (they never go in plaintext without `allow_plaintext`).
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        opts: &ClientOptions,
    ) -> Result<SmtpClient, ClientError> {
        let plaintext_ok = opts.auth.as_ref().is_none_or(|a| a.allow_plaintext);
        match Self::connect_once(addr, server_name, opts, opts.tls).await {
            Err(e)
                if e.is_tls_failure() && opts.tls == TlsPolicy::Opportunistic && plaintext_ok =>
            {
                tracing::info!(%addr, error = %e, "STARTTLS failed; retrying in plaintext");
                Self::connect_once(addr, server_name, opts, TlsPolicy::None).await
            }
            r => r,
        }
    }

    async fn connect_once(
        addr: SocketAddr,
        server_name: &str,
        opts: &ClientOptions,
        tls: TlsPolicy,
    ) -> Result<SmtpClient, ClientError> {
        let tcp = tokio::time::timeout(opts.timeouts.connect, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Connect {
                addr,
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            })?
            .map_err(|source| ClientError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let remote = format!("{server_name}[{}]:{}", addr.ip(), addr.port());
        Self::handshake(Box::new(tcp), remote, server_name, opts, tls).await
    }

    /// Runs greeting, EHLO, STARTTLS and AUTH over an already open stream.
    pub async fn handshake(
        io: Box<dyn Io>,
        remote: String,
        server_name: &str,
        opts: &ClientOptions,
        tls: TlsPolicy,
    ) -> Result<SmtpClient, ClientError> {
        let mut c = SmtpClient {
            io,
            buf: Vec::with_capacity(1024),
            caps: Capabilities::default(),
            remote,
            tls: false,
            verified: false,
            timeouts: opts.timeouts.clone(),
            transactions: 0,
        };
        let greeting = c.read_reply(c.timeouts.greeting, "greeting").await?;
        if greeting.code != 220 {
            return Err(c.reply_error("greeting", greeting));
        }
        c.ehlo(&opts.helo_name).await?;
        if tls != TlsPolicy::None {
            if c.caps.starttls {
                // Opportunistic TLS only encrypts (a failed check would just mean plaintext),
                // but credentials go only to a server whose certificate was verified.
                let verify = opts.tls_verify && (tls == TlsPolicy::Require || opts.auth.is_some());
                c = c.starttls(server_name, verify).await?;
                c.ehlo(&opts.helo_name).await?;
            } else if tls == TlsPolicy::Require {
                return Err(ClientError::TlsUnavailable { remote: c.remote });
            }
        }
        if let Some(auth) = &opts.auth {
            c.auth(auth, opts.tls_verify).await?;
        }
        Ok(c)
    }

    /// What the server offered (after STARTTLS, the second EHLO's answer).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// `name[ip]:port` of the peer.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Transactions attempted on this connection.
    pub fn transactions(&self) -> usize {
        self.transactions
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), ClientError> {
        let reply = self.command(&format!("EHLO {name}"), "EHLO").await?;
        if reply.code == 250 {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if reply.code == 421 || !reply.is_permanent() {
            return Err(self.reply_error("EHLO", reply));
        }
        let reply = self.command(&format!("HELO {name}"), "HELO").await?;
        if reply.code != 250 {
            return Err(self.reply_error("HELO", reply));
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    async fn starttls(
        mut self,
        server_name: &str,
        verify: bool,
    ) -> Result<SmtpClient, ClientError> {
        let reply = self.command("STARTTLS", "STARTTLS").await?;
        if reply.code != 220 {
            return Err(self.reply_error("STARTTLS", reply));
        }
        if !self.buf.is_empty() {
            // Bytes sent before the handshake would be read as if protected by it.
            return Err(self.protocol("data after the STARTTLS reply"));
        }
        let config = if verify {
            super::tls::verified()
        } else {
            super::tls::unverified()
        };
        let name = ServerName::try_from(server_name.to_string())
            .or_else(|_| ServerName::try_from(self.remote_ip()))
            .map_err(|e| ClientError::Tls {
                remote: self.remote.clone(),
                why: format!("invalid server name {server_name:?}: {e}"),
            })?;
        let connector = TlsConnector::from(Arc::clone(&config));
        let remote = self.remote.clone();
        let tls = tokio::time::timeout(self.timeouts.command, connector.connect(name, self.io))
            .await
            .map_err(|_| ClientError::Timeout {
                remote: remote.clone(),
                phase: "TLS handshake",
            })?
            .map_err(|e| ClientError::Tls {
                remote: remote.clone(),
                why: e.to_string(),
            })?;
        Ok(SmtpClient {
            io: Box::new(tls),
            buf: Vec::with_capacity(1024),
            caps: Capabilities::default(),
            remote,
            tls: true,
            verified: verify,
            timeouts: self.timeouts,
            transactions: self.transactions,
        })
    }

    fn remote_ip(&self) -> String {
        let inner = self.remote.split('[').nth(1).unwrap_or("");
        inner.split(']').next().unwrap_or("").to_string()
    }

    /// AUTH, only over TLS with a verified certificate, unless the route opted out: with
    /// `tls_verify = false` (any TLS) or `allow_plaintext` (none needed).
    async fn auth(&mut self, auth: &AuthConfig, verify: bool) -> Result<(), ClientError> {
        let protected = self.tls && (self.verified || !verify);
        if !protected && !auth.allow_plaintext {
            let why = if self.tls {
                "refusing to send credentials: the certificate was not verified"
            } else {
                "refusing to send credentials without TLS"
            };
            return Err(ClientError::Auth {
                remote: self.remote.clone(),
                why: why.into(),
            });
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let has = |m: &str| self.caps.auth.iter().any(|a| a == m);
        let reply = if has("PLAIN") {
            let token = b64.encode(format!("\0{}\0{}", auth.user, auth.password));
            self.command(&format!("AUTH PLAIN {token}"), "AUTH").await?
        } else if has("LOGIN") {
            let r = self.command("AUTH LOGIN", "AUTH").await?;
            if r.code != 334 {
                return Err(self.auth_error(r));
            }
            let r = self.command(&b64.encode(&auth.user), "AUTH").await?;
            if r.code != 334 {
                return Err(self.auth_error(r));
            }
            self.command(&b64.encode(&auth.password), "AUTH").await?
        } else {
            return Err(ClientError::Auth {
                remote: self.remote.clone(),
                why: format!("no supported mechanism in {:?}", self.caps.auth),
            });
        };
        if reply.code != 235 {
            return Err(self.auth_error(reply));
        }
        Ok(())
    }

    fn auth_error(&self, reply: Reply) -> ClientError {
        ClientError::Auth {
            remote: self.remote.clone(),
            why: reply.to_string(),
        }
    }

    /// `RSET`: readies a reused connection for the next transaction.
    pub async fn rset(&mut self) -> Result<(), ClientError> {
        let reply = self.command("RSET", "RSET").await?;
        if reply.code != 250 {
            return Err(self.reply_error("RSET", reply));
        }
        Ok(())
    }

    /// `QUIT`, best effort.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            if self.write("QUIT\r\n", "QUIT").await.is_ok() {
                let _ = self.read_reply(Duration::from_secs(5), "QUIT").await;
            }
            let _ = self.io.shutdown().await;
        })
        .await;
    }
}

impl SmtpClient {
    async fn command(&mut self, line: &str, phase: &'static str) -> Result<Reply, ClientError> {
        self.write(&format!("{line}\r\n"), phase).await?;
        self.read_reply(self.timeouts.command, phase).await
    }

    async fn write(&mut self, text: &str, phase: &'static str) -> Result<(), ClientError> {
        self.write_timed(text.as_bytes(), self.timeouts.command, phase)
            .await?;
        self.flush(self.timeouts.command).await
    }

    async fn write_timed(
        &mut self,
        bytes: &[u8],
        limit: Duration,
        phase: &'static str,
    ) -> Result<(), ClientError> {
        match tokio::time::timeout(limit, self.io.write_all(bytes)).await {
            Err(_) => Err(self.timeout(phase)),
            Ok(Err(source)) => Err(self.io_error(phase, source)),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn flush(&mut self, limit: Duration) -> Result<(), ClientError> {
        match tokio::time::timeout(limit, self.io.flush()).await {
            Err(_) => Err(self.timeout("flush")),
            Ok(Err(source)) => Err(self.io_error("flush", source)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads one complete reply within `limit`.
    async fn read_reply(
        &mut self,
        limit: Duration,
        phase: &'static str,
    ) -> Result<Reply, ClientError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(why) => return Err(self.protocol(&why.to_string())),
            }
            // Read into the buffer's spare room: a zeroed chunk on the stack cost a 4 KiB
            // memset per read and made this future 4 KiB larger. `parse_reply` bounds what
            // the buffer may hold before it has a reply, as before.
            self.buf.reserve(4096);
            let n = match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
                Err(_) => return Err(self.timeout(phase)),
                Ok(Err(source)) => return Err(self.io_error(phase, source)),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                let eof =
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
                return Err(self.io_error(phase, eof));
            }
        }
    }

    fn reply_error(&self, phase: &'static str, reply: Reply) -> ClientError {
        ClientError::Reply {
            remote: self.remote.clone(),
            phase,
            reply,
        }
    }

    fn timeout(&self, phase: &'static str) -> ClientError {
        ClientError::Timeout {
            remote: self.remote.clone(),
            phase,
        }
    }

    fn io_error(&self, phase: &'static str, source: std::io::Error) -> ClientError {
        ClientError::Io {
            remote: self.remote.clone(),
            phase,
            source,
        }
    }

    fn protocol(&self, why: &str) -> ClientError {
        ClientError::Protocol {
            remote: self.remote.clone(),
            why: why.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
