//! Mail that comes back: asynchronous bounces (RFC 3464 DSNs) and complaints (RFC 5965 ARF
//! reports) sent to `[feedback] bounce_address` or any address at `bounce_domain`, turned
//! into `bounced` (with `async: true`) and `complaint` events and suppression-list entries.
//!
//! Layout:
//! - `classify`: hard or soft, for every bounce (synchronous ones too: the `class` field of
//!   `bounced` and `deferred` events).
//! - `report`: parsing a DSN or an ARF report and the original message's identity in it.
//! - `sent`: the deliveries we made, so a report is only believed about one of them.
//! - [`FeedbackStore`] (here): the seam. It wraps the [`MessageStore`] the listeners store
//!   accepted mail through, so a report is read once it is accepted and never reaches the
//!   queue (unless `consume = false`); the SMTP session does not know about it.
//!
//! # Forged reports
//! Anyone can send mail to the bounce address. A report is acted on only for a delivery we
//! made: the original's `Received:` header written by this relay names its queue id (40 of
//! its bits are random), and the recipient must be one that queue id was delivered to
//! within `match_window` (see `sent`). A forger must know the queue id of a message sent to
//! the victim, which only the victim's mail system sees. Reports that match nothing are
//! logged and dropped.

pub mod classify;
pub mod report;
pub mod sent;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use wasmrelay_codec::reply::Enhanced;

pub use classify::{classify, classify_reply, BounceClass};
pub use sent::SentIndex;

use crate::config::feedback::{FeedbackConfig, SuppressOn};
use crate::config::Config;
use crate::events::{Event, Events};
use crate::smtp::incoming::Spill;
use crate::smtp::session::{MessageStore, StoreFuture};
use crate::spool::{Arrival, Envelope, MessageBytes, MessageId};
use crate::state::StateBackend;
use report::{Original, Report};

/// Why feedback handling cannot start.
#[derive(Debug, thiserror::Error)]
#[error("feedback: delivery index in {dir}: {source}")]
pub struct FeedbackError {
    dir: String,
    source: std::io::Error,
}

/// With `[feedback]` on: `events` with the delivery index's tap, and what reports act on.
pub fn attach(
    config: &Config,
    events: Events,
    backend: &Arc<dyn StateBackend>,
    metrics: &crate::metrics::Metrics,
) -> Result<(Events, Option<Arc<Feedback>>), FeedbackError> {
    let c = &config.feedback;
    if !c.is_enabled() {
        return Ok((events, None));
    }
    let dir = config.spool.dir.join("feedback");
    let max = usize::try_from(c.max_tracked).unwrap_or(usize::MAX);
    let index = SentIndex::open(&dir, c.match_window, max).map_err(|source| FeedbackError {
        dir: dir.display().to_string(),
        source,
    })?;
    let index = Arc::new(index);
    let events = events.with_taps(vec![index.clone()]);
    let max_members = config
        .lists
        .iter()
        .find(|l| l.name == c.list)
        .map_or(crate::config::lists::DEFAULT_MAX_MEMBERS, |l| l.max_members);
    let feedback = Feedback::new(
        c.clone(),
        index,
        backend.clone(),
        max_members,
        events.clone(),
    );
    metrics.register(
        "feedback_reports",
        "Mail to the bounce address, by kind (dsn, complaint, other) and result (matched, ignored)",
        feedback.reports.clone(),
    );
    Ok((events, Some(Arc::new(feedback))))
}

/// `store` with feedback taken out when `[feedback]` is on.
pub fn wrap(
    store: Arc<dyn MessageStore>,
    feedback: Option<Arc<Feedback>>,
) -> Arc<dyn MessageStore> {
    match feedback {
        Some(feedback) => Arc::new(FeedbackStore {
            inner: store,
            feedback,
        }),
        None => store,
    }
}

/// What reports act on.
pub struct Feedback {
    config: FeedbackConfig,
    index: Arc<SentIndex>,
    backend: Arc<dyn StateBackend>,
    /// `max_members` of the suppression list.
    max_members: u64,
    events: Events,
    /// `wasmrelay_feedback_reports_total{kind, result}`.
    reports: Family<Vec<(&'static str, &'static str)>, Counter>,
}

impl Feedback {
    pub fn new(
        config: FeedbackConfig,
        index: Arc<SentIndex>,
        backend: Arc<dyn StateBackend>,
        max_members: u64,
        events: Events,
    ) -> Feedback {
        Feedback {
            config,
            index,
            backend,
            max_members,
            events,
            reports: Family::default(),
        }
    }

    /// Reads `message` (received as `id`) as a report and acts on what it says about our
    /// deliveries. Returns how many recipients it acted on.
    pub async fn process(&self, id: &MessageId, message: &[u8]) -> usize {
        let report = report::parse(message);
        let kind = match &report {
            Some(Report::Dsn { .. }) => "dsn",
            Some(Report::Arf { .. }) => "complaint",
            None => "other",
        };
        let acted = match report {
            Some(report) => self.act(id, report).await,
            None => {
                tracing::info!(%id, "feedback: not a DSN or ARF report; ignored");
                0
            }
        };
        let result = if acted > 0 { "matched" } else { "ignored" };
        self.reports
            .get_or_create(&vec![("kind", kind), ("result", result)])
            .inc();
        acted
    }

    async fn act(&self, id: &MessageId, report: Report) -> usize {
        let mut acted = 0;
        match report {
            Report::Dsn { failed, original } => {
                for f in failed {
                    let Some(queue_id) = self.ours(&original, &f.recipient) else {
                        tracing::warn!(%id, rcpt = %f.recipient, "feedback: DSN about no delivery of ours; ignored");
                        continue;
                    };
                    let class = match f.status {
                        Some(s) if s.0 == 5 || s.0 == 4 => classify(s, &f.diagnostic),
                        _ => classify_reply(diagnostic_code(&f.diagnostic), &f.diagnostic),
                    };
                    let status = f.status.unwrap_or(Enhanced(5, 0, 0));
                    self.events.emit(
                        Event::new("bounced")
                            .queue_id(queue_id)
                            .recipient(f.recipient.as_str())
                            .field("status", status.to_string())
                            .field("reply", f.diagnostic.as_str())
                            .field_opt(
                                "remote",
                                (!f.remote.is_empty()).then_some(f.remote.as_str()),
                            )
                            .field("class", class.as_str())
                            .field("async", true)
                            .field("report_id", id.to_string()),
                    );
                    let on = match class {
                        BounceClass::Hard => SuppressOn::HardBounce,
                        BounceClass::Soft => SuppressOn::SoftBounce,
                    };
                    self.suppress(on, &f.recipient).await;
                    acted += 1;
                }
            }
            Report::Arf { arf, original } => {
                // The report's Original-Rcpt-To names the complainer; failing that, the
                // original's own recipients, if exactly one of them got it from us (a
                // complaint about a copy sent to several must not suppress the wrong one).
                let named = arf
                    .recipients
                    .iter()
                    .find_map(|r| Some((r, self.ours(&original, r)?)));
                let found = named.or_else(|| {
                    let mut ours = original
                        .recipients
                        .iter()
                        .filter_map(|r| Some((r, self.ours(&original, r)?)));
                    let first = ours.next();
                    if ours.next().is_some() {
                        tracing::warn!(%id, "feedback: complaint names no recipient and the original went to several; ignored");
                        return None;
                    }
                    first
                });
                let Some((rcpt, queue_id)) = found else {
                    tracing::warn!(%id, "feedback: complaint about no delivery of ours; ignored");
                    return 0;
                };
                self.events.emit(
                    Event::new("complaint")
                        .queue_id(queue_id)
                        .recipient(rcpt.as_str())
                        .field("feedback_type", arf.feedback_type.as_str())
                        .field("user_agent", arf.user_agent.as_str())
                        .field("report_id", id.to_string()),
                );
                if arf.feedback_type != "not-spam" {
                    self.suppress(SuppressOn::Complaint, rcpt).await;
                }
                acted += 1;
            }
        }
        acted
    }

    /// The queue id of ours that `original` names and that went to `rcpt`.
    fn ours<'a>(&self, original: &'a Original, rcpt: &str) -> Option<&'a str> {
        original
            .queue_ids
            .iter()
            .find(|q| self.index.contains(q, rcpt))
            .map(String::as_str)
    }

    async fn suppress(&self, on: SuppressOn, rcpt: &str) {
        if !self.config.suppress_on.contains(&on) {
            return;
        }
        let list = &self.config.list;
        match self
            .backend
            .list_add(list, rcpt, None, self.max_members)
            .await
        {
            Ok(new) => {
                tracing::info!(%rcpt, list, new, reason = ?on, "feedback: recipient suppressed")
            }
            Err(e) => {
                tracing::error!(%rcpt, list, error = %e, "feedback: cannot add to the suppression list")
            }
        }
    }
}

/// The basic code at the start of a diagnostic (`550 ...`), or 550 when there is none.
fn diagnostic_code(text: &str) -> u16 {
    text.get(..3)
        .and_then(|c| c.parse().ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(550)
}

/// The listeners' message store with feedback taken out: a message to a feedback address is
/// read as a report once accepted; it is stored (and relayed) only for its other recipients,
/// or for all of them with `consume = false`.
pub struct FeedbackStore {
    pub inner: Arc<dyn MessageStore>,
    pub feedback: Arc<Feedback>,
}

impl MessageStore for FeedbackStore {
    fn new_id(&self) -> MessageId {
        self.inner.new_id()
    }

    fn spill(&self) -> Spill {
        self.inner.spill()
    }

    fn announce(&self) -> Arrival {
        self.inner.announce()
    }

    fn store<'a>(&'a self, envelope: &'a Envelope, message: MessageBytes) -> StoreFuture<'a> {
        Box::pin(async move {
            let config = &self.feedback.config;
            let (ours, rest): (Vec<_>, Vec<_>) = envelope
                .recipients
                .iter()
                .cloned()
                .partition(|r| config.is_feedback_address(&r.address));
            if ours.is_empty() {
                return self.inner.store(envelope, message).await;
            }
            self.feedback.process(&envelope.id, &message).await;
            if !config.consume {
                return self.inner.store(envelope, message).await;
            }
            if rest.is_empty() {
                tracing::info!(id = %envelope.id, "feedback: report consumed");
                return Ok(());
            }
            let mut others = envelope.clone();
            others.recipients = rest;
            self.inner.store(&others, message).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::journal::LockMode;
    use crate::state::InProcessBackend;

    const QID: &str = "0K3ZQ7W8X0000ABCDEFGH";

    /// An ARF report about a copy of `QID` sent `to` (the original's `To:`), naming
    /// `rcpt_to` in `Original-Rcpt-To` if given.
    fn arf(kind: &str, to: &str, rcpt_to: Option<&str>) -> String {
        let named = rcpt_to.map_or(String::new(), |r| format!("Original-Rcpt-To: {r}\r\n"));
        format!(
            "Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n\
             --b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: {kind}\r\n{named}\r\n\
             --b\r\nContent-Type: text/rfc822-headers\r\n\r\n\
             Received: from c ([127.0.0.1])\r\n\tby relay.test (wasmrelay) with ESMTP id {QID};\r\n\tdate\r\n\
             To: {to}\r\nSubject: hi\r\n\r\n--b--\r\n"
        )
    }

    #[tokio::test]
    async fn complaints_suppress_only_a_recipient_they_identify() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, _) = InProcessBackend::open(dir.path(), LockMode::Try).unwrap();
        let backend: Arc<dyn StateBackend> = Arc::new(backend);
        let index = Arc::new(
            SentIndex::open(
                &dir.path().join("fb"),
                std::time::Duration::from_secs(3600),
                100,
            )
            .unwrap(),
        );
        for r in ["a@x.test", "b@x.test", "c@x.test"] {
            index.record(QID, r);
        }
        let config = FeedbackConfig {
            bounce_address: "bounces@example.com".into(),
            ..FeedbackConfig::default()
        };
        let fb = Feedback::new(config, index, backend.clone(), 100, Events::off());
        let id = MessageId("R1".into());
        let members = || async {
            let list = backend.list_members("suppression").await.unwrap();
            list.into_iter().map(|m| m.member).collect::<Vec<_>>()
        };
        // Sent to two of ours, no Original-Rcpt-To: which one complained is unknown.
        assert_eq!(
            fb.process(&id, arf("abuse", "a@x.test, b@x.test", None).as_bytes())
                .await,
            0
        );
        // Named: that one, even among several.
        let named = arf("abuse", "a@x.test, b@x.test", Some("<B@x.test>"));
        assert_eq!(fb.process(&id, named.as_bytes()).await, 1);
        // Only one of ours on the copy: that one.
        assert_eq!(
            fb.process(&id, arf("abuse", "c@x.test, z@y.test", None).as_bytes())
                .await,
            1
        );
        // "not spam" is reported, not suppressed; a recipient we never sent to is ignored.
        assert_eq!(
            fb.process(&id, arf("not-spam", "a@x.test", None).as_bytes())
                .await,
            1
        );
        assert_eq!(
            fb.process(&id, arf("abuse", "z@y.test", None).as_bytes())
                .await,
            0
        );
        assert_eq!(members().await, ["b@x.test", "c@x.test"]);
        let metrics = crate::metrics::Metrics::new();
        metrics.register("feedback_reports", "reports", fb.reports.clone());
        let text = metrics.encode();
        for line in [
            "wasmrelay_feedback_reports_total{kind=\"complaint\",result=\"ignored\"} 2",
            "wasmrelay_feedback_reports_total{kind=\"complaint\",result=\"matched\"} 3",
        ] {
            assert!(text.contains(line), "{text}");
        }
    }
}
