//! Host capabilities behind plugins' imports besides shared state (which is
//! [`crate::state`]): DNS and the event sink.

use std::collections::HashMap;

use super::types::Hook;

pub use crate::state::BoxFuture;

/// DNS record types plugins may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsType {
    A,
    Aaaa,
    Txt,
    Mx,
}

/// Why a lookup gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsFailure {
    NotFound,
    Timeout,
    Failed(String),
}

/// DNS for `dns-lookup`: the relay's hickory resolver, or a fixed table in tests and
/// `wasmrelay plugin test`. Answers are textual as the WIT documents (MX: `"pref host"`).
pub trait DnsLookup: Send + Sync + 'static {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: DnsType,
    ) -> BoxFuture<'a, Result<Vec<String>, DnsFailure>>;
}

impl DnsLookup for hickory_resolver::TokioResolver {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: DnsType,
    ) -> BoxFuture<'a, Result<Vec<String>, DnsFailure>> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        let qtype = match rtype {
            DnsType::A => RecordType::A,
            DnsType::Aaaa => RecordType::AAAA,
            DnsType::Txt => RecordType::TXT,
            DnsType::Mx => RecordType::MX,
        };
        Box::pin(async move {
            let lookup = match hickory_resolver::TokioResolver::lookup(self, name, qtype).await {
                Ok(l) => l,
                Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                    return Err(DnsFailure::NotFound)
                }
                Err(e) => return Err(DnsFailure::Failed(e.to_string())),
            };
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) if qtype == RecordType::A => Some(a.to_string()),
                    RData::AAAA(a) if qtype == RecordType::AAAA => Some(a.to_string()),
                    RData::TXT(t) if qtype == RecordType::TXT => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect(),
                    ),
                    RData::MX(mx) if qtype == RecordType::MX => {
                        Some(format!("{} {}", mx.preference, mx.exchange))
                    }
                    _ => None,
                })
                .collect())
        })
    }
}

/// A fixed table of answers: names not in it are `NotFound`.
#[derive(Debug, Clone, Default)]
pub struct StaticDns {
    answers: HashMap<(String, DnsType), Vec<String>>,
}

impl StaticDns {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an answer (names compare case-insensitively, trailing dot ignored).
    pub fn insert(&mut self, name: &str, rtype: DnsType, answer: impl Into<String>) {
        let key = (normalize(name), rtype);
        self.answers.entry(key).or_default().push(answer.into());
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsLookup for StaticDns {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: DnsType,
    ) -> BoxFuture<'a, Result<Vec<String>, DnsFailure>> {
        let answer = self
            .answers
            .get(&(normalize(name), rtype))
            .cloned()
            .ok_or(DnsFailure::NotFound);
        Box::pin(std::future::ready(answer))
    }
}

/// One `host.emit` call, with where it happened.
#[derive(Debug, Clone, Copy)]
pub struct PluginEvent<'a> {
    pub plugin: &'a str,
    /// The hook being run; `None` during `init`.
    pub hook: Option<Hook>,
    /// The message the hook is about: its queue id, or at `data` the id it will be queued
    /// under.
    pub queue_id: Option<&'a str>,
    /// The recipient the hook is about (`rcpt`, `recipient-copy`).
    pub recipient: Option<&'a str>,
    pub name: &'a str,
    pub fields: &'a [(String, String)],
}

/// Receives plugin events (`host.emit`): the relay's event log ([`crate::events::Events`]),
/// or [`TracingEvents`].
pub trait EventSink: Send + Sync + 'static {
    fn emit(&self, event: PluginEvent<'_>);
}

/// The default sink: a structured `tracing` event on target `wasmrelay::events`.
#[derive(Debug, Default)]
pub struct TracingEvents;

impl EventSink for TracingEvents {
    fn emit(&self, e: PluginEvent<'_>) {
        tracing::info!(
            target: "wasmrelay::events",
            plugin = e.plugin,
            hook = e.hook.map(Hook::name),
            queue_id = e.queue_id,
            recipient = e.recipient,
            event = e.name,
            fields = ?e.fields,
            "plugin event"
        );
    }
}
