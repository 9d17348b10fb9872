//! Session tests without sockets: a duplex stream, an in-memory store, and `cmd(line, code)`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{ListenerConfig, UserConfig};
use crate::spool::{Envelope, SpoolError};

/// Keeps what it stores; messages over [`SPILL_AT`] octets (with our `Received:`, every one
/// but the tiniest) arrive through a spill file in a directory of its own.
struct MemStore {
    messages: Mutex<Vec<(Envelope, Vec<u8>)>>,
    next: AtomicU64,
    fail: AtomicBool,
    incoming: tempfile::TempDir,
    /// Messages that reached `store` mapped from a spill file.
    mapped: AtomicU64,
}

const SPILL_AT: usize = 300;

impl Default for MemStore {
    fn default() -> Self {
        MemStore {
            messages: Mutex::default(),
            next: AtomicU64::new(0),
            fail: AtomicBool::new(false),
            incoming: tempfile::tempdir().unwrap(),
            mapped: AtomicU64::new(0),
        }
    }
}

impl MessageStore for MemStore {
    fn new_id(&self) -> crate::spool::MessageId {
        crate::spool::MessageId(format!("M{}", self.next.fetch_add(1, Ordering::Relaxed)))
    }

    fn store<'a>(
        &'a self,
        envelope: &'a Envelope,
        message: crate::spool::MessageBytes,
    ) -> StoreFuture<'a> {
        Box::pin(async move {
            if self.fail.load(Ordering::Relaxed) {
                return Err(SpoolError::Write {
                    path: "spool".into(),
                    source: std::io::Error::other("disk full"),
                });
            }
            if message.is_mapped() {
                self.mapped.fetch_add(1, Ordering::Relaxed);
            }
            self.messages
                .lock()
                .unwrap()
                .push((envelope.clone(), message.to_vec()));
            Ok(())
        })
    }

    fn spill(&self) -> crate::smtp::incoming::Spill {
        crate::smtp::incoming::Spill::to_dir(self.incoming.path().to_path_buf(), SPILL_AT)
    }
}

struct Options {
    listener: ListenerConfig,
    relay: RelayConfig,
    limits: LimitsConfig,
    users: Vec<UserConfig>,
    peer: SocketAddr,
    events: crate::events::Events,
    plugins: Option<Arc<crate::plugins::PluginHost>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listener: ListenerConfig {
                address: "127.0.0.1:25".parse().unwrap(),
                role: ListenerRole::Relay,
                name: None,
                tls_cert: None,
                tls_key: None,
                require_auth: None,
                allow_plaintext_auth: false,
                normalize_line_endings: false,
                long_lines: crate::config::LongLines::Refuse,
                check_auth: None,
                dmarc_reject: false,
            },
            relay: RelayConfig {
                local_domains: vec!["example.com".into(), "*.example.net".into()],
                relay_networks: vec![],
            },
            limits: LimitsConfig::default(),
            users: vec![],
            peer: "192.0.2.10:40000".parse().unwrap(),
            events: Default::default(),
            plugins: None,
        }
    }
}

struct Client {
    stream: DuplexStream,
    store: Arc<MemStore>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    pending: Vec<u8>,
}

fn start(opts: Options) -> Client {
    let store = Arc::new(MemStore::default());
    let env = Arc::new(SessionEnv {
        hostname: "mx.test".into(),
        listener: opts.listener,
        relay: opts.relay,
        users: Users::from_config(
            &opts.users,
            crate::smtp::auth_guard::AuthGuard::new(&opts.limits),
        ),
        limits: opts.limits,
        tls: None,
        store: store.clone(),
        plugins: opts.plugins,
        authenticator: None,
        events: opts.events,
    });
    let (client, server) = tokio::io::duplex(1 << 20);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(
        server,
        opts.peer,
        "127.0.0.1:25".parse().unwrap(),
        env,
        shutdown.clone(),
    ));
    Client {
        stream: client,
        store,
        shutdown,
        task,
        pending: Vec::new(),
    }
}

impl Client {
    /// Reads one complete (possibly multi-line) reply.
    async fn reply(&mut self) -> String {
        let mut out = String::new();
        loop {
            while let Some(pos) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.pending.drain(..pos + 2).collect();
                let line = String::from_utf8(line).unwrap();
                out.push_str(&line);
                if line.as_bytes().get(3) == Some(&b' ') || line.len() == 5 {
                    return out;
                }
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(600), self.stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            if n == 0 {
                return out;
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends one command and checks the reply starts with `expect`.
    async fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        let reply = self.reply().await;
        assert!(
            reply.starts_with(expect),
            "{line:?}: expected {expect}, got {reply:?}"
        );
        reply
    }

    async fn greeted(mut self) -> Self {
        let greeting = self.reply().await;
        assert!(greeting.starts_with("220 mx.test ESMTP"), "{greeting}");
        self
    }

    async fn ehlo(mut self) -> Self {
        self = self.greeted().await;
        self.cmd("EHLO client.test", "250").await;
        self
    }

    fn messages(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.store.messages.lock().unwrap().clone()
    }

    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(600), self.stream.read(&mut buf)).await,
            Ok(Ok(0))
        )
    }
}

fn trusted() -> Options {
    Options {
        relay: RelayConfig {
            local_domains: vec![],
            relay_networks: vec!["192.0.2.0/24".parse().unwrap()],
        },
        ..Default::default()
    }
}

fn user(name: &str, password: &str) -> UserConfig {
    UserConfig {
        name: name.into(),
        password_hash: hash_password(password).unwrap(),
    }
}

#[tokio::test]
async fn ehlo_advertises_extensions() {
    let mut c = start(Options::default()).greeted().await;
    let reply = c.cmd("EHLO client.test", "250-mx.test").await;
    for ext in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
    ] {
        assert!(reply.contains(ext), "{ext} missing from {reply}");
    }
    assert!(!reply.contains("STARTTLS"), "no certificate, no STARTTLS");
    assert!(!reply.contains("AUTH"), "no users, no AUTH");
    c.cmd("HELO client.test", "250 mx.test").await;
    c.cmd("QUIT", "221 2.0.0").await;
    assert!(c.closed().await);
}

#[tokio::test]
async fn simple_commands() {
    let mut c = start(Options::default()).ehlo().await;
    c.cmd("NOOP", "250 2.0.0").await;
    c.cmd("VRFY someone", "252 2.5.2").await;
    c.cmd("EXPN list", "502 5.5.1").await;
    c.cmd("HELP", "214").await;
    c.cmd("RSET", "250 2.0.0").await;
    c.cmd("FOO bar", "500 5.5.1").await;
    c.cmd("STARTTLS", "502 5.5.1").await;
    c.cmd("AUTH PLAIN", "502 5.5.1").await;
}

#[tokio::test]
async fn sequence_errors() {
    let mut c = start(Options::default()).greeted().await;
    c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1").await;
    c.cmd("EHLO client.test", "250").await;
    c.cmd("RCPT TO:<b@example.com>", "503 5.5.1").await;
    c.cmd("DATA", "503 5.5.1").await;
    c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0").await;
    c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1").await;
    c.cmd("DATA", "554 5.5.1").await;
    c.cmd("RSET", "250").await;
    c.cmd("RCPT TO:<b@example.com>", "503 5.5.1").await;
}

#[tokio::test]
async fn accepts_mail_for_local_domain_and_stores_it() {
    let mut c = start(Options::default()).ehlo().await;
    c.cmd("MAIL FROM:<sender@example.org> SIZE=100", "250 2.1.0")
        .await;
    c.cmd("RCPT TO:<user@example.com>", "250 2.1.5").await;
    c.cmd("RCPT TO:<other@sub.example.net>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    let reply = c
        .cmd(
            "Subject: hi\r\n\r\nHello\r\n..leading dot\r\n.",
            "250 2.0.0 OK: queued as M",
        )
        .await;
    let messages = c.messages();
    assert_eq!(messages.len(), 1);
    let (env, bytes) = &messages[0];
    assert!(reply.contains(&env.id.0));
    assert_eq!(env.mail_from.as_deref(), Some("sender@example.org"));
    let rcpts: Vec<_> = env.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, ["user@example.com", "other@sub.example.net"]);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with(
            "Received: from client.test ([192.0.2.10])\r\n\tby mx.test (wasmrelay) with ESMTP id "
        ),
        "{text}"
    );
    assert!(
        text.ends_with("Subject: hi\r\n\r\nHello\r\n.leading dot\r\n"),
        "{text:?}"
    );
    assert_eq!(env.size, bytes.len() as u64);
    // The transaction is over: a new one can start.
    c.cmd("MAIL FROM:<>", "250").await;
}

#[tokio::test]
async fn never_an_open_relay() {
    let mut c = start(Options::default()).ehlo().await;
    c.cmd("MAIL FROM:<spammer@example.org>", "250").await;
    for probe in [
        "RCPT TO:<victim@foreign.example>",
        "RCPT TO:<victim%foreign.example@example.com>",
        "RCPT TO:<foreign.example!victim@example.com>",
        "RCPT TO:<\"victim@foreign.example\"@example.com>",
        "RCPT TO:<@example.com:victim@foreign.example>",
        "RCPT TO:<victim@[192.0.2.1]>",
        "RCPT TO:<victim@example.com.foreign.example>",
        "RCPT TO:<victim@notexample.com>",
    ] {
        c.cmd(probe, "554 5.7.1").await;
    }
    c.cmd("RCPT TO:<victim@foreign.example@example.com>", "553 5.1.3")
        .await;
    c.cmd("DATA", "554 5.5.1").await;
    assert!(c.messages().is_empty());
}

#[tokio::test]
async fn trusted_network_may_relay() {
    let mut c = start(trusted()).ehlo().await;
    c.cmd("MAIL FROM:<app@example.org>", "250").await;
    c.cmd("RCPT TO:<someone@foreign.example>", "250 2.1.5")
        .await;
}

#[tokio::test]
async fn postmaster_is_always_accepted() {
    let mut c = start(Options::default()).ehlo().await;
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<Postmaster>", "250 2.1.5").await;
    c.cmd("RCPT TO:<postmaster@mx.test>", "250 2.1.5").await;
    c.cmd("RCPT TO:<other@mx.test>", "554 5.7.1").await;
}

#[tokio::test]
async fn size_limits() {
    let mut opts = Options::default();
    opts.limits.max_message_size = 70_000;
    let mut c = start(opts).ehlo().await;
    c.cmd("MAIL FROM:<a@example.org> SIZE=70001", "552 5.3.4")
        .await;
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<b@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    let line = "x".repeat(998) + "\r\n";
    c.send(line.repeat(80).as_bytes()).await;
    c.cmd(".", "552 5.3.4").await;
    assert!(c.messages().is_empty());
    c.cmd("NOOP", "250").await;
}

#[tokio::test]
async fn too_many_recipients_is_a_temporary_error() {
    let mut c = start(Options::default()).ehlo().await;
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    for i in 0..100 {
        c.cmd(&format!("RCPT TO:<u{i}@example.com>"), "250").await;
    }
    c.cmd("RCPT TO:<u100@example.com>", "452 4.5.3").await;
    c.cmd("DATA", "354").await;
    c.cmd("x\r\n.", "250").await;
    assert_eq!(c.messages()[0].0.recipients.len(), 100);
}

#[tokio::test]
async fn bare_line_endings_are_refused_unless_normalizing() {
    let mut c = start(Options::default()).ehlo().await;
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<b@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    c.send(b"Subject: x\r\n\r\nline\n.\nMAIL FROM:<evil@example.org>\r\n")
        .await;
    c.cmd(".", "550 5.6.0").await;
    assert!(c.messages().is_empty(), "nothing smuggled, nothing stored");

    let mut opts = Options::default();
    opts.listener.normalize_line_endings = true;
    let mut c = start(opts).ehlo().await;
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<b@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    c.send(b"Subject: x\r\n\r\nline\n.\nmore\r\n").await;
    c.cmd(".", "250").await;
    let messages = c.messages();
    assert_eq!(
        messages.len(),
        1,
        "one message, the bare-LF dot did not end it"
    );
    assert!(messages[0].1.ends_with(b"\r\n\r\nline\r\n.\r\nmore\r\n"));
}

#[tokio::test]
async fn pipelined_transaction_in_one_write() {
    let mut c = start(Options::default()).ehlo().await;
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@foreign.example>\r\nDATA\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    assert!(c.reply().await.starts_with("250"));
    assert!(c.reply().await.starts_with("554"));
    assert!(c.reply().await.starts_with("354"));
    c.send(b"Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
    assert!(c.reply().await.starts_with("221"));
    assert_eq!(c.messages()[0].0.recipients.len(), 1);
}

/// A message over the threshold, by DATA and by BDAT: stored mapped from its spill file and
/// byte for byte what was sent; no spill file is left behind.
#[tokio::test]
async fn large_messages_go_through_a_spill_file() {
    let mut c = start(Options::default()).ehlo().await;
    let body: Vec<u8> = (0..200)
        .flat_map(|i| format!("line {i} of a message that spills\r\n").into_bytes())
        .collect();
    let message = [&b"Subject: big\r\n\r\n"[..], &body].concat();
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<b@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    c.send(&message).await;
    c.cmd(".", "250 2.0.0").await;
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<b@example.com>", "250").await;
    let (first, last) = message.split_at(1000);
    c.send(format!("BDAT {}\r\n", first.len()).as_bytes()).await;
    c.send(first).await;
    assert!(c.reply().await.starts_with("250"));
    c.send(format!("BDAT {} LAST\r\n", last.len()).as_bytes())
        .await;
    c.send(last).await;
    assert!(c.reply().await.starts_with("250 2.0.0 OK: queued"));
    let messages = c.messages();
    assert_eq!(messages.len(), 2);
    for (_, stored) in &messages {
        assert!(stored.starts_with(b"Received: "));
        assert!(stored.ends_with(&message), "stored as sent");
    }
    assert_eq!(c.store.mapped.load(Ordering::Relaxed), 2);
    let left = std::fs::read_dir(c.store.incoming.path()).unwrap().count();
    assert_eq!(left, 0, "spill files are gone once stored");
}

/// Header edits are made in memory, so the header section has a cap; the session stays in
/// sync and takes the next message.
#[tokio::test]
async fn a_header_section_over_the_cap_is_refused() {
    let mut c = start(Options::default()).ehlo().await;
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<b@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    let field = format!("X-Filler: {}\r\n", "f".repeat(900));
    for _ in 0..(crate::smtp::incoming::MAX_HEADER / field.len() + 1) {
        c.send(field.as_bytes()).await;
    }
    c.send(b"\r\nbody\r\n").await;
    c.cmd(".", "552 5.3.4").await;
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<b@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    c.send(format!("{field}\r\nbody\r\n").as_bytes()).await;
    c.cmd(".", "250 2.0.0").await;
    assert_eq!(c.messages().len(), 1);
    let left = std::fs::read_dir(c.store.incoming.path()).unwrap().count();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn bdat_chunks() {
    let mut c = start(Options::default()).ehlo().await;
    c.cmd("MAIL FROM:<a@example.org> BODY=8BITMIME", "250")
        .await;
    c.cmd("RCPT TO:<b@example.com>", "250").await;
    c.send(b"BDAT 14\r\nSubject: x\r\n\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 14 octets"));
    c.send(b"BDAT 8 LAST\r\n.dot\r\n\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0 OK: queued"));
    let messages = c.messages();
    assert!(
        messages[0].1.ends_with(b"Subject: x\r\n\r\n.dot\r\n\r\n"),
        "BDAT is not dot-unstuffed"
    );
    assert!(messages[0].0.eight_bit);
    // A chunk sent out of sequence is consumed, so the session stays in sync.
    c.send(b"BDAT 6 LAST\r\nQUIT\r\n").await;
    assert!(c.reply().await.starts_with("503"));
    c.cmd("NOOP", "250").await;
}

#[tokio::test]
async fn store_failure_is_a_temporary_error() {
    let mut c = start(Options::default()).ehlo().await;
    c.store.fail.store(true, Ordering::Relaxed);
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<b@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    c.cmd("x\r\n.", "452 4.3.1").await;
}

#[tokio::test]
async fn too_many_errors_close_the_session() {
    let mut opts = Options::default();
    opts.limits.max_errors = 3;
    let mut c = start(opts).ehlo().await;
    c.cmd("BOGUS", "500").await;
    c.cmd("BOGUS", "500").await;
    let last = c.cmd("BOGUS", "500").await;
    let last = if last.contains("421") {
        last
    } else {
        c.reply().await
    };
    assert!(last.contains("421 4.7.0"), "{last}");
    assert!(c.closed().await);
}

#[tokio::test]
async fn long_command_line_is_refused() {
    let mut c = start(Options::default()).ehlo().await;
    c.cmd(&format!("NOOP {}", "x".repeat(3000)), "500 5.5.2")
        .await;
    c.cmd("NOOP", "250").await;
}

#[tokio::test(start_paused = true)]
async fn idle_client_times_out() {
    let mut c = start(Options::default()).ehlo().await;
    let reply = c.reply().await;
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    assert!(c.closed().await);
}

#[tokio::test]
async fn shutdown_lets_the_transaction_finish() {
    let mut c = start(Options::default()).ehlo().await;
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.shutdown.cancel();
    c.cmd("RCPT TO:<b@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    c.cmd("x\r\n.", "250").await;
    let reply = c.reply().await;
    assert!(reply.starts_with("421 4.3.2"), "{reply}");
    assert!(c.closed().await);
    c.task.await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_an_idle_session() {
    let mut c = start(Options::default()).ehlo().await;
    c.shutdown.cancel();
    let reply = c.reply().await;
    assert!(reply.starts_with("421 4.3.2"), "{reply}");
}

#[tokio::test]
async fn submission_requires_auth() {
    let mut opts = Options::default();
    opts.listener.role = ListenerRole::Submission;
    opts.listener.allow_plaintext_auth = true;
    opts.users = vec![user("alice", "s3cret")];
    let mut c = start(opts).ehlo().await;
    c.cmd("MAIL FROM:<alice@example.org>", "530 5.7.0").await;
    // Plaintext AUTH is refused for a non-loopback peer even when the listener allows it.
    c.cmd("AUTH PLAIN AGFsaWNlAHMzY3JldA==", "538 5.7.11").await;
}

#[tokio::test]
async fn auth_plain_and_login_on_loopback() {
    let opts = || {
        let mut o = Options::default();
        o.listener.role = ListenerRole::Submission;
        o.listener.allow_plaintext_auth = true;
        o.users = vec![user("alice", "s3cret")];
        o.peer = "127.0.0.1:5000".parse().unwrap();
        o
    };
    let mut c = start(opts()).greeted().await;
    let ehlo = c.cmd("EHLO client.test", "250").await;
    assert!(ehlo.contains("AUTH PLAIN LOGIN"));
    // "\0alice\0wrong"
    c.cmd("AUTH PLAIN AGFsaWNlAHdyb25n", "535 5.7.8").await;
    c.cmd("AUTH PLAIN", "334").await;
    c.cmd("AGFsaWNlAHMzY3JldA==", "235 2.7.0").await;
    c.cmd("AUTH PLAIN AGFsaWNlAHMzY3JldA==", "503 5.5.1").await;
    c.cmd("MAIL FROM:<alice@example.org>", "250").await;
    c.cmd("RCPT TO:<anyone@foreign.example>", "250").await;

    let mut c = start(opts()).ehlo().await;
    c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
    c.cmd("YWxpY2U=", "334 UGFzc3dvcmQ6").await;
    c.cmd("czNjcmV0", "235").await;
    let mut c = start(opts()).ehlo().await;
    c.cmd("AUTH LOGIN", "334").await;
    c.cmd("*", "501").await;
    c.cmd("AUTH CRAM-MD5", "504 5.5.4").await;
}

#[tokio::test]
async fn eight_bit_addresses_need_smtputf8() {
    let mut c = start(trusted()).ehlo().await;
    c.cmd("MAIL FROM:<jörg@example.org>", "553").await;
    c.cmd("MAIL FROM:<jörg@example.org> SMTPUTF8", "250").await;
    c.cmd("RCPT TO:<zoë@foreign.example>", "250").await;
}

#[path = "rejected_tests.rs"]
mod rejected_tests;

#[path = "tls_tests.rs"]
mod tls_tests;

#[path = "facts_tests.rs"]
mod facts_tests;

#[tokio::test]
async fn long_lines_are_reencoded_or_refused_as_the_listener_says() {
    let html = "<td>x</td>".repeat(300);
    let message = format!("Subject: minified\r\nContent-Type: text/html\r\n\r\n{html}\r\n.");
    // The default: the part is re-encoded, its content unchanged.
    let mut opts = Options::default();
    opts.listener.long_lines = crate::config::LongLines::Encode;
    let mut c = start(opts).ehlo().await;
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<user@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    c.cmd(&message, "250 2.0.0").await;
    let (_, bytes) = &c.messages()[0];
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.contains("Content-Transfer-Encoding: quoted-printable\r\n"),
        "{text}"
    );
    assert!(text.lines().all(|l| l.len() <= 998));
    let parsed = mail_parser::MessageParser::default().parse(bytes).unwrap();
    assert_eq!(parsed.body_html(0).unwrap().trim_end(), html);
    // A header line cannot be re-encoded; `refuse` refuses the body line too.
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<user@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    let long_subject = format!("Subject: {html}\r\n\r\nhi\r\n.");
    c.cmd(&long_subject, "550 5.6.0").await;
    let mut c = start(Options::default()).ehlo().await;
    c.cmd("MAIL FROM:<a@example.org>", "250").await;
    c.cmd("RCPT TO:<user@example.com>", "250").await;
    c.cmd("DATA", "354").await;
    c.cmd(&message, "550 5.6.0").await;
}
