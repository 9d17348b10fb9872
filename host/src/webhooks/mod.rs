//! Webhooks: events POSTed as signed JSON batches to the `[[webhooks]]` URLs, from a durable
//! outbox, so that neither a receiver outage nor a relay restart loses one.
//!
//! Layout:
//! - [`WebhookTap`] (here): an [`EventTap`] per webhook. It keeps the events the webhook
//!   wants, gives each a stable `id`, and queues its line for the outbox without waiting.
//! - `outbox`: the append-only file and cursor under `<spool>/webhooks/NAME/`.
//! - `sender` (here, [`run`]): reads batches from the cursor, POSTs them, moves the cursor
//!   on a 2xx, and otherwise retries with exponential backoff and jitter; events older than
//!   `max_retry_age` are given up (logged and counted).
//! - `http`: a one-request HTTP/1.1 client, over rustls for `https://`.
//!
//! The request: `POST` with `Content-Type: application/json`, body `{"events": [...]}` (each
//! event as the event log writes it, with `id` first), and
//! `X-Wasmrelay-Timestamp: UNIX_SECONDS` and
//! `X-Wasmrelay-Signature: v1=HEX(HMAC-SHA256(secret, TIMESTAMP + "." + BODY))`. The
//! timestamp is that of the attempt, so receivers can refuse replays older than a few
//! minutes. Delivery is at least once: a batch whose 2xx was lost in a crash is sent again,
//! with the same event ids, so receivers dedupe by `id`. The secret is never logged.

pub mod http;
pub mod outbox;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

pub use http::Endpoint;
use outbox::{Msg, Outbox};

use crate::config::webhooks::WebhookConfig;
use crate::events::{Event, EventTap};

/// Body bytes a batch aims to stay under (a batch holds one event at least).
const MAX_BATCH_BYTES: usize = 4 << 20;
/// First and longest wait between failed attempts.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(300);
/// How long a shutdown waits for the outboxes to take the last events.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the webhooks cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhooks[{index}]: outbox {dir}: {source}")]
    Outbox {
        index: usize,
        dir: String,
        source: std::io::Error,
    },
    #[error("webhooks[{index}]: {message}")]
    Config { index: usize, message: String },
}

/// Labels of the webhook counters: `webhook` (the outbox name), and `result` for POSTs.
type Labels = Vec<(&'static str, String)>;

/// The webhooks' Prometheus counters, labelled by webhook.
#[derive(Clone, Default)]
pub struct WebhookMetrics {
    /// `wasmrelay_webhook_posts_total{webhook, result}`: `ok`, `refused` (non-2xx), `failed`.
    posts: Family<Labels, Counter>,
    /// `wasmrelay_webhook_events_given_up_total{webhook}`: past `max_retry_age`.
    given_up: Family<Labels, Counter>,
    /// `wasmrelay_webhook_events_dropped_total{webhook}`: the outbox's writer was behind.
    dropped: Family<Labels, Counter>,
}

impl WebhookMetrics {
    pub fn register(&self, metrics: &crate::metrics::Metrics) {
        metrics.register(
            "webhook_posts",
            "Webhook POSTs by result",
            self.posts.clone(),
        );
        metrics.register(
            "webhook_events_given_up",
            "Webhook events given up after max_retry_age",
            self.given_up.clone(),
        );
        metrics.register(
            "webhook_events_dropped",
            "Webhook events dropped because the outbox writer was behind",
            self.dropped.clone(),
        );
    }

    fn webhook(name: &str) -> Labels {
        vec![("webhook", name.to_string())]
    }

    fn post(&self, name: &str, result: &'static str) {
        let labels = vec![
            ("webhook", name.to_string()),
            ("result", result.to_string()),
        ];
        self.posts.get_or_create(&labels).inc();
    }
}

/// One webhook's tap: filters, stamps and queues events for its outbox.
pub struct WebhookTap {
    config: WebhookConfig,
    tx: std::sync::mpsc::SyncSender<Msg>,
    /// Events dropped because the outbox's writer was behind.
    dropped: AtomicU64,
    metrics: WebhookMetrics,
}

impl EventTap for WebhookTap {
    fn event(&self, event: &Event) {
        if !self.config.wants(event.name) {
            return;
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let ms = event
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut json = Vec::new();
        event.write_line(&mut json);
        // `{"time":...}\n` → `MS {"id":"...","time":...}\n`
        let mut line = format!("{ms} {{\"id\":\"{id}\",").into_bytes();
        line.extend_from_slice(&json[1..]);
        if self.tx.try_send(Msg::Append(line)).is_err() {
            let name = self.config.outbox_name();
            self.metrics
                .dropped
                .get_or_create(&WebhookMetrics::webhook(&name))
                .inc();
            let n = self.dropped.fetch_add(1, Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(webhook = %self.config.outbox_name(), dropped = n, "webhook outbox behind; events dropped");
            }
        }
    }
}

/// The running webhooks, for the end of a shutdown.
#[derive(Default)]
pub struct Webhooks {
    writers: Vec<std::sync::mpsc::SyncSender<Msg>>,
    stop: CancellationToken,
}

impl Webhooks {
    /// Stops the senders and waits until every event queued so far is in its outbox (at
    /// most [`CLOSE_TIMEOUT`]), so a stopping relay loses none.
    pub async fn close(self) {
        self.stop.cancel();
        let flushed = async {
            for tx in &self.writers {
                let (done, wait) = tokio::sync::oneshot::channel();
                if tx.send(Msg::Flush(done)).is_ok() {
                    let _ = wait.await;
                }
            }
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, flushed).await.is_err() {
            tracing::warn!("webhook outboxes: not flushed in time; the last events may be lost");
        }
    }
}

/// Opens every webhook's outbox under `<spool_dir>/webhooks/` and starts its sender; returns
/// the taps to give [`crate::events::Events::with_taps`], and the handle that closes them.
pub fn start(
    configs: &[WebhookConfig],
    spool_dir: &Path,
    metrics: &crate::metrics::Metrics,
) -> Result<(Vec<Arc<dyn EventTap>>, Webhooks), WebhookError> {
    let mut taps: Vec<Arc<dyn EventTap>> = Vec::new();
    let mut webhooks = Webhooks::default();
    let counters = WebhookMetrics::default();
    if !configs.is_empty() {
        counters.register(metrics);
    }
    for (index, config) in configs.iter().enumerate() {
        let dir = spool_dir.join("webhooks").join(config.outbox_name());
        let outbox = Outbox::open(&dir).map_err(|source| WebhookError::Outbox {
            index,
            dir: dir.display().to_string(),
            source,
        })?;
        let config_err = |message| WebhookError::Config { index, message };
        let secret = config.secret().map_err(config_err)?;
        let endpoint = Endpoint::parse(&config.url).map_err(config_err)?;
        webhooks.writers.push(outbox.tx.clone());
        taps.push(Arc::new(WebhookTap {
            config: config.clone(),
            tx: outbox.tx.clone(),
            dropped: AtomicU64::new(0),
            metrics: counters.clone(),
        }));
        let sender = Sender {
            config: config.clone(),
            endpoint,
            secret,
            outbox,
            given_up: AtomicU64::new(0),
            metrics: counters.clone(),
        };
        tokio::spawn(sender.run(webhooks.stop.clone()));
    }
    Ok((taps, webhooks))
}

struct Sender {
    config: WebhookConfig,
    endpoint: Endpoint,
    secret: Vec<u8>,
    outbox: Outbox,
    /// Events given up after `max_retry_age`, since start.
    given_up: AtomicU64,
    metrics: WebhookMetrics,
}

impl Sender {
    async fn run(self, shutdown: CancellationToken) {
        let name = self.config.outbox_name();
        let mut cursor = self.outbox.cursor;
        let mut failures = 0u32;
        let mut len_rx = self.outbox.len.clone();
        loop {
            let len = *len_rx.borrow_and_update();
            if len <= cursor {
                tokio::select! {
                    changed = len_rx.changed() => if changed.is_err() { return },
                    _ = shutdown.cancelled() => return,
                }
                // Let a batch fill up.
                if !sleep(self.config.batch_wait, &shutdown).await {
                    return;
                }
                continue;
            }
            let read = self
                .outbox
                .read(cursor, len, self.config.batch_max, MAX_BATCH_BYTES)
                .await;
            let (lines, end) = match read {
                Ok(r) if !r.0.is_empty() => r,
                Ok(_) => {
                    tracing::error!(webhook = %name, cursor, len, "webhook outbox: no whole line at the cursor");
                    cursor = self.outbox.ack(len).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(webhook = %name, error = %e, "webhook outbox: cannot read");
                    if !sleep(FIRST_RETRY, &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let batch = Batch::of(&lines);
            match self.send(&batch.body).await {
                Ok(status) if (200..300).contains(&status) => {
                    self.metrics.post(&name, "ok");
                    tracing::debug!(webhook = %name, events = lines.len(), status, "webhook batch delivered");
                    cursor = self.outbox.ack(end).await;
                    failures = 0;
                    continue;
                }
                Ok(status) => {
                    self.metrics.post(&name, "refused");
                    tracing::warn!(webhook = %name, events = lines.len(), status, "webhook receiver refused the batch; will retry")
                }
                Err(e) => {
                    self.metrics.post(&name, "failed");
                    tracing::warn!(webhook = %name, events = lines.len(), error = %e, "webhook POST failed; will retry")
                }
            }
            // Events past their retry age are given up, oldest first.
            let too_old = batch.older_than(self.config.max_retry_age);
            if too_old > 0 {
                let offset = cursor + lines[..too_old].iter().map(|l| l.len() as u64).sum::<u64>();
                let total = self.given_up.fetch_add(too_old as u64, Relaxed) + too_old as u64;
                let labels = WebhookMetrics::webhook(&name);
                self.metrics
                    .given_up
                    .get_or_create(&labels)
                    .inc_by(too_old as u64);
                tracing::error!(webhook = %name, events = too_old, given_up_total = total,
                    "webhook events older than max_retry_age given up");
                cursor = self.outbox.ack(offset).await;
                continue;
            }
            failures += 1;
            if !sleep(backoff(failures), &shutdown).await {
                return;
            }
        }
    }

    async fn send(&self, body: &[u8]) -> Result<u16, String> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let signature = sign(&self.secret, &timestamp, body);
        let headers = [
            ("X-Wasmrelay-Timestamp", timestamp),
            ("X-Wasmrelay-Signature", format!("v1={signature}")),
        ];
        http::post(&self.endpoint, &headers, body, self.config.timeout).await
    }
}

/// One POST's body and its events' times.
struct Batch {
    body: Vec<u8>,
    times_ms: Vec<u64>,
}

impl Batch {
    /// From outbox lines `MS JSON\n`.
    fn of(lines: &[Vec<u8>]) -> Batch {
        let mut body = b"{\"events\":[".to_vec();
        let mut times_ms = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let space = line.iter().position(|b| *b == b' ').unwrap_or(0);
            let ms = std::str::from_utf8(&line[..space])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            times_ms.push(ms);
            if i > 0 {
                body.push(b',');
            }
            let json = &line[(space + 1).min(line.len())..];
            body.extend_from_slice(json.strip_suffix(b"\n").unwrap_or(json));
        }
        body.extend_from_slice(b"]}");
        Batch { body, times_ms }
    }

    /// How many events at the front are older than `age`.
    fn older_than(&self, age: Duration) -> usize {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let limit = now.saturating_sub(age.as_millis() as u64);
        self.times_ms.iter().take_while(|t| **t < limit).count()
    }
}

/// Waits `d` unless shutdown comes first; `false` on shutdown.
async fn sleep(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// The wait after the `n`th failure in a row: 1 s doubling up to 5 min, each drawn at
/// random from its upper half, so receivers coming back are not hit by every relay at once.
fn backoff(n: u32) -> Duration {
    let full = FIRST_RETRY
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(LONGEST_RETRY);
    let half = full.as_millis() as u64 / 2;
    Duration::from_millis(half + rand::random::<u64>() % (half + 1))
}

/// Hex HMAC-SHA256 (RFC 2104) of `timestamp.body` under `key`.
pub fn sign(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |x: u8| k.map(|b| b ^ x);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(timestamp.as_bytes())
        .chain_update(b".")
        .chain_update(body)
        .finalize();
    let mac = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    mac.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_of_timestamp_dot_body() {
        // Expected values from Python: hmac.new(key, b"what.do ya ...", hashlib.sha256).
        assert_eq!(
            sign(b"Jefe", "what", b"do ya want for nothing?"),
            "e5f46783cd032668605130dbc18eb1fbc578c74b675733e85b50079bd5ccccf6"
        );
        // A key longer than a block is hashed first.
        assert_eq!(
            sign(&[0xaa; 131], "", b""),
            "52114a3692879cc26e44e957093b88e8deb4e89f279a73c30554f0da4e4756d5"
        );
    }

    #[tokio::test]
    async fn events_past_their_retry_age_are_given_up_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let old = b"1000 {\"id\":\"old\"}\n".to_vec();
        let fresh = format!("{now} {{\"id\":\"fresh\"}}\n").into_bytes();
        outbox.tx.send(Msg::Append(old.clone())).unwrap();
        outbox.tx.send(Msg::Append(fresh)).unwrap();
        // Nothing listens on a port just freed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = WebhookConfig {
            url: format!("http://127.0.0.1:{port}/"),
            max_retry_age: Duration::from_secs(60),
            batch_wait: Duration::ZERO,
            ..WebhookConfig::default()
        };
        let sender = Sender {
            endpoint: Endpoint::parse(&config.url).unwrap(),
            config,
            secret: b"0123456789abcdef".to_vec(),
            outbox,
            given_up: AtomicU64::new(0),
            metrics: WebhookMetrics::default(),
        };
        let metrics = crate::metrics::Metrics::new();
        sender.metrics.register(&metrics);
        let stop = CancellationToken::new();
        let task = tokio::spawn(sender.run(stop.clone()));
        let cursor = dir.path().join("cursor");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&cursor).ok() != Some(old.len().to_string()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the old event was not given up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
        // The fresh event is still owed.
        let left = std::fs::read(dir.path().join("outbox")).unwrap();
        assert!(left.ends_with(b"{\"id\":\"fresh\"}\n"));
        let text = metrics.encode();
        assert!(
            text.contains("wasmrelay_webhook_events_given_up_total{webhook=\"url-")
                && text.contains("} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("wasmrelay_webhook_posts_total{webhook=\"url-"),
            "{text}"
        );
    }

    #[test]
    fn batches_and_backoff() {
        let lines = vec![
            b"1000 {\"id\":\"a\"}\n".to_vec(),
            b"2000 {\"id\":\"b\"}\n".to_vec(),
        ];
        let batch = Batch::of(&lines);
        assert_eq!(batch.body, b"{\"events\":[{\"id\":\"a\"},{\"id\":\"b\"}]}");
        assert_eq!(batch.older_than(Duration::from_secs(60)), 2);
        for n in 1..40 {
            let d = backoff(n);
            assert!(d <= LONGEST_RETRY && d >= FIRST_RETRY / 2, "{n}: {d:?}");
        }
    }
}
