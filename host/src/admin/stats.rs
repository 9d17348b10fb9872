//! What the dashboard draws: an [`EventTap`] that counts events into per-minute buckets (the
//! last 24 hours) and per-sender-domain totals. Everything is bounded: the ring in minutes,
//! the domains in number (later ones are counted under `(other)`), and the map from queue
//! id to sender domain that lets `delivered` and `bounced` (which name no sender) be
//! counted by domain.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use serde::Serialize;
use serde_json::Value;

use crate::events::{Event, EventTap};

/// Minutes kept: 24 hours.
pub const MINUTES: usize = 24 * 60;
/// Sender domains counted one by one; the rest are `(other)`.
pub const MAX_DOMAINS: usize = 500;
/// Queue ids whose sender domain is remembered (the oldest are forgotten first).
pub const MAX_SENDERS: usize = 100_000;
/// Longest domain kept as it is; longer ones are cut (a client chooses the sender).
const MAX_DOMAIN_LEN: usize = 255;
pub const OTHER: &str = "(other)";
/// The domain of the null sender (bounces, DSNs).
pub const NULL_SENDER: &str = "<>";

/// One minute of traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// Unix seconds of the minute's start.
    pub t: u64,
    /// Messages accepted.
    pub received: u64,
    /// Recipients delivered, deferred, bounced.
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    /// Senders, recipients or messages refused.
    pub rejected: u64,
    /// Queued messages at the last sample in this minute (`None`: not sampled).
    pub queue_depth: Option<u64>,
}

/// Totals of one sender domain (recipients, except `received`: messages).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DomainCounts {
    pub domain: String,
    pub received: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    /// First opens and first clicks of a recipient (repeats are not counted again).
    pub opens: u64,
    pub clicks: u64,
    pub unsubscribes: u64,
}

/// Totals since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub received: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub rejected: u64,
    pub held: u64,
    pub dropped: u64,
    pub opens: u64,
    pub clicks: u64,
    pub unsubscribes: u64,
    /// Rejections by the plugin that decided them (`relay` when the relay itself refused).
    pub rejected_by: Vec<(String, u64)>,
}

/// What the queue held at the last sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueSummary {
    pub messages: u64,
    pub held: u64,
    pub pending_recipients: u64,
    /// Age of the oldest message, in seconds at the sample.
    pub oldest_age_secs: Option<u64>,
    /// Unix seconds of the sample.
    pub sampled_at: u64,
}

/// A copy of everything, as `/api/stats` serves it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub minutes: Vec<Minute>,
    pub totals: Totals,
    pub domains: Vec<DomainCounts>,
    pub queue: QueueSummary,
}

#[derive(Default)]
struct Inner {
    minutes: VecDeque<Minute>,
    totals: Totals,
    rejected_by: HashMap<String, u64>,
    domains: HashMap<Arc<str>, DomainCounts>,
    senders: HashMap<String, Arc<str>>,
    sender_order: VecDeque<String>,
    queue: QueueSummary,
}

/// The dashboard's counters; see the module docs.
#[derive(Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

impl EventTap for Stats {
    fn event(&self, event: &Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.count(event);
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats::default()
    }

    /// Records what the queue holds (the last sample of a minute is its depth).
    pub fn sample_queue(&self, queue: QueueSummary) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.queue = queue;
        if let Some(minute) = inner.minute(queue.sampled_at) {
            minute.queue_depth = Some(queue.messages);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut domains: Vec<DomainCounts> = inner.domains.values().cloned().collect();
        domains.sort_by(|a, b| b.received.cmp(&a.received).then(a.domain.cmp(&b.domain)));
        let mut totals = inner.totals.clone();
        totals.rejected_by = inner
            .rejected_by
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        totals.rejected_by.sort();
        Snapshot {
            minutes: inner.minutes.iter().cloned().collect(),
            totals,
            domains,
            queue: inner.queue,
        }
    }
}

impl Inner {
    fn count(&mut self, event: &Event) {
        let secs = event
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = event.queue_id.as_deref();
        match event.name {
            "received" | "queued" => {
                let (Some(id), Some(from)) = (id, str_field(event, "from")) else {
                    return;
                };
                if self.senders.contains_key(id) {
                    // `queued` follows `received` for the same message.
                    return;
                }
                let domain = self.domain_key(sender_domain(from));
                self.remember(id, domain.clone());
                if field(event, "dsn_for").is_some() {
                    // The relay's own notice: its delivery counts, it was not received.
                    return;
                }
                self.domain(&domain).received += 1;
                self.totals.received += 1;
                if let Some(m) = self.minute(secs) {
                    m.received += 1;
                }
            }
            name @ ("delivered" | "deferred" | "bounced") => {
                let domain = self.sender_of(id);
                let d = self.domain(&domain);
                *outcome(name, &mut d.delivered, &mut d.deferred, &mut d.bounced) += 1;
                let t = &mut self.totals;
                *outcome(name, &mut t.delivered, &mut t.deferred, &mut t.bounced) += 1;
                if let Some(m) = self.minute(secs) {
                    *outcome(name, &mut m.delivered, &mut m.deferred, &mut m.bounced) += 1;
                }
            }
            "rejected" => {
                self.totals.rejected += 1;
                let by = event.plugin.as_deref().unwrap_or("relay");
                // Plugin names come from the config: few and bounded.
                *self.rejected_by.entry(by.to_string()).or_default() += 1;
                if let Some(m) = self.minute(secs) {
                    m.rejected += 1;
                }
            }
            "held" => self.totals.held += 1,
            "dropped" => self.totals.dropped += 1,
            "open" | "click" | "unsubscribe" => {
                let first = match event.name {
                    "unsubscribe" => field(event, "new").and_then(Value::as_bool),
                    _ => field(event, "count")
                        .and_then(Value::as_u64)
                        .map(|c| c == 1),
                };
                if first != Some(true) {
                    return;
                }
                let from = str_field(event, "sender_domain").unwrap_or("");
                let domain = self.domain_key(from.to_string());
                let d = self.domain(&domain);
                let counter = match event.name {
                    "open" => {
                        d.opens += 1;
                        &mut self.totals.opens
                    }
                    "click" => {
                        d.clicks += 1;
                        &mut self.totals.clicks
                    }
                    _ => {
                        d.unsubscribes += 1;
                        &mut self.totals.unsubscribes
                    }
                };
                *counter += 1;
            }
            _ => {}
        }
    }

    /// The bucket of the minute holding `secs`, created if it is newer than the last one;
    /// `None` for a minute older than the ring.
    fn minute(&mut self, secs: u64) -> Option<&mut Minute> {
        let t = secs - secs % 60;
        let last = self.minutes.back().map(|m| m.t);
        if last.is_none_or(|last| t > last) {
            self.minutes.push_back(Minute {
                t,
                ..Minute::default()
            });
            while self.minutes.len() > MINUTES
                || self
                    .minutes
                    .front()
                    .is_some_and(|m| m.t + (MINUTES as u64) * 60 <= t)
            {
                self.minutes.pop_front();
            }
            return self.minutes.back_mut();
        }
        // Events from threads racing over a minute's end arrive a little out of order.
        let i = self.minutes.iter().rposition(|m| m.t <= t)?;
        if self.minutes[i].t == t {
            return self.minutes.get_mut(i);
        }
        self.minutes.insert(
            i + 1,
            Minute {
                t,
                ..Minute::default()
            },
        );
        self.minutes.get_mut(i + 1)
    }

    /// `domain`, or `(other)` once [`MAX_DOMAINS`] are counted.
    fn domain_key(&self, domain: String) -> Arc<str> {
        if let Some((k, _)) = self.domains.get_key_value(domain.as_str()) {
            return k.clone();
        }
        if self.domains.len() >= MAX_DOMAINS {
            return Arc::from(OTHER);
        }
        Arc::from(domain)
    }

    fn domain(&mut self, key: &Arc<str>) -> &mut DomainCounts {
        self.domains
            .entry(key.clone())
            .or_insert_with(|| DomainCounts {
                domain: key.to_string(),
                ..DomainCounts::default()
            })
    }

    fn remember(&mut self, id: &str, domain: Arc<str>) {
        if self.sender_order.len() >= MAX_SENDERS {
            if let Some(old) = self.sender_order.pop_front() {
                self.senders.remove(&old);
            }
        }
        self.sender_order.push_back(id.to_string());
        self.senders.insert(id.to_string(), domain);
    }

    /// The sender domain of a queued message; `(other)` when it was forgotten or received
    /// before this relay started.
    fn sender_of(&self, id: Option<&str>) -> Arc<str> {
        id.and_then(|id| self.senders.get(id))
            .cloned()
            .unwrap_or_else(|| Arc::from(OTHER))
    }
}

/// The counter of a `delivered`, `deferred` or `bounced` event among three.
fn outcome<'a>(
    name: &str,
    delivered: &'a mut u64,
    deferred: &'a mut u64,
    bounced: &'a mut u64,
) -> &'a mut u64 {
    match name {
        "delivered" => delivered,
        "deferred" => deferred,
        _ => bounced,
    }
}

fn field<'a>(event: &'a Event, key: &str) -> Option<&'a Value> {
    event.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn str_field<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    field(event, key).and_then(Value::as_str)
}

/// The lower-cased domain of a reverse path; [`NULL_SENDER`] for `<>`.
fn sender_domain(from: &str) -> String {
    if from.is_empty() {
        return NULL_SENDER.to_string();
    }
    let mut domain = crate::delivery::domain_of(from);
    if domain.len() > MAX_DOMAIN_LEN {
        let mut cut = MAX_DOMAIN_LEN;
        while !domain.is_char_boundary(cut) {
            cut -= 1;
        }
        domain.truncate(cut);
    }
    domain
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(e: Event, secs: u64) -> Event {
        Event {
            time: UNIX_EPOCH + Duration::from_secs(secs),
            ..e
        }
    }

    fn received(id: &str, from: &str, secs: u64) -> Event {
        at(
            Event::new("received").queue_id(id).field("from", from),
            secs,
        )
    }

    fn outcome(name: &'static str, id: &str, secs: u64) -> Event {
        at(Event::new(name).queue_id(id).recipient("r@x.test"), secs)
    }

    const T0: u64 = 1_795_338_840; // a minute's start

    #[test]
    fn counts_by_minute_and_by_sender_domain() {
        let s = Stats::new();
        s.event(&received("q1", "A@News.Example", T0 + 5));
        s.event(&received("q2", "b@news.example", T0 + 59));
        s.event(&at(
            Event::new("queued")
                .queue_id("q2")
                .field("from", "b@news.example"),
            T0 + 59,
        ));
        s.event(&received("q3", "", T0 + 61));
        s.event(&at(
            Event::new("queued")
                .queue_id("dsn1")
                .field("from", "")
                .field("dsn_for", "q2"),
            T0 + 61,
        ));
        s.event(&outcome("delivered", "dsn1", T0 + 62));
        s.event(&outcome("delivered", "q1", T0 + 62));
        s.event(&outcome("bounced", "q2", T0 + 63));
        s.event(&outcome("deferred", "q3", T0 + 64));
        s.event(&outcome("delivered", "unknown", T0 + 65));
        // A late event of the first minute, after the second began.
        s.event(&at(Event::new("rejected"), T0 + 30));
        s.sample_queue(QueueSummary {
            messages: 7,
            sampled_at: T0 + 70,
            ..QueueSummary::default()
        });
        let snap = s.snapshot();
        assert_eq!(snap.minutes.len(), 2);
        let (m0, m1) = (&snap.minutes[0], &snap.minutes[1]);
        assert_eq!((m0.t, m0.received, m0.rejected), (T0, 2, 1));
        assert_eq!(
            (m1.received, m1.delivered, m1.bounced, m1.deferred),
            (1, 3, 1, 1),
            "a DSN is delivered, not received"
        );
        assert_eq!((m0.queue_depth, m1.queue_depth), (None, Some(7)));
        assert_eq!(snap.queue.messages, 7);
        let domain = |d: &str| snap.domains.iter().find(|x| x.domain == d).unwrap().clone();
        let news = domain("news.example");
        assert_eq!(
            (news.received, news.delivered, news.bounced),
            (2, 1, 1),
            "queued after received is the same message"
        );
        let null = domain(NULL_SENDER);
        assert_eq!((null.received, null.delivered, null.deferred), (1, 1, 1));
        assert_eq!(domain(OTHER).delivered, 1);
        assert_eq!(snap.totals.received, 3);
        assert_eq!(snap.totals.rejected_by, vec![("relay".to_string(), 1)]);
    }

    #[test]
    fn first_opens_and_clicks_count_per_sender_domain() {
        let s = Stats::new();
        for count in [1u64, 2, 3] {
            s.event(
                &Event::new("open")
                    .field("sender_domain", "news.example")
                    .field("count", count),
            );
        }
        s.event(
            &Event::new("click")
                .field("sender_domain", "news.example")
                .field("count", 1u64),
        );
        s.event(
            &Event::new("unsubscribe")
                .field("sender_domain", "news.example")
                .field("new", false),
        );
        let snap = s.snapshot();
        let d = &snap.domains[0];
        assert_eq!((d.opens, d.clicks, d.unsubscribes), (1, 1, 0));
    }

    #[test]
    fn bounded_in_minutes_domains_and_senders() {
        let s = Stats::new();
        for i in 0..(MINUTES as u64 + 10) {
            s.event(&at(Event::new("rejected"), T0 + i * 60));
        }
        let snap = s.snapshot();
        assert_eq!(snap.minutes.len(), MINUTES);
        assert_eq!(snap.minutes[0].t, T0 + 10 * 60);
        // An event older than the ring is counted in the totals only.
        s.event(&at(Event::new("rejected"), T0));
        assert_eq!(s.snapshot().minutes.len(), MINUTES);

        let s = Stats::new();
        for i in 0..MAX_DOMAINS + 5 {
            s.event(&received(&format!("q{i}"), &format!("a@d{i}.test"), T0));
        }
        let snap = s.snapshot();
        assert_eq!(snap.domains.len(), MAX_DOMAINS + 1);
        let other = snap.domains.iter().find(|d| d.domain == OTHER).unwrap();
        assert_eq!(other.received, 5);
        let inner = s.inner.lock().unwrap();
        assert!(inner.senders.len() <= MAX_SENDERS);
        drop(inner);
        let long = format!("a@{}.test", "x".repeat(1000));
        assert_eq!(sender_domain(&long).len(), MAX_DOMAIN_LEN);
    }
}
