//! `wasmrelay plugin test`: runs one plugin in the real host, with the in-process state
//! backend and a static DNS table, against a scripted session, and prints every hook's
//! verdict. Plugin authors test without a server.
//!
//! A transcript is one directive per line; `#` starts a comment:
//!
//! ```text
//! dns 2.0.0.127.bl.example A 127.0.0.2   # seed the mocked resolver (A, AAAA, TXT, MX)
//! zone bl.example                        # a zone the plugin may query (its `dns_zones`)
//! connect 192.0.2.1 [port]               # new session from this client -> connect hook
//! tls TLSv1.3 TLS13_AES_128_GCM_SHA256   # facts only, no hook
//! helo mail.example.org                  # -> helo hook
//! auth alice                             # -> auth hook; sets the authenticated user (trusted)
//! mail <a@example.org>                   # -> mail-from hook; starts a transaction
//! rcpt <b@example.org>                   # -> rcpt hook; kept unless refused
//! data message.eml                       # -> data hook, message from a file (relative to
//!                                        #    the transcript); a message let through counts
//!                                        #    as queued ...
//! data                                   # ... or inline, up to a line with a single "."
//! Subject: hi
//!
//! body
//! .
//! queued Q123                            # -> queued hook
//! rset                                   # drops the transaction (what plugins charged
//!                                        #    for its message is given back)
//! closed                                 # -> closed hook (the connection ended)
//! pool transactional                     # declare a smart-host pool name routes may use
//! list suppression a@example.org         # declare a list (read/write for the plugin),
//!                                        #    optionally with members
//! route example.org [rcpt ...]           # -> route hook (delivery instance)
//! copy <b@example.org>                   # -> recipient-copy hook on the last message
//! result example.org delivered|deferred|bounced|held|dropped   # -> delivery-result hook
//! ```
//!
//! Output: one line per hook, `hook args -> verdict`, then annotations a hook set
//! (`  = name: value`), the headers of an edited message prefixed with `  | `, and at the
//! end the plugin's counters.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmrelay_codec::message::header_end;

use super::{
    ConnectionInfo, DeliveryPlugins, DeliveryReport, DeliveryStatus, DnsType, EnvelopeInfo,
    PluginHost, PluginHostOptions, PluginLoadError, RecipientInfo, RouteDecision, SessionPlugins,
    StaticDns, TlsInfo, TransactionInfo, Verdict, TRUSTED,
};
use crate::config::lists::ListConfig;
use crate::config::plugins::PluginConfig;
use crate::spool::MessageBytes;
use crate::state::{InProcessBackend, StateBackend};

/// Why a transcript could not run.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error(transparent)]
    Load(#[from] PluginLoadError),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("invalid --config: {0}")]
    Config(String),
    #[error("transcript line {line}: {message}")]
    Script { line: usize, message: String },
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// What a run saw, for callers that want an exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranscriptSummary {
    pub hooks: usize,
    pub refusals: usize,
    pub plugin_errors: u64,
}

/// `--config`: the path of a TOML file, or TOML text (`key = "v"` lines or an inline
/// table `{ key = "v" }`).
pub fn parse_config_arg(arg: &str) -> Result<toml::Table, TranscriptError> {
    let path = Path::new(arg);
    let text = if !arg.contains(['=', '{', '\n']) && path.is_file() {
        std::fs::read_to_string(path).map_err(|e| TranscriptError::Read(path.to_path_buf(), e))?
    } else {
        arg.to_string()
    };
    let trimmed = text.trim();
    let parsed = if trimmed.starts_with('{') {
        toml::from_str::<toml::Table>(&format!("config = {trimmed}")).map(|mut t| {
            match t.remove("config") {
                Some(toml::Value::Table(inner)) => inner,
                _ => toml::Table::new(),
            }
        })
    } else {
        toml::from_str::<toml::Table>(trimmed)
    };
    parsed.map_err(|e| TranscriptError::Config(e.message().to_string()))
}

/// Runs `transcript` (a file) against the component at `plugin` configured with `config`
/// and writes the report to `out`. `wasmrelay plugin test PLUGIN.wasm --config TABLE
/// --transcript FILE` is `run_transcript(PLUGIN, &parse_config_arg(TABLE)?, FILE, stdout)`.
pub async fn run_transcript(
    plugin: &Path,
    config: &toml::Table,
    transcript: &Path,
    out: &mut (dyn Write + Send),
) -> Result<TranscriptSummary, TranscriptError> {
    let script = std::fs::read_to_string(transcript)
        .map_err(|e| TranscriptError::Read(transcript.to_path_buf(), e))?;
    let base = transcript.parent().unwrap_or(Path::new("."));
    // `builtin:NAME` names a plugin bundled in the binary (unless such a file exists).
    let builtin = plugin
        .to_str()
        .and_then(|p| p.strip_prefix("builtin:"))
        .filter(|_| !plugin.exists());
    let plugin_config = PluginConfig {
        path: match builtin {
            Some(_) => PathBuf::new(),
            None => plugin.to_path_buf(),
        },
        builtin: builtin.map(str::to_string),
        config: config.clone(),
        ..PluginConfig::default()
    };
    run_script(plugin_config, &script, base, out).await
}

/// [`run_transcript`] with the script as text; `base` resolves `data FILE`.
pub async fn run_script(
    mut plugin: PluginConfig,
    script: &str,
    base: &Path,
    out: &mut (dyn Write + Send),
) -> Result<TranscriptSummary, TranscriptError> {
    let lines: Vec<&str> = script.lines().collect();
    // DNS seeds, pools and lists apply to the whole run, wherever they appear.
    let mut dns = StaticDns::new();
    let mut pools = Vec::new();
    let mut lists = Vec::new();
    let backend = Arc::new(InProcessBackend::new());
    for (n, line) in lines.iter().enumerate() {
        let words: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if words.first() == Some(&"zone") {
            let [_, zone] = words.as_slice() else {
                return Err(script_err(n, "usage: zone NAME"));
            };
            plugin.dns_zones.push(zone.to_string());
        }
        if words.first() == Some(&"pool") {
            let [_, name] = words.as_slice() else {
                return Err(script_err(n, "usage: pool NAME"));
            };
            pools.push(name.to_string());
        }
        if words.first() == Some(&"list") {
            let [_, name, members @ ..] = words.as_slice() else {
                return Err(script_err(n, "usage: list NAME [MEMBER ...]"));
            };
            let decl = ListConfig {
                name: name.to_string(),
                writers: vec!["*".into()],
                ..ListConfig::default()
            };
            for m in members {
                let added = backend.list_add(name, m, None, decl.max_members).await;
                added.map_err(|e| script_err(n, &e.to_string()))?;
            }
            lists.push(decl);
        }
        if words.first() == Some(&"dns") {
            let [_, name, rtype, answer @ ..] = words.as_slice() else {
                return Err(script_err(n, "usage: dns NAME A|AAAA|TXT|MX ANSWER"));
            };
            let rtype = match rtype.to_ascii_uppercase().as_str() {
                "A" => DnsType::A,
                "AAAA" => DnsType::Aaaa,
                "TXT" => DnsType::Txt,
                "MX" => DnsType::Mx,
                other => return Err(script_err(n, &format!("unknown record type {other}"))),
            };
            dns.insert(name, rtype, answer.join(" "));
        }
    }
    let options = PluginHostOptions {
        dns: Some(Arc::new(dns)),
        max_instances: 16,
        backend,
        lists,
        pools,
        ..PluginHostOptions::default()
    };
    let host = PluginHost::load(std::slice::from_ref(&plugin), options).await?;
    writeln!(
        out,
        "plugin {} handles: {}",
        host.names()[0],
        hook_list(&host)
    )?;
    let mut run = Run {
        host: host.clone(),
        session: None,
        conn: Arc::new(ConnectionInfo::new(
            "transcript",
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:25".parse().unwrap(),
        )),
        tx: TransactionInfo::default(),
        message: None,
        delivery: None,
        summary: TranscriptSummary::default(),
        sessions: 0,
        left_open: Vec::new(),
    };
    let mut n = 0;
    while n < lines.len() {
        let line = lines[n].split('#').next().unwrap_or("").trim();
        let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match verb.to_ascii_lowercase().as_str() {
            "" | "dns" | "zone" | "pool" | "list" => {}
            "data" => {
                let message = if rest.is_empty() {
                    let mut body = Vec::new();
                    n += 1;
                    while n < lines.len() && lines[n] != "." {
                        body.extend_from_slice(
                            lines[n].strip_prefix('.').unwrap_or(lines[n]).as_bytes(),
                        );
                        body.extend_from_slice(b"\r\n");
                        n += 1;
                    }
                    if n == lines.len() {
                        return Err(script_err(n - 1, "inline data without a closing \".\""));
                    }
                    body
                } else {
                    let path = base.join(rest);
                    std::fs::read(&path).map_err(|e| TranscriptError::Read(path, e))?
                };
                run.data(message, out).await?;
            }
            other => run
                .step(other, rest, out)
                .await
                .map_err(|m| script_err(n, &m))??,
        }
        n += 1;
    }
    let metrics = host.metrics().remove(0);
    run.summary.plugin_errors = metrics.errors();
    writeln!(
        out,
        "done: {} hooks, {} refusals, {} plugin errors, {} instances",
        run.summary.hooks,
        run.summary.refusals,
        metrics.errors(),
        metrics.instantiations
    )?;
    Ok(run.summary)
}

fn script_err(line: usize, message: &str) -> TranscriptError {
    TranscriptError::Script {
        line: line + 1,
        message: message.to_string(),
    }
}

fn hook_list(host: &PluginHost) -> String {
    let hooks: Vec<&str> = host.hooks_of(0).iter().map(|h| h.name()).collect();
    if hooks.is_empty() {
        "none".into()
    } else {
        hooks.join(", ")
    }
}

/// `<a@b>` or `a@b` to the bare path the hooks get.
fn path_arg(s: &str) -> String {
    s.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

fn show(v: &Verdict) -> String {
    match v {
        Verdict::Continue => "continue".into(),
        Verdict::Accept => "accept".into(),
        Verdict::Reject(r) => format!("reject {r}"),
        Verdict::Tempfail(r) => format!("tempfail {r}"),
        Verdict::Disconnect(r) => format!("disconnect {r}"),
    }
}

fn show_route(d: &RouteDecision) -> String {
    match d {
        RouteDecision::Continue => "continue (relay routing)".into(),
        RouteDecision::Pool(name) => format!("pool {name}"),
        RouteDecision::Mx(tls) => format!("mx tls={tls:?}"),
        RouteDecision::Hold(r) => format!("hold ({r})"),
        RouteDecision::Drop(r) => format!("drop ({r})"),
        RouteDecision::Defer(r) => format!("defer {r}"),
        RouteDecision::Bounce(r) => format!("bounce {r}"),
    }
}

/// The scripted session's state.
struct Run {
    host: Arc<PluginHost>,
    session: Option<SessionPlugins>,
    conn: Arc<ConnectionInfo>,
    tx: TransactionInfo,
    /// The last message the data hook saw (after its edits), for `copy`: shared, as the
    /// spool hands it to a delivery batch, so copies of it are recognised as one message.
    message: Option<MessageBytes>,
    /// One delivery batch's instances for `route`, `copy` and `result`.
    delivery: Option<DeliveryPlugins>,
    summary: TranscriptSummary,
    sessions: usize,
    /// Sessions a later `connect` left open: they keep their instances, as open connections
    /// do in the relay, so a pooled instance is never handed to two sessions at once.
    left_open: Vec<SessionPlugins>,
}

impl Run {
    fn session(&mut self) -> &mut SessionPlugins {
        let host = &self.host;
        self.session.get_or_insert_with(|| host.session())
    }

    fn delivery(&mut self) -> &mut DeliveryPlugins {
        let host = &self.host;
        self.delivery.get_or_insert_with(|| host.delivery())
    }

    fn envelope(&self) -> Arc<EnvelopeInfo> {
        Arc::new(EnvelopeInfo {
            queue_id: "transcript".into(),
            mail_from: self.tx.mail_from.clone().unwrap_or_default(),
            attempt: 1,
            size: self.message.as_ref().map_or(0, |m| m.len() as u64),
            received_ms: 0,
            attributes: self
                .conn
                .auth_user
                .iter()
                .map(|u| ("auth-user".to_string(), u.clone()))
                .collect(),
            annotations: self.tx.annotations.clone(),
        })
    }

    /// Prints the annotations a hook added or changed.
    fn show_annotations(
        &self,
        before: &[(String, String)],
        out: &mut (dyn Write + Send),
    ) -> std::io::Result<()> {
        for (k, v) in &self.tx.annotations {
            if !before.iter().any(|(bk, bv)| bk == k && bv == v) {
                writeln!(out, "  = {k}: {v}")?;
            }
        }
        Ok(())
    }

    fn record(
        &mut self,
        what: &str,
        v: &Verdict,
        out: &mut (dyn Write + Send),
    ) -> std::io::Result<()> {
        self.summary.hooks += 1;
        if matches!(
            v,
            Verdict::Reject(_) | Verdict::Tempfail(_) | Verdict::Disconnect(_)
        ) {
            self.summary.refusals += 1;
        }
        writeln!(out, "{what} -> {}", show(v))
    }

    /// One directive other than `data`/`dns`; the outer error is a script mistake.
    async fn step(
        &mut self,
        verb: &str,
        rest: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<Result<(), TranscriptError>, String> {
        let result = match verb {
            "connect" => {
                let mut words = rest.split_whitespace();
                let ip: std::net::IpAddr = words
                    .next()
                    .ok_or("usage: connect IP [PORT]")?
                    .parse()
                    .map_err(|_| "connect: not an IP address")?;
                let port: u16 = words
                    .next()
                    .map_or(Ok(40000), str::parse)
                    .map_err(|_| "connect: bad port")?;
                self.sessions += 1;
                self.conn = Arc::new(ConnectionInfo::new(
                    format!("transcript-{}", self.sessions),
                    (ip, port).into(),
                    "127.0.0.1:25".parse().expect("literal address"),
                ));
                self.tx = TransactionInfo::default();
                self.message = None;
                if let Some(open) = self.session.replace(self.host.session()) {
                    self.left_open.push(open);
                }
                let conn = self.conn.clone();
                let v = self.session().connect(&conn).await;
                self.record(&format!("connect {ip}"), &v, out)
            }
            "tls" => {
                let mut words = rest.split_whitespace();
                Arc::make_mut(&mut self.conn).tls = Some(TlsInfo {
                    protocol: words.next().unwrap_or("TLSv1.3").to_string(),
                    cipher: words
                        .next()
                        .unwrap_or("TLS13_AES_128_GCM_SHA256")
                        .to_string(),
                });
                Ok(())
            }
            "helo" | "ehlo" => {
                Arc::make_mut(&mut self.conn).helo = Some(rest.to_string());
                let conn = self.conn.clone();
                let v = self.session().helo(&conn).await;
                self.record(&format!("helo {rest}"), &v, out)
            }
            "auth" => {
                let conn = Arc::make_mut(&mut self.conn);
                conn.auth_user = Some(rest.to_string());
                // As in a real session: an authenticated client may relay.
                conn.attributes.retain(|(k, _)| *k != TRUSTED);
                conn.attributes.push((TRUSTED, "yes"));
                let conn = self.conn.clone();
                let v = self.session().auth(&conn, rest).await;
                self.record(&format!("auth {rest}"), &v, out)
            }
            "mail" => {
                let mut tx = TransactionInfo {
                    mail_from: Some(path_arg(rest)),
                    ..TransactionInfo::default()
                };
                let conn = self.conn.clone();
                let v = self.session().mail_from(&conn, &mut tx).await;
                self.tx = tx;
                self.message = None;
                self.record(&format!("mail <{}>", path_arg(rest)), &v, out)
                    .and_then(|()| self.show_annotations(&[], out))
            }
            "rcpt" => {
                let rcpt = path_arg(rest);
                let (conn, mut tx) = (self.conn.clone(), self.tx.clone());
                let v = self.session().rcpt(&conn, &mut tx, &rcpt).await;
                let before = std::mem::replace(&mut self.tx.annotations, tx.annotations);
                if matches!(v, Verdict::Continue | Verdict::Accept) {
                    self.tx.recipients.push(rcpt.clone());
                }
                self.record(&format!("rcpt <{rcpt}>"), &v, out)
                    .and_then(|()| self.show_annotations(&before, out))
            }
            "queued" => {
                let (conn, mut tx) = (self.conn.clone(), self.tx.clone());
                tx.queue_id = Some(rest.to_string());
                self.session().queued(&conn, &tx, rest).await;
                self.summary.hooks += 1;
                writeln!(out, "queued {rest} -> done")
            }
            "closed" => {
                let conn = self.conn.clone();
                self.session().closed(&conn).await;
                self.session = None;
                self.summary.hooks += 1;
                writeln!(out, "closed -> done")
            }
            "rset" => {
                self.tx = TransactionInfo::default();
                self.message = None;
                if let Some(session) = self.session.as_mut() {
                    session.transaction_ended().await;
                }
                Ok(())
            }
            "route" => {
                let mut words = rest.split_whitespace();
                let domain = words
                    .next()
                    .ok_or("usage: route DOMAIN [RCPT ...]")?
                    .to_string();
                let mut recipients: Vec<String> = words.map(path_arg).collect();
                if recipients.is_empty() {
                    recipients = self.tx.recipients.clone();
                }
                let env = self.envelope();
                let d = self.delivery().route(&env, &domain, &recipients).await;
                self.summary.hooks += 1;
                writeln!(out, "route {domain} -> {}", show_route(&d))
            }
            "copy" => {
                let rcpt = path_arg(rest);
                if rcpt.is_empty() {
                    return Err("usage: copy RCPT".into());
                }
                let Some(message) = self.message.clone() else {
                    return Err("copy: no message yet (use data first)".into());
                };
                let env = self.envelope();
                let info = || RecipientInfo {
                    address: rcpt.clone(),
                    ..RecipientInfo::default()
                };
                let (v, edited) = self
                    .delivery()
                    .recipient_copy(|| env.clone(), info, &message)
                    .await;
                self.record(&format!("copy <{rcpt}>"), &v, out)
                    .and_then(|()| match edited {
                        Some(copy) => show_message(&copy, out),
                        None => Ok(()),
                    })
            }
            "result" => {
                let mut words = rest.split_whitespace();
                let domain = words
                    .next()
                    .ok_or("usage: result DOMAIN delivered|deferred|bounced")?;
                let status = match words.next().unwrap_or("delivered") {
                    "delivered" => DeliveryStatus::Delivered,
                    "deferred" => DeliveryStatus::Deferred,
                    "bounced" => DeliveryStatus::Bounced,
                    "held" => DeliveryStatus::Held,
                    "dropped" => DeliveryStatus::Dropped,
                    other => return Err(format!("result: unknown status {other}")),
                };
                let report = DeliveryReport {
                    domain: domain.to_string(),
                    recipients: self.tx.recipients.clone(),
                    status,
                    remote_host: None,
                    reply: None,
                };
                let env = self.envelope();
                self.delivery().delivery_result(&env, &report).await;
                self.summary.hooks += 1;
                writeln!(out, "result {domain} {status:?} -> done")
            }
            other => return Err(format!("unknown directive {other:?}")),
        };
        Ok(result.map_err(TranscriptError::from))
    }

    async fn data(
        &mut self,
        mut message: Vec<u8>,
        out: &mut (dyn Write + Send),
    ) -> Result<(), TranscriptError> {
        let before = message.clone();
        let (conn, mut tx) = (self.conn.clone(), self.tx.clone());
        let v = self.session().data(&conn, &mut tx, &mut message).await;
        if !v.refuses() {
            // As if the relay queued it: what plugins charged for it stays.
            self.session().message_queued();
        }
        let annotations_before = std::mem::replace(&mut self.tx.annotations, tx.annotations);
        let edited = message != before;
        let what = format!(
            "data ({} bytes{})",
            before.len(),
            if edited { ", edited" } else { "" }
        );
        self.record(&what, &v, out)?;
        self.show_annotations(&annotations_before, out)?;
        if edited {
            show_message(&message, out)?;
        }
        self.message = Some(message.into());
        Ok(())
    }
}

/// The header section of an edited message and its body size, prefixed with `  | `.
fn show_message(message: &[u8], out: &mut (dyn Write + Send)) -> std::io::Result<()> {
    let (fields, body) = match header_end(message) {
        Some(end) => (&message[..end.fields], &message[end.body..]),
        None => (message, &[][..]),
    };
    for line in String::from_utf8_lossy(fields).lines() {
        writeln!(out, "  | {line}")?;
    }
    writeln!(out, "  | ({} body bytes)", body.len())
}
