//! The SMTP client: one connection to one next hop, reusable for several transactions.
//!
//! [`SmtpClient::connect`] does TCP, the greeting, EHLO (HELO if EHLO is refused), STARTTLS
//! per policy and AUTH; [`SmtpClient::send`] runs one transaction (pipelined when offered)
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

use super::wire::{encode_data, parse_reply, xtext};
use super::{Failure, Outcome};
use crate::config::delivery::{AuthConfig, TimeoutConfig, TlsPolicy};
use crate::smtp::reply::{Enhanced, Reply};

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
    /// Verify the server certificate when `tls` is `Require`.
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
            ClientError::Connect { addr, .. } => (Enhanced(4, 4, 1), Some(addr.to_string())),
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
        Failure {
            status,
            remote,
            diagnostic: self.to_string(),
            smtp_reply: false,
        }
    }

    /// Whether a fresh plaintext connection might succeed where this STARTTLS attempt failed.
    pub fn is_tls_failure(&self) -> bool {
        matches!(self, ClientError::Tls { .. })
    }
}

/// A remote reply as a failure: its own enhanced code, or a generic one of its class.
pub fn reply_failure(remote: &str, reply: &Reply) -> Failure {
    let class = if reply.is_permanent() { 5 } else { 4 };
    let status = match reply.enhanced {
        Some(e) if e.0 == class => e,
        _ => Enhanced(class, 0, 0),
    };
    Failure {
        status,
        remote: Some(remote.to_string()),
        diagnostic: reply.to_string(),
        smtp_reply: true,
    }
}

/// One recipient of a transaction, with its RFC 3461 parameters.
#[derive(Debug, Clone)]
pub struct TxRecipient<'a> {
    pub address: &'a str,
    pub notify: &'a [String],
    pub orcpt: Option<&'a str>,
}

/// One message transaction.
#[derive(Debug, Clone)]
pub struct Transaction<'a> {
    /// Envelope sender; empty for the null sender `<>`.
    pub mail_from: &'a str,
    pub recipients: Vec<TxRecipient<'a>>,
    /// The message as spooled (and signed); encoded for the wire while sending.
    pub message: &'a [u8],
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub ret_headers_only: bool,
    pub envid: Option<&'a str>,
}

/// An open SMTP session.
pub struct SmtpClient {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    caps: Capabilities,
    remote: String,
    tls: bool,
    timeouts: TimeoutConfig,
    transactions: usize,
}

impl SmtpClient {
    /// Connects to `addr` and readies a session: greeting, EHLO, STARTTLS per policy, AUTH.
    /// `server_name` is the host name used for SNI and certificate checks. Under
    /// opportunistic TLS a failed handshake is retried once in plaintext.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        opts: &ClientOptions,
    ) -> Result<SmtpClient, ClientError> {
        match Self::connect_once(addr, server_name, opts, opts.tls).await {
            Err(e) if e.is_tls_failure() && opts.tls == TlsPolicy::Opportunistic => {
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
        let tcp = tokio::time::timeout(opts.timeouts.connect.0, TcpStream::connect(addr))
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
            timeouts: opts.timeouts.clone(),
            transactions: 0,
        };
        let greeting = c.read_reply(c.timeouts.greeting.0, "greeting").await?;
        if greeting.code != 220 {
            return Err(c.reply_error("greeting", greeting));
        }
        c.ehlo(&opts.helo_name).await?;
        if tls != TlsPolicy::None {
            if c.caps.starttls {
                c = c
                    .starttls(server_name, tls == TlsPolicy::Require && opts.tls_verify)
                    .await?;
                c.ehlo(&opts.helo_name).await?;
            } else if tls == TlsPolicy::Require {
                return Err(ClientError::TlsUnavailable { remote: c.remote });
            }
        }
        if let Some(auth) = &opts.auth {
            c.auth(auth).await?;
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
        let tls = tokio::time::timeout(self.timeouts.command.0, connector.connect(name, self.io))
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
            timeouts: self.timeouts,
            transactions: self.transactions,
        })
    }

    fn remote_ip(&self) -> String {
        let inner = self.remote.split('[').nth(1).unwrap_or("");
        inner.split(']').next().unwrap_or("").to_string()
    }

    async fn auth(&mut self, auth: &AuthConfig) -> Result<(), ClientError> {
        if !self.tls && !auth.allow_plaintext {
            return Err(ClientError::Auth {
                remote: self.remote.clone(),
                why: "refusing to send credentials without TLS".into(),
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

    /// Runs one transaction. `Ok` carries one outcome per recipient, in order; `Err` means the
    /// session broke and no recipient of this transaction can be counted as delivered.
    pub async fn send(&mut self, tx: &Transaction<'_>) -> Result<Vec<Outcome>, ClientError> {
        self.transactions += 1;
        let n = tx.recipients.len();
        let all = |f: Failure| vec![Outcome::failed(f); n];
        if let Some(f) = self.precheck(tx) {
            return Ok(all(f));
        }
        let data = encode_data(tx.message);
        let mail = self.mail_command(tx, data.len());
        let rcpts: Vec<String> = tx.recipients.iter().map(|r| self.rcpt_command(r)).collect();

        let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
        let mail_reply;
        let mut accepted = 0;
        if self.caps.pipelining {
            let mut batch = mail.clone();
            for r in &rcpts {
                batch.push_str(r);
            }
            batch.push_str("DATA\r\n");
            self.write(&batch, "MAIL").await?;
            mail_reply = self.read_reply(self.timeouts.command.0, "MAIL").await?;
            for (i, _) in rcpts.iter().enumerate() {
                let r = self.read_reply(self.timeouts.command.0, "RCPT").await?;
                if mail_reply.code == 250 {
                    accepted += self.record_rcpt(&mut outcomes[i], r);
                }
            }
            let data_reply = self.read_reply(self.timeouts.data_init.0, "DATA").await?;
            if mail_reply.code != 250 {
                if data_reply.code == 354 {
                    self.finish_empty_data().await?;
                }
                return Ok(all(reply_failure(&self.remote, &mail_reply)));
            }
            if accepted == 0 {
                if data_reply.code == 354 {
                    self.finish_empty_data().await?;
                }
                return Ok(outcomes.into_iter().map(Option::unwrap).collect());
            }
            if data_reply.code != 354 {
                return Ok(self.fill(outcomes, &data_reply));
            }
        } else {
            self.write(&mail, "MAIL").await?;
            mail_reply = self.read_reply(self.timeouts.command.0, "MAIL").await?;
            if mail_reply.code != 250 {
                return Ok(all(reply_failure(&self.remote, &mail_reply)));
            }
            for (i, cmd) in rcpts.iter().enumerate() {
                self.write(cmd, "RCPT").await?;
                let r = self.read_reply(self.timeouts.command.0, "RCPT").await?;
                accepted += self.record_rcpt(&mut outcomes[i], r);
            }
            if accepted == 0 {
                return Ok(outcomes.into_iter().map(Option::unwrap).collect());
            }
            self.write("DATA\r\n", "DATA").await?;
            let data_reply = self.read_reply(self.timeouts.data_init.0, "DATA").await?;
            if data_reply.code != 354 {
                return Ok(self.fill(outcomes, &data_reply));
            }
        }

        for block in data.chunks(64 * 1024) {
            self.write_timed(block, self.timeouts.data_block.0, "message data")
                .await?;
        }
        self.flush(self.timeouts.data_block.0).await?;
        let done = self
            .read_reply(self.timeouts.data_final.0, "end of data")
            .await?;
        Ok(self.fill(outcomes, &done))
    }

    /// Refusals decided from the EHLO answer alone, before any command is sent.
    fn precheck(&self, tx: &Transaction<'_>) -> Option<Failure> {
        let local = |status, why: String| Failure {
            status,
            remote: Some(self.remote.clone()),
            diagnostic: why,
            smtp_reply: false,
        };
        if let Some(limit) = self.caps.size.filter(|&l| l > 0) {
            if tx.message.len() as u64 > limit {
                return Some(local(
                    Enhanced(5, 3, 4),
                    format!(
                        "message size {} exceeds the server's limit {limit}",
                        tx.message.len()
                    ),
                ));
            }
        }
        if tx.eight_bit && !self.caps.eight_bit_mime {
            return Some(local(
                Enhanced(5, 6, 3),
                "8-bit message, and the server does not offer 8BITMIME".into(),
            ));
        }
        let needs_utf8 = tx.smtputf8
            || !tx.mail_from.is_ascii()
            || tx.recipients.iter().any(|r| !r.address.is_ascii());
        if needs_utf8 && !self.caps.smtputf8 {
            return Some(local(
                Enhanced(5, 6, 7),
                "internationalized addresses, and the server does not offer SMTPUTF8".into(),
            ));
        }
        None
    }

    fn mail_command(&self, tx: &Transaction<'_>, encoded_len: usize) -> String {
        let mut cmd = format!("MAIL FROM:<{}>", tx.mail_from);
        if self.caps.size.is_some() {
            cmd.push_str(&format!(" SIZE={encoded_len}"));
        }
        if tx.eight_bit && self.caps.eight_bit_mime {
            cmd.push_str(" BODY=8BITMIME");
        }
        if self.caps.smtputf8 && (tx.smtputf8 || !tx.mail_from.is_ascii()) {
            cmd.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            if tx.ret_headers_only {
                cmd.push_str(" RET=HDRS");
            }
            if let Some(envid) = tx.envid {
                cmd.push_str(&format!(" ENVID={}", xtext(envid)));
            }
        }
        cmd.push_str("\r\n");
        cmd
    }

    fn rcpt_command(&self, r: &TxRecipient<'_>) -> String {
        let mut cmd = format!("RCPT TO:<{}>", r.address);
        if self.caps.dsn {
            if !r.notify.is_empty() {
                cmd.push_str(&format!(" NOTIFY={}", r.notify.join(",")));
            }
            if let Some(orcpt) = r.orcpt {
                let value = if orcpt.contains(';') {
                    orcpt.to_string()
                } else {
                    format!("rfc822;{orcpt}")
                };
                cmd.push_str(&format!(" ORCPT={}", xtext(&value)));
            }
        }
        cmd.push_str("\r\n");
        cmd
    }

    /// Records a RCPT reply; returns 1 if the recipient was accepted.
    fn record_rcpt(&self, slot: &mut Option<Outcome>, reply: Reply) -> usize {
        if reply.code == 250 || reply.code == 251 {
            1
        } else {
            *slot = Some(Outcome::failed(reply_failure(&self.remote, &reply)));
            0
        }
    }

    /// Gives every accepted recipient (those without an outcome yet) the outcome of `reply`.
    fn fill(&self, outcomes: Vec<Option<Outcome>>, reply: &Reply) -> Vec<Outcome> {
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    if reply.code == 250 {
                        Outcome::Delivered {
                            remote: self.remote.clone(),
                            reply: reply.to_string(),
                        }
                    } else {
                        Outcome::failed(reply_failure(&self.remote, reply))
                    }
                })
            })
            .collect()
    }

    /// A server that answered DATA with 354 although nothing was accepted gets an empty body.
    async fn finish_empty_data(&mut self) -> Result<(), ClientError> {
        self.write(".\r\n", "end of data").await?;
        self.read_reply(self.timeouts.data_final.0, "end of data")
            .await?;
        Ok(())
    }

    async fn command(&mut self, line: &str, phase: &'static str) -> Result<Reply, ClientError> {
        self.write(&format!("{line}\r\n"), phase).await?;
        self.read_reply(self.timeouts.command.0, phase).await
    }

    async fn write(&mut self, text: &str, phase: &'static str) -> Result<(), ClientError> {
        self.write_timed(text.as_bytes(), self.timeouts.command.0, phase)
            .await?;
        self.flush(self.timeouts.command.0).await
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
                Err(why) => return Err(self.protocol(&why)),
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Err(_) => return Err(self.timeout(phase)),
                Ok(Err(source)) => return Err(self.io_error(phase, source)),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                let eof =
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
                return Err(self.io_error(phase, eof));
            }
            self.buf.extend_from_slice(&chunk[..n]);
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
#[path = "client_tests.rs"]
mod tests;
