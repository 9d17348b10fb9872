//! The capabilities the relay grants a plugin, and nothing else. Every call counts toward the
//! plugin's per-hook capability budget; rate, counter, quota and kv keys are private to the
//! plugin, lists are shared by name. Shared-state calls return [`StateError`] when the
//! backend cannot answer: decide per call whether that fails open or closed.

use std::borrow::Cow;
use std::time::Duration;

use crate::bindings::wasmrelay::plugin::host as imp;

pub use imp::{
    DnsError, LogLevel, QuotaDecision, QuotaWindow, RateDecision, RecordType, StateError,
};

/// Logs through the relay's tracing, tagged with the plugin's name.
pub fn log(level: LogLevel, message: &str) {
    imp::log(level, message)
}

pub fn debug(message: &str) {
    imp::log(LogLevel::Debug, message)
}

pub fn info(message: &str) {
    imp::log(LogLevel::Info, message)
}

pub fn warn(message: &str) {
    imp::log(LogLevel::Warn, message)
}

pub fn error(message: &str) {
    imp::log(LogLevel::Error, message)
}

/// Limits `hook` (`Data` or `RecipientCopy`) to messages with one of the header fields
/// `names`; only while the relay asks `hooks()` at load. Prefer
/// [`crate::Plugin::wanted_headers`], which the SDK declares through this.
pub fn want_headers(hook: crate::Hook, names: &[String]) -> Result<(), String> {
    imp::want_headers(hook, names)
}

/// Limits `hook` (`Rcpt` or `Data`) to transactions with at least `at_least` recipients
/// already; only while the relay asks `hooks()` at load. Prefer
/// [`crate::Plugin::wanted_recipient_count`], which the SDK declares through this.
pub fn want_recipient_count(hook: crate::Hook, at_least: u32) -> Result<(), String> {
    imp::want_recipient_count(hook, at_least)
}

/// Limits `rcpt` to recipients on the list `name` (one this plugin may read); only while the
/// relay asks `hooks()` at load. Prefer [`crate::Plugin::wanted_recipient_lists`], which the
/// SDK declares through this. Since 0.2.7.
pub fn want_listed_recipients(name: &str) -> Result<(), String> {
    imp::want_listed_recipients(name)
}

/// Limits `hook` (`Data`) to messages with at least one of `traits` (`attachment`,
/// `auth-results`, `untrusted-client`, `larger-than:N`, `header:NAME`); only while the relay
/// asks `hooks()` at load. Prefer [`crate::Plugin::wanted_message_traits`], which the SDK
/// declares through this. Since 0.2.8.
pub fn want_messages_with(hook: crate::Hook, traits: &[String]) -> Result<(), String> {
    imp::want_messages_with(hook, traits)
}

/// What a hook does with a client under its limits, for the relay to do in its place
/// ([`want_calls_over_limits`]). Since 0.2.9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayLimit {
    /// Charge one unit of a rate.
    Rate(RelayRate),
    /// Count the connection, allowed while the count is at most `max` (`Connect` only).
    Concurrent(RelayCount),
}

/// A GCRA rate (as [`rate_limit`]) the relay checks and charges one unit of in the plugin's
/// place: the key is `key_start` followed by the parts of `key`, each written as its tag
/// letter, the value's length in bytes in decimal, `:` and the value (`s13:a@example.org`),
/// which is the key the plugin would pass itself. Since 0.2.9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRate {
    /// At most 128 bytes.
    pub key_start: String,
    pub key: Vec<KeyPart>,
    /// Requests per `period`, at least 1.
    pub rate: u32,
    /// At least a millisecond.
    pub period: Duration,
    /// At least 1.
    pub burst: u32,
}

/// A count of open connections the relay keeps in the plugin's place, in epochs of `epoch`
/// so that a count a dead relay never gave back is gone after two: the connection is added
/// to the current epoch's counter (as [`counter_hold`] with a window of two epochs, given
/// back when the session ends), and the count is that counter plus the previous epoch's (0
/// if negative). The key of an epoch is `key_start`, the epoch's number (the Unix time in
/// milliseconds, [`now_ms`], divided by `epoch` in milliseconds) in decimal, the byte 0x1f,
/// then the parts of `key` as for [`RelayRate`]. Since 0.2.9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayCount {
    /// At most 128 bytes.
    pub key_start: String,
    /// The client's network only: the sender is not known at `Connect`.
    pub key: Vec<KeyPart>,
    /// Connections allowed, this one included.
    pub max: u32,
    /// At least a millisecond; whole milliseconds are taken.
    pub epoch: Duration,
}

/// What a [`RelayRate`]'s or [`RelayCount`]'s key is made of after its start. Since 0.2.9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    /// Tag `i`: the client's address as the network of these prefix lengths (at most 32 and
    /// 128) in standard text form (`192.0.2.0/24`, `2001:db8:1:2::/64`), the bare address at
    /// full length; an IPv4-mapped IPv6 address counts as IPv4.
    ClientNetwork { ipv4_prefix: u8, ipv6_prefix: u8 },
    /// Tag `s`: the reverse path in [`list_form`]; `""` for the null sender. `MailFrom`
    /// only.
    Sender,
    /// Tag `d`: the sender's domain (after the last `@`, trailing dots removed; `""` when
    /// there is none). `MailFrom` only.
    SenderDomain,
    /// Tag `u`: the authenticated user in [`list_form`]. A limit keyed on it is left out
    /// (neither counted nor charged) while the client has not authenticated.
    AuthUser,
}

/// Declares that all `hook` (`Connect` or `MailFrom`) does with a client under its limits is
/// count and charge `limits`; only while the relay asks `hooks()` at load. The relay then
/// does it itself: first the counts, in order, then every rate is checked and, only if all
/// allow, each charged one unit (at `MailFrom` for the message, as
/// [`rate_limit_for_message`]). It calls the hook only when a limit would refuse, the
/// backend cannot answer, or a key would be too long: it takes back the counts it added,
/// charges nothing, and the hook counts, checks and answers as if nothing had been declared.
/// A second declaration for the hook adds its limits. Refused (and the hook then called
/// every time) for another hook, a sender part or a count outside `Connect`, a zero rate,
/// period, burst or epoch, a burst of `u32::MAX`, a prefix past the address length, a key start over 128 bytes,
/// more than 8 limits for the hook, or a call outside `hooks()`. Prefer
/// [`crate::Plugin::relay_limits`], which the SDK declares through this. Since 0.2.9.
pub fn want_calls_over_limits(hook: crate::Hook, limits: &[RelayLimit]) -> Result<(), String> {
    let limits: Vec<imp::RelayLimit> = limits.iter().map(wit_limit).collect();
    imp::want_calls_over_limits(hook, &limits)
}

/// Private functions rather than `From` impls: the generated types stay out of the docs.
fn wit_limit(limit: &RelayLimit) -> imp::RelayLimit {
    match limit {
        RelayLimit::Rate(rate) => imp::RelayLimit::Rate(wit_rate(rate)),
        RelayLimit::Concurrent(count) => imp::RelayLimit::Concurrent(wit_count(count)),
    }
}

fn wit_rate(rate: &RelayRate) -> imp::RelayRate {
    imp::RelayRate {
        key_start: rate.key_start.clone(),
        key: wit_key(&rate.key),
        rate: rate.rate,
        period_ms: millis(rate.period),
        burst: rate.burst,
    }
}

fn wit_count(count: &RelayCount) -> imp::RelayCount {
    imp::RelayCount {
        key_start: count.key_start.clone(),
        key: wit_key(&count.key),
        max: count.max,
        epoch_ms: millis(count.epoch),
    }
}

fn wit_key(key: &[KeyPart]) -> Vec<imp::KeyPart> {
    key.iter().map(|&part| wit_key_part(part)).collect()
}

fn wit_key_part(part: KeyPart) -> imp::KeyPart {
    match part {
        KeyPart::ClientNetwork {
            ipv4_prefix,
            ipv6_prefix,
        } => imp::KeyPart::ClientNetwork(imp::NetworkPrefixes {
            ipv4: ipv4_prefix,
            ipv6: ipv6_prefix,
        }),
        KeyPart::Sender => imp::KeyPart::Sender,
        KeyPart::SenderDomain => imp::KeyPart::SenderDomain,
        KeyPart::AuthUser => imp::KeyPart::AuthUser,
    }
}

/// The plugin's `config` table as JSON (also passed to [`crate::Plugin::init`]).
pub fn config() -> String {
    imp::config()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    imp::now_ms()
}

/// Emits an event to the relay's event log and metrics.
pub fn emit(name: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    imp::emit(name, &fields)
}

/// GCRA rate check: `rate` per `period` with bursts up to `burst`, charging `cost` if allowed.
pub fn rate_limit(
    key: &str,
    rate: u32,
    period: Duration,
    burst: u32,
    cost: u32,
) -> Result<RateDecision, StateError> {
    imp::rate_limit(key, rate, millis(period), burst, cost)
}

/// [`rate_limit`] charged to the transaction's message: the host gives the charge back if
/// the transaction ends without its message queued (RSET, a refusal at MAIL FROM or at the
/// end of DATA by any plugin or the relay, a dropped connection ...), so a limit on messages
/// is checked and charged at `mail_from` with no `data` hook. Only in `mail_from`, `rcpt` and
/// `data`, at most 32 per plugin and transaction; otherwise `StateError::Denied`. Since
/// 0.2.7.
pub fn rate_limit_for_message(
    key: &str,
    rate: u32,
    period: Duration,
    burst: u32,
    cost: u32,
) -> Result<RateDecision, StateError> {
    imp::rate_limit_for_message(key, rate, millis(period), burst, cost)
}

/// Adds `delta` to a fixed-window counter and returns the window's new total.
pub fn counter_add(key: &str, delta: i64, window: Duration) -> Result<i64, StateError> {
    imp::counter_add(key, delta, millis(window))
}

/// The current window's total (0 when absent).
pub fn counter_get(key: &str) -> Result<i64, StateError> {
    imp::counter_get(key)
}

/// Adds one to a fixed-window counter for the rest of this session: the host takes it back
/// when the session ends, however it ends, so a plugin counting what is open (concurrent
/// connections) needs no `closed` hook. Returns the window's new total. Only in a session's
/// hooks, at most 32 per plugin and session; otherwise `StateError::Denied`. Since 0.2.2.
pub fn counter_hold(key: &str, window: Duration) -> Result<i64, StateError> {
    imp::counter_hold(key, millis(window))
}

/// Adds `amount` to `key`'s total in the current calendar `window` (UTC) if it stays within
/// `limit`. `quota_add(user, 1, 500, QuotaWindow::Day)` is "500 messages a day per user".
pub fn quota_add(
    key: &str,
    amount: u64,
    limit: u64,
    window: QuotaWindow,
) -> Result<QuotaDecision, StateError> {
    imp::quota_add(key, amount, limit, window)
}

/// [`quota_add`] charged to the transaction's message, given back like
/// [`rate_limit_for_message`] (from the window it went to). Since 0.2.7.
pub fn quota_add_for_message(
    key: &str,
    amount: u64,
    limit: u64,
    window: QuotaWindow,
) -> Result<QuotaDecision, StateError> {
    imp::quota_add_for_message(key, amount, limit, window)
}

/// `key`'s total in the current `window` and when it resets.
pub fn quota_get(key: &str, window: QuotaWindow) -> Result<QuotaDecision, StateError> {
    imp::quota_get(key, window)
}

pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, StateError> {
    imp::kv_get(key)
}

/// Stores `value` under `key`, forever or for `ttl`.
pub fn kv_set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StateError> {
    imp::kv_set(key, value, ttl.map(millis))
}

/// Stores only if absent; returns whether it did.
pub fn kv_add(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool, StateError> {
    imp::kv_add(key, value, ttl.map(millis))
}

pub fn kv_delete(key: &str) -> Result<bool, StateError> {
    imp::kv_delete(key)
}

/// Whether `member` is on the shared list `list` (declared in `[[lists]]`).
pub fn list_contains(list: &str, member: &str) -> Result<bool, StateError> {
    imp::list_contains(list, member)
}

/// Adds `member` to `list` (for `ttl`, or until removed); returns whether it was new.
pub fn list_add(list: &str, member: &str, ttl: Option<Duration>) -> Result<bool, StateError> {
    imp::list_add(list, member, ttl.map(millis))
}

/// Removes `member` from `list`; returns whether it was there.
pub fn list_remove(list: &str, member: &str) -> Result<bool, StateError> {
    imp::list_remove(list, member)
}

/// The form in which addresses go on lists such as the suppression list: trimmed, without
/// angle brackets, lower-cased (local parts are case-sensitive in theory, never in practice).
pub fn list_address(address: &str) -> String {
    list_form(address).into_owned()
}

/// [`list_address`] without a copy when `address` is already in that form (an envelope
/// address in lower case is): hooks that normalize an address per message skip an
/// allocation.
pub fn list_form(address: &str) -> Cow<'_, str> {
    let bare = address.trim().trim_start_matches('<').trim_end_matches('>');
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(bare.to_ascii_lowercase())
    } else {
        Cow::Borrowed(bare)
    }
}

/// Milliseconds, saturating; in 64 bits (`Duration::as_millis` multiplies in 128, a
/// library call in WebAssembly, and every rate and hold passes here).
fn millis(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()))
}

/// DNS lookup through the relay's resolver (A, AAAA, TXT, MX as `"pref exchange"`).
pub fn dns_lookup(
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Vec<String>, DnsError> {
    imp::dns_lookup(name, rtype, millis(timeout).min(u32::MAX as u64) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_in_list_form_is_borrowed_and_others_are_normalized() {
        for (address, want, borrowed) in [
            ("a@example.org", "a@example.org", true),
            ("", "", true),
            (" <a@example.org> ", "a@example.org", true),
            ("A@Example.ORG", "a@example.org", false),
            ("<Ä@EXAMPLE.org>", "Ä@example.org", false),
        ] {
            let form = list_form(address);
            assert_eq!(form, want, "{address:?}");
            assert_eq!(matches!(form, Cow::Borrowed(_)), borrowed, "{address:?}");
            assert_eq!(list_address(address), want, "{address:?}");
        }
    }

    #[test]
    fn millis_match_the_standard_library_and_saturate() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(999_999),
            Duration::from_millis(1_500),
            Duration::new(86_400, 999_999_999),
            Duration::from_secs(u64::MAX / 1000),
        ] {
            assert_eq!(u128::from(millis(d)), d.as_millis(), "{d:?}");
        }
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn relay_limits_keep_their_kind_order_and_parts_with_times_in_millis() {
        let open = RelayLimit::Concurrent(RelayCount {
            key_start: "open\x1fc".into(),
            key: vec![KeyPart::ClientNetwork {
                ipv4_prefix: 32,
                ipv6_prefix: 64,
            }],
            max: 2000,
            epoch: Duration::from_millis(3_600_000) + Duration::from_micros(999),
        });
        let per_client = RelayLimit::Rate(RelayRate {
            key_start: "per-client\x1fr\x1f".into(),
            key: vec![
                KeyPart::ClientNetwork {
                    ipv4_prefix: 24,
                    ipv6_prefix: 64,
                },
                KeyPart::Sender,
                KeyPart::SenderDomain,
                KeyPart::AuthUser,
            ],
            rate: 30,
            period: Duration::from_secs(60),
            burst: 10,
        });
        let wit: Vec<imp::RelayLimit> = [open, per_client].iter().map(wit_limit).collect();
        let [imp::RelayLimit::Concurrent(count), imp::RelayLimit::Rate(rate)] = wit.as_slice()
        else {
            panic!("a count then a rate, as given");
        };
        assert_eq!(count.key_start, "open\x1fc");
        assert_eq!(
            (count.max, count.epoch_ms),
            (2000, 3_600_000),
            "whole milliseconds"
        );
        assert!(matches!(
            count.key.as_slice(),
            [imp::KeyPart::ClientNetwork(imp::NetworkPrefixes {
                ipv4: 32,
                ipv6: 64
            })]
        ));
        assert_eq!(rate.key_start, "per-client\x1fr\x1f");
        assert_eq!((rate.rate, rate.period_ms, rate.burst), (30, 60_000, 10));
        assert!(matches!(
            rate.key.as_slice(),
            [
                imp::KeyPart::ClientNetwork(imp::NetworkPrefixes { ipv4: 24, ipv6: 64 }),
                imp::KeyPart::Sender,
                imp::KeyPart::SenderDomain,
                imp::KeyPart::AuthUser,
            ]
        ));
    }
}
