//! The SMTP session: one state machine per connection, generic over any byte stream so tests
//! drive it through `tokio::io::duplex` with no sockets.
//!
//! Connection facts (peer, HELO, TLS, AUTH) live in [`ConnectionContext`]; sender and
//! recipients live in a [`Transaction`] that RSET and the end of DATA drop. Each verb has its
//! own module: `ehlo` (EHLO/HELO/STARTTLS), `auth`, `mail`, `rcpt`, `data` (DATA and BDAT).

mod auth;
mod authcheck;
mod data;
mod ehlo;
mod hooks;
mod hops;
mod io;
mod mail;
mod rcpt;
mod rejected;
mod store;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};
use wasmrelay_codec::command::{Address, Command, LineReader, MailParams, RcptParams, ReversePath};
use wasmrelay_codec::reply::{Enhanced, Reply};

pub use self::auth::{hash_password, Users};
use self::io::{Io, ReadError};
pub use self::store::{MessageStore, StoreFuture};
use crate::config::{LimitsConfig, ListenerConfig, ListenerRole, RelayConfig};
use crate::events::Events;
use crate::msgauth::Authenticator;
use crate::plugins::{ConnectionInfo, PluginHost, SessionPlugins};
use crate::spool::Origin;

/// Everything a session needs that outlives it, shared by all sessions of a listener.
pub struct SessionEnv {
    pub hostname: String,
    pub listener: ListenerConfig,
    pub relay: RelayConfig,
    pub limits: LimitsConfig,
    pub users: Users,
    /// Present when the listener has a certificate: STARTTLS (or implicit TLS for smtps).
    pub tls: Option<TlsAcceptor>,
    pub store: Arc<dyn MessageStore>,
    /// The policy chain; `None` when no plugins are configured.
    pub plugins: Option<Arc<PluginHost>>,
    /// SPF/DKIM/DMARC checks for listeners with `check_auth`; `None` checks nothing.
    pub authenticator: Option<Arc<Authenticator>>,
    /// The event log (received, rejected, queued).
    pub events: Events,
}

/// Facts about the connection, kept across transactions.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    /// A process-unique number for logs.
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub listener: String,
    pub helo: Option<String>,
    pub esmtp: bool,
    /// Protocol and cipher once TLS is up.
    pub tls: Option<String>,
    pub auth_user: Option<String>,
    /// The peer is in `relay.relay_networks`.
    pub trusted_network: bool,
    /// Failed commands so far, for `limits.max_errors`.
    pub errors: u32,
    /// Commands that moved no mail forward since the last accepted message, for
    /// `limits.max_junk_commands`.
    pub junk: u32,
}

impl ConnectionContext {
    /// May this session send to domains that are not ours?
    pub fn may_relay(&self) -> bool {
        self.trusted_network || self.auth_user.is_some()
    }

    /// What the envelope records about this session, for DKIM signing at delivery.
    pub fn origin(&self) -> Origin {
        if self.auth_user.is_some() {
            Origin::Authenticated
        } else if self.trusted_network {
            Origin::RelayNetwork
        } else {
            Origin::Outsider
        }
    }
}

/// The current mail transaction: from `MAIL` to the end of data or `RSET`.
#[derive(Debug)]
pub struct Transaction {
    pub from: ReversePath,
    pub params: MailParams,
    pub recipients: Vec<(Address, RcptParams)>,
    /// The accepted recipients as plugins see them (`local@domain`), lent to each hook and
    /// extended with the ones accepted since: a hook at every RCPT builds only the new one.
    pub(crate) mailboxes: Vec<String>,
    /// The reverse path as plugins see it, built at MAIL FROM and lent to each hook the
    /// same way.
    pub(crate) sender: Option<String>,
    /// Set by plugins; stored with the message for the delivery-stage hooks.
    pub annotations: Vec<(String, String)>,
    /// Bytes of a BDAT transfer in progress.
    pub(crate) chunks: Option<data::ChunkState>,
    /// The `transaction` span: MAIL, RCPT and DATA run in it; it ends with the transaction.
    pub(crate) span: tracing::Span,
}

/// What a command handler tells the loop.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
}

static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

/// Runs one SMTP session to its end. Never panics on peer input; I/O errors end the session.
pub async fn run<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    env: Arc<SessionEnv>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let id = SESSION_IDS.fetch_add(1, Ordering::Relaxed);
    let listener = env.listener.display_name();
    let span = tracing::info_span!("session", id, peer = %peer, listener = %listener);
    async move {
        let ctx = ConnectionContext {
            id,
            peer,
            local,
            listener,
            helo: None,
            esmtp: false,
            tls: None,
            auth_user: None,
            trusted_network: env.relay.is_relay_network(peer.ip()),
            errors: 0,
            junk: 0,
        };
        debug!("connected");
        let lines = LineReader::new(
            env.limits.max_command_line,
            env.listener.normalize_line_endings,
        );
        let plugins = env.plugins.as_ref().map(|host| host.session());
        let mut session = Session {
            io: Io::new(stream, env.limits.command_timeout),
            lines,
            plugins,
            shown_facts: None,
            ctx,
            txn: None,
            env,
            shutdown,
        };
        let outcome = session.serve().await;
        Box::pin(session.hook_closed()).await;
        debug!(?outcome, "closed");
    }
    .instrument(span)
    .await
}

struct Session<S> {
    io: Io<S>,
    lines: LineReader,
    /// This session's plugin instances; it keeps its chain across a reload.
    plugins: Option<SessionPlugins>,
    /// The connection facts plugins last saw (`hooks.rs`), reused while they hold.
    shown_facts: Option<Arc<ConnectionInfo>>,
    ctx: ConnectionContext,
    txn: Option<Transaction>,
    env: Arc<SessionEnv>,
    shutdown: CancellationToken,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn serve(&mut self) -> Result<(), ReadError> {
        if self.env.listener.role == ListenerRole::Smtps {
            let Some(acceptor) = self.env.tls.clone() else {
                return Ok(());
            };
            if !Box::pin(self.handshake(&acceptor)).await {
                return Ok(());
            }
        }
        if Box::pin(self.hook_connect()).await.is_some() {
            self.io.flush().await.ok();
            self.io.shutdown().await;
            return Ok(());
        }
        let greeting = Reply::plain(220, format!("{} ESMTP wasmrelay", self.env.hostname));
        self.io.reply(&greeting);
        loop {
            match self.lines.next_line(self.io.buffer()) {
                Ok(Some(line)) => {
                    if self.command(&line).await == Flow::Close {
                        break;
                    }
                }
                Ok(None) => {
                    if let Err(e) = self.wait_for_input().await {
                        if let Some(reply) = e.reply() {
                            self.io.reply(&reply);
                        }
                        self.io.flush().await.ok();
                        return Err(e);
                    }
                }
                Err(e) => {
                    if self.fail(e.reply()) == Flow::Close {
                        break;
                    }
                }
            }
        }
        self.io.flush().await.ok();
        self.io.shutdown().await;
        Ok(())
    }

    /// Flushes pending replies and reads more input. While no transaction is in progress a
    /// shutdown ends the session; a transaction in flight is allowed to finish first.
    async fn wait_for_input(&mut self) -> Result<(), ReadError> {
        let timeout = self.env.limits.command_timeout;
        if self.txn.is_none() && self.shutdown.is_cancelled() {
            return Err(ReadError::Shutdown);
        }
        self.io.flush().await?;
        if self.txn.is_none() {
            self.io.idle();
            let shutdown = self.shutdown.clone();
            tokio::select! {
                r = self.io.read_more(timeout) => r,
                _ = shutdown.cancelled() => Err(ReadError::Shutdown),
            }
        } else {
            self.io.read_more(timeout).await
        }
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let command = match super::codec::parse_command(line) {
            Ok(c) => c,
            Err(e) => return self.fail(e.reply()),
        };
        // A flood of commands that move no mail forward (NOOP, RSET, HELP, VRFY, EHLO) costs
        // replies the peer may never read; past the limit each counts as an error.
        let junk = matches!(
            command,
            Command::Ehlo { .. }
                | Command::Helo { .. }
                | Command::Rset
                | Command::Noop
                | Command::Help
                | Command::Vrfy { .. }
        );
        let flow = self.dispatch(command).await;
        if junk && flow == Flow::Continue {
            self.ctx.junk += 1;
            if self.ctx.junk > self.env.limits.max_junk_commands {
                return self.count_error();
            }
        }
        flow
    }

    /// Verbs that await (plugin hooks, TLS, the spool) run as futures of their own on the
    /// heap: inline, the largest of them would set the size of every session's task for its
    /// whole life, idle or not (`a_session_task_is_small` in server.rs holds it down).
    async fn dispatch(&mut self, command: Command) -> Flow {
        match command {
            Command::Ehlo { domain } => Box::pin(self.ehlo(domain, true)).await,
            Command::Helo { domain } => Box::pin(self.ehlo(domain, false)).await,
            Command::StartTls => Box::pin(self.starttls()).await,
            Command::Auth {
                mechanism,
                initial_response,
            } => Box::pin(self.auth(&mechanism, initial_response)).await,
            Command::Mail { from, params } => {
                let span = tracing::debug_span!("transaction", queue_id = tracing::field::Empty);
                Box::pin(self.mail(from, params).instrument(span)).await
            }
            Command::Rcpt { to, params } => {
                let span = self.txn_span();
                Box::pin(self.rcpt(to, params).instrument(span)).await
            }
            Command::Data => {
                let span = self.txn_span();
                Box::pin(self.data().instrument(span)).await
            }
            Command::Bdat { size, last } => {
                let span = self.txn_span();
                Box::pin(self.bdat(size, last).instrument(span)).await
            }
            Command::Rset => {
                self.end_transaction().await;
                self.ok(Reply::new(250, Enhanced(2, 0, 0), "OK"))
            }
            Command::Noop => self.ok(Reply::new(250, Enhanced(2, 0, 0), "OK")),
            Command::Quit => {
                self.io.reply(&Reply::new(
                    221,
                    Enhanced(2, 0, 0),
                    format!("{} closing connection", self.env.hostname),
                ));
                Flow::Close
            }
            Command::Vrfy { .. } => self.ok(Reply::new(
                252,
                Enhanced(2, 5, 2),
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Expn { .. } => {
                self.fail(Reply::new(502, Enhanced(5, 5, 1), "EXPN not available"))
            }
            Command::Help => self.ok(Reply::new(
                214,
                Enhanced(2, 0, 0),
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            )),
        }
    }

    /// The span of the transaction in progress, if any.
    fn txn_span(&self) -> tracing::Span {
        self.txn
            .as_ref()
            .map_or_else(tracing::Span::none, |t| t.span.clone())
    }

    /// Queues a positive reply.
    fn ok(&mut self, reply: Reply) -> Flow {
        self.io.reply(&reply);
        Flow::Continue
    }

    /// Queues a negative reply and counts it; too many errors end the session.
    fn fail(&mut self, reply: Reply) -> Flow {
        self.io.reply(&reply);
        self.count_error()
    }

    /// Counts an error; too many end the session with `421`.
    fn count_error(&mut self) -> Flow {
        self.ctx.errors += 1;
        if self.ctx.errors >= self.env.limits.max_errors {
            info!(errors = self.ctx.errors, "too many errors, closing");
            self.io.reply(&Reply::new(
                421,
                Enhanced(4, 7, 0),
                "Too many errors, closing connection",
            ));
            return Flow::Close;
        }
        Flow::Continue
    }

    /// TLS handshake with a deadline; on failure the connection is simply closed.
    async fn handshake(&mut self, acceptor: &TlsAcceptor) -> bool {
        let timeout = self.env.limits.tls_handshake_timeout;
        match tokio::time::timeout(timeout, self.io.upgrade(acceptor)).await {
            Ok(Ok(())) => {
                self.ctx.tls = self.io.tls_description();
                debug!(tls = ?self.ctx.tls, "TLS established");
                true
            }
            Ok(Err(e)) => {
                info!(error = %e, "TLS handshake failed");
                false
            }
            Err(_) => {
                info!("TLS handshake timed out");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
