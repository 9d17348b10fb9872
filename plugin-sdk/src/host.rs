//! The capabilities the relay grants a plugin, and nothing else. Every call counts toward the
//! plugin's per-hook capability budget; keys are private to the plugin.

use std::time::Duration;

use crate::bindings::wasmrelay::plugin::host as imp;

pub use imp::{DnsError, LogLevel, RateDecision, RecordType};

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
pub fn rate_limit(key: &str, rate: u32, period: Duration, burst: u32, cost: u32) -> RateDecision {
    imp::rate_limit(key, rate, period.as_millis() as u64, burst, cost)
}

/// Adds `delta` to a fixed-window counter and returns the window's new total.
pub fn counter_add(key: &str, delta: i64, window: Duration) -> i64 {
    imp::counter_add(key, delta, window.as_millis() as u64)
}

/// The current window's total (0 when absent).
pub fn counter_get(key: &str) -> i64 {
    imp::counter_get(key)
}

pub fn kv_get(key: &str) -> Option<Vec<u8>> {
    imp::kv_get(key)
}

/// Stores `value` under `key`, forever or for `ttl`.
pub fn kv_set(key: &str, value: &[u8], ttl: Option<Duration>) {
    imp::kv_set(key, value, ttl.map(|t| t.as_millis() as u64))
}

/// Stores only if absent; returns whether it did.
pub fn kv_add(key: &str, value: &[u8], ttl: Option<Duration>) -> bool {
    imp::kv_add(key, value, ttl.map(|t| t.as_millis() as u64))
}

pub fn kv_delete(key: &str) -> bool {
    imp::kv_delete(key)
}

/// DNS lookup through the relay's resolver (A, AAAA, TXT, MX as `"pref exchange"`).
pub fn dns_lookup(
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Vec<String>, DnsError> {
    imp::dns_lookup(
        name,
        rtype,
        timeout.as_millis().min(u32::MAX as u128) as u32,
    )
}
