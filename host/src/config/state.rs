//! `[state]`: where the plugins' shared state (rates, counters, quotas, kv, lists) lives.
//!
//! ```toml
//! [state]
//! backend = "redis"              # "memory" (the default): in-process, one relay
//!
//! [state.redis]
//! url = "redis://10.0.0.5:6379/0" # redis://[user:password@]host:port/db or redis+unix:///path
//! key_prefix = "wasmrelay:prod:"  # every key starts with it: one prefix per deployment
//! pool_size = 2                   # multiplexed connections, calls spread over them
//! connect_timeout = "500ms"
//! command_timeout = "250ms"       # one state call, then `unavailable` to the plugin
//! retry_interval = "1s"           # after a failure, calls fail at once for this long
//! ```
//!
//! Read at start; a change needs a restart (a reload keeps the running backend, so rate
//! windows and kv survive it).

use std::time::Duration;

use serde::Deserialize;

use super::{check_duration, ConfigError};

/// Which backend holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In the relay's memory (lists in a journal under the spool): nothing shared.
    #[default]
    Memory,
    /// In Redis, shared by every relay configured with the same URL and key prefix.
    Redis,
}

/// The `[state]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `"memory"` (default) or `"redis"`.
    pub backend: Backend,
    /// The Redis server, used when `backend = "redis"`.
    pub redis: RedisConfig,
}

/// `[state.redis]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]` or `redis+unix:///path/redis.sock`.
    /// Default: empty (required with `backend = "redis"`).
    pub url: String,
    /// Prepended to every key, so deployments (or staging and production) can share one
    /// Redis without seeing each other's state. Default `"wasmrelay:"`.
    pub key_prefix: String,
    /// Connections to Redis; each is multiplexed (pipelined), so a few carry thousands of
    /// calls a second. Default 2.
    pub pool_size: u32,
    /// How long one connection attempt may take. Default 500ms.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long one state call may take before the plugin gets `unavailable`; keep it well
    /// under the hooks' `limits.wall` (default 2s). Default 250ms.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// After a call fails for want of Redis, calls fail at once for this long; then one
    /// call tries Redis again, and the first success closes the circuit. Default 1s.
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: String::new(),
            key_prefix: "wasmrelay:".into(),
            pool_size: 2,
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(250),
            retry_interval: Duration::from_secs(1),
        }
    }
}

/// Most connections in the pool.
const MAX_POOL: u32 = 64;
/// Longest key prefix.
const MAX_PREFIX: usize = 64;

impl StateConfig {
    pub fn validate(&self, key: &str, errors: &mut Vec<ConfigError>) {
        if self.backend != Backend::Redis {
            return;
        }
        let r = &self.redis;
        let k = |field: &str| format!("{key}.redis.{field}");
        if r.url.is_empty() {
            errors.push(ConfigError::new(
                k("url"),
                "required with backend = \"redis\"",
            ));
        } else if let Err(e) = redis_url(&r.url) {
            errors.push(ConfigError::new(k("url"), e));
        }
        let prefix_ok = r.key_prefix.len() <= MAX_PREFIX
            && r.key_prefix.bytes().all(
                |b| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':'),
            );
        if !prefix_ok {
            errors.push(ConfigError::new(
                k("key_prefix"),
                format!("must be at most {MAX_PREFIX} characters of a-z A-Z 0-9 - _ . :"),
            ));
        }
        if !(1..=MAX_POOL).contains(&r.pool_size) {
            errors.push(ConfigError::new(
                k("pool_size"),
                format!("must be between 1 and {MAX_POOL}"),
            ));
        }
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        check_duration(
            errors,
            k("connect_timeout"),
            r.connect_timeout,
            ms(1)..=secs(60),
        );
        check_duration(
            errors,
            k("command_timeout"),
            r.command_timeout,
            ms(1)..=secs(60),
        );
        check_duration(
            errors,
            k("retry_interval"),
            r.retry_interval,
            ms(1)..=secs(3600),
        );
    }
}

/// Checks a Redis URL the way the client will read it; the error never repeats the URL,
/// which may hold a password.
pub fn redis_url(url: &str) -> Result<redis::ConnectionInfo, String> {
    use redis::IntoConnectionInfo;
    let scheme = url.split("://").next().unwrap_or("");
    if !matches!(scheme, "redis" | "redis+unix" | "unix") {
        return Err(format!(
            "scheme {scheme:?} not supported: use redis:// or redis+unix:// (for TLS, reach \
             Redis through a local TLS tunnel)"
        ));
    }
    url.into_connection_info()
        .map_err(|e| format!("not a Redis URL ({:?})", e.kind()))
}

/// A URL as logs may show it: the password replaced.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn errors(text: &str) -> Vec<String> {
        let text = format!("[[listeners]]\naddress = \"127.0.0.1:2525\"\n{text}");
        match Config::parse(&text, Path::new("/")) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn memory_is_the_default_and_redis_needs_a_url() {
        let config = Config::parse(
            "[[listeners]]\naddress = \"127.0.0.1:2525\"\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(config.state.backend, Backend::Memory);
        assert_eq!(
            errors("[state]\nbackend = \"redis\"\n"),
            ["state.redis.url: required with backend = \"redis\""]
        );
        assert!(errors(
            "[state]\nbackend = \"redis\"\nredis = { url = \"redis://127.0.0.1:6390/2\" }\n"
        )
        .is_empty());
        assert!(errors(
            "[state]\nbackend = \"redis\"\nredis = { url = \"redis+unix:///run/redis.sock\" }\n"
        )
        .is_empty());
        let e = errors("[state]\nbackend = \"etcd\"\n");
        assert!(
            e[0].starts_with("state.backend: unknown variant `etcd`"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_settings_name_their_key_and_hide_passwords() {
        let e = errors(
            "[state]\nbackend = \"redis\"\n[state.redis]\nurl = \"rediss://u:s3cret@h:1\"\n\
             key_prefix = \"a b\"\npool_size = 0\ncommand_timeout = \"0s\"\nretry_interval = \"2h\"\n",
        );
        let keys: Vec<&str> = e.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "state.redis.url",
                "state.redis.key_prefix",
                "state.redis.pool_size",
                "state.redis.command_timeout",
                "state.redis.retry_interval"
            ]
        );
        assert!(!e[0].contains("s3cret"), "{e:?}");
        let e = errors("[state]\nbackend = \"redis\"\nredis = { url = \"redis://h:notaport\" }\n");
        assert!(
            e[0].starts_with("state.redis.url: not a Redis URL"),
            "{e:?}"
        );
        let e = errors("[state.redis]\nurl = \"redis://h\"\ntimeout = \"1s\"\n");
        assert!(
            e[0].starts_with("state.redis.timeout: unknown field"),
            "{e:?}"
        );
        assert_eq!(
            redacted("redis://u:s3cret@h:6379/0"),
            "redis://u:***@h:6379/0"
        );
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
    }
}
