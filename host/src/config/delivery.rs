//! `[delivery]`: routes, MX resolution, retry schedule, timeouts, concurrency, DKIM signing.
//!
//! ```toml
//! [delivery]
//! hostname = "relay.example.com"
//!
//! [[delivery.routes]]
//! domains = ["example.com", "*.example.com"]
//! hosts = [{ host = "smtp.example.net", port = 587, tls = "require", auth = { user = "u", password = "p" } }]
//!
//! [delivery.resolver]
//! nameservers = ["127.0.0.1:5353"]
//!
//! [delivery.retry]
//! initial_interval = "5m"
//! max_age = "5d"
//!
//! [[delivery.dkim]]
//! domain = "example.com"
//! selector = "s1"
//! key = "dkim/example.com.pem"
//! ```
//!
//! Durations are humantime strings, as everywhere in the config: `"500ms"`, `"30s"`, `"5m"`,
//! `"4h"`, `"5d"`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{check_duration, ConfigError, MAX_DURATION, POSITIVE};

/// Everything the delivery side needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Our name: sent in EHLO/HELO and used as the reporting MTA and `From:` of DSNs.
    /// Defaults to the top-level `hostname`.
    pub hostname: String,
    /// Routes by recipient domain, first match wins; unmatched domains go to their MX hosts.
    pub routes: Vec<RouteConfig>,
    /// Named smart-host pools that plugins' route decisions name (credentials stay here).
    pub pools: Vec<super::pools::PoolConfig>,
    /// Where MX and address lookups go.
    pub resolver: ResolverConfig,
    /// Retry schedule, expiry and delay notices.
    pub retry: RetryConfig,
    /// Per-phase SMTP client timeouts (RFC 5321 §4.5.3.2).
    pub timeouts: TimeoutConfig,
    /// TCP port of MX hosts (25; another value only for test setups).
    pub mx_port: u16,
    /// Most delivery attempts in flight at once, over all destinations.
    pub max_concurrency: usize,
    /// Most simultaneous connections to one destination (one smart-host route or one MX domain).
    pub per_destination: usize,
    /// How long an idle connection is kept for reuse by the next message to the same destination.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Messages sent over one connection before it is closed and a fresh one opened.
    pub max_messages_per_connection: usize,
    /// DKIM signing keys, one per sending domain (and selector).
    pub dkim: Vec<DkimConfig>,
    /// What a bounce of mail from an unauthenticated outsider carries back: `headers` (the
    /// original's header section only, as RET=HDRS) or `full`. Such a sender is often forged,
    /// and a relay that returns whole messages to it is a reflector (backscatter).
    pub outsider_bounces: OutsiderBounces,
}

/// See [`DeliveryConfig::outsider_bounces`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutsiderBounces {
    #[default]
    Headers,
    Full,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            hostname: String::new(),
            routes: Vec::new(),
            pools: Vec::new(),
            resolver: ResolverConfig::default(),
            retry: RetryConfig::default(),
            timeouts: TimeoutConfig::default(),
            mx_port: 25,
            max_concurrency: 64,
            per_destination: 8,
            idle_timeout: Duration::from_secs(30),
            outsider_bounces: OutsiderBounces::default(),
            max_messages_per_connection: 100,
            dkim: Vec::new(),
        }
    }
}

/// One route: which recipient domains it covers and where their mail goes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Recipient domains: exact (`example.com`), wildcard (`*.example.com`, subdomains only), or
    /// `*` for every domain (a default route).
    pub domains: Vec<String>,
    /// Smart hosts, tried in order (failover); empty means this route uses MX lookup.
    pub hosts: Vec<SmartHostConfig>,
    /// TLS policy towards MX hosts when `hosts` is empty.
    pub tls: TlsPolicy,
}

/// One smart host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmartHostConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// STARTTLS policy.
    pub tls: TlsPolicy,
    /// Verify the certificate chain and name when `tls = "require"`, and always before
    /// sending `auth` credentials. Opportunistic TLS without credentials is encrypt-only: a
    /// failed check there would only fall back to plaintext. `false` opts out (check-config
    /// warns when credentials would go over unverified TLS).
    pub tls_verify: bool,
    /// Credentials for AUTH PLAIN/LOGIN; only ever sent over TLS whose certificate was
    /// verified, unless `tls_verify = false` or `auth.allow_plaintext` says otherwise.
    pub auth: Option<AuthConfig>,
}

impl SmartHostConfig {
    /// Checks one host entry; `hk` is its dotted key.
    pub fn validate(&self, hk: &str, err: &mut impl FnMut(String, String)) {
        let ip_literal = self.host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok();
        if !ip_literal && !valid_domain(&self.host) {
            err(
                format!("{hk}.host"),
                format!("{:?} is not a host", self.host),
            );
        }
        if self.port == 0 {
            err(format!("{hk}.port"), "must be 1-65535".into());
        }
        if let Some(a) = &self.auth {
            if a.user.is_empty() {
                err(format!("{hk}.auth.user"), "must not be empty".into());
            }
            if self.tls == TlsPolicy::None && !a.allow_plaintext {
                err(
                    format!("{hk}.auth"),
                    "credentials need tls = \"require\" or \"opportunistic\" (or auth.allow_plaintext)".into(),
                );
            }
        }
    }
}

impl Default for SmartHostConfig {
    fn default() -> Self {
        SmartHostConfig {
            host: String::new(),
            port: 25,
            tls: TlsPolicy::Opportunistic,
            tls_verify: true,
            auth: None,
        }
    }
}

/// SMTP AUTH credentials for a smart host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Allow sending credentials without TLS (loopback test setups only).
    pub allow_plaintext: bool,
}

/// STARTTLS policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsPolicy {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered; plaintext otherwise or if the handshake fails.
    #[default]
    Opportunistic,
    /// STARTTLS or no delivery (a temporary failure).
    Require,
}

/// The DNS resolver used for MX and address lookups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverConfig {
    /// Explicit nameservers (`"ip:port"`); empty means the system configuration
    /// (`/etc/resolv.conf`).
    pub nameservers: Vec<String>,
    /// Timeout of one query.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Query attempts before a lookup fails (temporarily).
    pub attempts: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

impl ResolverConfig {
    /// The parsed nameserver addresses (invalid ones are reported by `validate`).
    pub fn nameserver_addrs(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    }
}

/// When to try again, and when to give up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Wait after the first temporary failure.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// The wait never grows beyond this.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Each wait is the previous one times this.
    pub multiplier: f64,
    /// Random spread of each wait, as a fraction (0.2 = ±20%), so retries do not stampede.
    pub jitter: f64,
    /// A recipient still undelivered this long after arrival expires and is bounced.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Send one "still trying" notice (RFC 3464 `delayed`) to the sender once a recipient has
    /// been pending this long; unset means no delay notices.
    #[serde(with = "humantime_serde")]
    pub delay_notice_after: Option<Duration>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_interval: Duration::from_secs(5 * 60),
            max_interval: Duration::from_secs(4 * 3600),
            multiplier: 2.0,
            jitter: 0.2,
            max_age: Duration::from_secs(5 * 86400),
            delay_notice_after: None,
        }
    }
}

/// SMTP client timeouts per phase; the defaults are RFC 5321 §4.5.3.2's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// TCP connect, per address.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// The 220 greeting.
    #[serde(with = "humantime_serde")]
    pub greeting: Duration,
    /// EHLO, STARTTLS (with handshake), AUTH, MAIL, RCPT, RSET, QUIT replies.
    #[serde(with = "humantime_serde")]
    pub command: Duration,
    /// The 354 after DATA.
    #[serde(with = "humantime_serde")]
    pub data_init: Duration,
    /// Each write of a block of message data.
    #[serde(with = "humantime_serde")]
    pub data_block: Duration,
    /// The reply after the final dot.
    #[serde(with = "humantime_serde")]
    pub data_final: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(5 * 60),
            command: Duration::from_secs(5 * 60),
            data_init: Duration::from_secs(2 * 60),
            data_block: Duration::from_secs(3 * 60),
            data_final: Duration::from_secs(10 * 60),
        }
    }
}

/// One DKIM signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimConfig {
    /// The signing domain (`d=`); mail whose `From:` domain is this domain or a subdomain of it
    /// is signed with this key.
    pub domain: String,
    /// The selector (`s=`): the key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// Private key PEM file (PKCS#1 or PKCS#8 for RSA, PKCS#8 for Ed25519).
    pub key: PathBuf,
    /// Signature algorithm.
    pub algorithm: DkimAlgorithm,
    /// Header fields to sign; those absent from a message are skipped.
    pub headers: Vec<String>,
}

impl Default for DkimConfig {
    fn default() -> Self {
        DkimConfig {
            domain: String::new(),
            selector: String::new(),
            key: PathBuf::new(),
            algorithm: DkimAlgorithm::RsaSha256,
            headers: DEFAULT_DKIM_HEADERS.iter().map(|h| h.to_string()).collect(),
        }
    }
}

/// The header fields signed by default (RFC 6376 §5.4.1's recommendation, minus trace fields).
pub const DEFAULT_DKIM_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
];

/// DKIM signature algorithm; also the `--algorithm` of `wasmrelay dkim keygen`, which takes
/// the short names `rsa` and `ed25519` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
pub enum DkimAlgorithm {
    /// RSA with SHA-256 (`k=rsa`).
    #[serde(rename = "rsa-sha256")]
    #[value(name = "rsa-sha256", alias = "rsa")]
    RsaSha256,
    /// Ed25519 with SHA-256 (`k=ed25519`, RFC 8463).
    #[serde(rename = "ed25519-sha256")]
    #[value(name = "ed25519-sha256", alias = "ed25519")]
    Ed25519Sha256,
}

impl DeliveryConfig {
    /// Resolves DKIM key paths against the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        for d in &mut self.dkim {
            super::resolve(base, &mut d.key);
        }
    }

    /// Settings that are valid but weaken security, each under its dotted key, for
    /// `check-config` and the start-up log.
    pub fn warnings(&self, key: &str) -> Vec<ConfigError> {
        let mut out = Vec::new();
        // Route hosts and pool hosts alike: a pool's credentials go out the same way.
        let routes = self.routes.iter().enumerate();
        let pools = self.pools.iter().enumerate();
        let lists = routes
            .map(|(i, r)| (format!("{key}.routes[{i}]"), &r.hosts))
            .chain(pools.map(|(i, p)| (format!("{key}.pools[{i}]"), &p.hosts)));
        for (lk, hosts) in lists {
            for (j, h) in hosts.iter().enumerate() {
                let hk = format!("{lk}.hosts[{j}]");
                let Some(auth) = &h.auth else { continue };
                if auth.allow_plaintext {
                    out.push(ConfigError::new(
                        format!("{hk}.auth.allow_plaintext"),
                        "credentials may be sent without TLS: for loopback test setups only",
                    ));
                } else if !h.tls_verify {
                    out.push(ConfigError::new(
                        format!("{hk}.tls_verify"),
                        "credentials are sent over TLS without certificate verification: \
                         whoever sits on the path can take them",
                    ));
                }
            }
        }
        out
    }

    /// Collects every semantic error, each under its dotted key.
    pub fn validate(&self, key: &str, errors: &mut Vec<ConfigError>) {
        let mut err = |k: String, m: String| errors.push(ConfigError::new(k, m));
        // Empty means "the top-level hostname", filled in after validation.
        if !self.hostname.is_empty() && !valid_domain(&self.hostname) {
            err(
                format!("{key}.hostname"),
                format!("{:?} is not a host name", self.hostname),
            );
        }
        if self.mx_port == 0 {
            err(format!("{key}.mx_port"), "must be 1-65535".into());
        }
        if self.max_concurrency == 0 {
            err(
                format!("{key}.max_concurrency"),
                "must be at least 1".into(),
            );
        }
        if self.per_destination == 0 {
            err(
                format!("{key}.per_destination"),
                "must be at least 1".into(),
            );
        }
        if self.max_messages_per_connection == 0 {
            err(
                format!("{key}.max_messages_per_connection"),
                "must be at least 1".into(),
            );
        }
        for (i, route) in self.routes.iter().enumerate() {
            let rk = format!("{key}.routes[{i}]");
            if route.domains.is_empty() {
                err(
                    format!("{rk}.domains"),
                    "at least one domain is needed".into(),
                );
            }
            for (j, d) in route.domains.iter().enumerate() {
                let bare = d.strip_prefix("*.").unwrap_or(d);
                if d != "*" && !valid_domain(bare) {
                    err(
                        format!("{rk}.domains[{j}]"),
                        format!("{d:?} is not a domain"),
                    );
                }
            }
            for (j, h) in route.hosts.iter().enumerate() {
                h.validate(&format!("{rk}.hosts[{j}]"), &mut err);
            }
        }
        super::pools::validate(&self.pools, &format!("{key}.pools"), &mut err);
        for (i, ns) in self.resolver.nameservers.iter().enumerate() {
            if ns.parse::<SocketAddr>().is_err() {
                err(
                    format!("{key}.resolver.nameservers[{i}]"),
                    format!("{ns:?} is not ip:port"),
                );
            }
        }
        if self.resolver.attempts == 0 {
            err(
                format!("{key}.resolver.attempts"),
                "must be at least 1".into(),
            );
        }
        let r = &self.retry;
        if !(r.multiplier >= 1.0 && r.multiplier.is_finite()) {
            err(format!("{key}.retry.multiplier"), "must be >= 1".into());
        }
        if !(0.0..1.0).contains(&r.jitter) {
            err(format!("{key}.retry.jitter"), "must be in [0, 1)".into());
        }
        for (i, d) in self.dkim.iter().enumerate() {
            let dk = format!("{key}.dkim[{i}]");
            if !valid_domain(&d.domain) {
                err(
                    format!("{dk}.domain"),
                    format!("{:?} is not a domain", d.domain),
                );
            }
            if d.selector.is_empty() || !valid_domain(&d.selector) {
                err(
                    format!("{dk}.selector"),
                    format!("{:?} is not a selector", d.selector),
                );
            }
            if d.key.as_os_str().is_empty() {
                err(
                    format!("{dk}.key"),
                    "a private key PEM path is needed".into(),
                );
            } else if !d.key.is_file() {
                err(
                    format!("{dk}.key"),
                    format!("{} is not a readable file", d.key.display()),
                );
            }
            if !d.headers.iter().any(|h| h.eq_ignore_ascii_case("from")) {
                err(
                    format!("{dk}.headers"),
                    "must include From (RFC 6376 §5.4)".into(),
                );
            }
        }
        self.validate_durations(key, errors);
    }

    /// Every duration lies in its range; the retry schedule is consistent.
    fn validate_durations(&self, key: &str, errors: &mut Vec<ConfigError>) {
        let any = Duration::ZERO..=MAX_DURATION;
        check_duration(
            errors,
            format!("{key}.idle_timeout"),
            self.idle_timeout,
            any.clone(),
        );
        let resolver_timeout = format!("{key}.resolver.timeout");
        check_duration(errors, resolver_timeout, self.resolver.timeout, any.clone());
        let r = &self.retry;
        let max_interval = format!("{key}.retry.max_interval");
        let initial_ok = check_duration(
            errors,
            format!("{key}.retry.initial_interval"),
            r.initial_interval,
            POSITIVE,
        );
        let max_ok = check_duration(errors, max_interval.clone(), r.max_interval, POSITIVE);
        if initial_ok && max_ok && r.max_interval < r.initial_interval {
            errors.push(ConfigError::new(
                max_interval,
                "must be at least initial_interval",
            ));
        }
        check_duration(errors, format!("{key}.retry.max_age"), r.max_age, POSITIVE);
        if let Some(after) = r.delay_notice_after {
            check_duration(
                errors,
                format!("{key}.retry.delay_notice_after"),
                after,
                any,
            );
        }
        let t = &self.timeouts;
        for (name, d) in [
            ("connect", t.connect),
            ("greeting", t.greeting),
            ("command", t.command),
            ("data_init", t.data_init),
            ("data_block", t.data_block),
            ("data_final", t.data_final),
        ] {
            check_duration(errors, format!("{key}.timeouts.{name}"), d, POSITIVE);
        }
    }
}

/// A plausible DNS name: dot-separated labels of letters, digits, `-` and `_`.
fn valid_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DeliveryConfig, Vec<ConfigError>> {
        let c: DeliveryConfig =
            toml::from_str(text).map_err(|e| vec![ConfigError::new("", e.to_string())])?;
        let mut errors = Vec::new();
        c.validate("delivery", &mut errors);
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(errors)
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse("").unwrap();
        assert_eq!(c.retry.max_age, Duration::from_secs(5 * 86400));
        assert_eq!(c.timeouts.data_final, Duration::from_secs(600));
        assert_eq!(c.retry.delay_notice_after, None);
    }

    #[test]
    fn durations_are_humantime_strings() {
        let c = parse(
            "idle_timeout = \"7s\"\n[retry]\ninitial_interval = \"500ms\"\n\
             max_interval = \"5m\"\nmax_age = \"2d\"\ndelay_notice_after = \"4h 30m\"",
        )
        .unwrap();
        assert_eq!(c.idle_timeout, Duration::from_secs(7));
        assert_eq!(c.retry.initial_interval, Duration::from_millis(500));
        assert_eq!(c.retry.max_interval, Duration::from_secs(300));
        assert_eq!(c.retry.max_age, Duration::from_secs(172_800));
        assert_eq!(
            c.retry.delay_notice_after,
            Some(Duration::from_secs(16_200))
        );
        // One style only: a bare number has no unit, and units must be known.
        assert!(parse("idle_timeout = 7").is_err());
        assert!(parse("idle_timeout = \"5 fortnights\"").is_err());
        assert!(parse("[retry]\nmax_age = \"99999999999999999d\"").is_err());
    }

    #[test]
    fn durations_out_of_range_name_their_keys() {
        let errors = parse(
            "idle_timeout = \"2years\"\n[retry]\ninitial_interval = \"0s\"\n\
             max_age = \"500000000000000000s\"\n[timeouts]\ncommand = \"0ms\"",
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "delivery.idle_timeout",
                "delivery.retry.initial_interval",
                "delivery.retry.max_age",
                "delivery.timeouts.command",
            ]
        );
        assert_eq!(errors[0].message, "must be between 0s and 1year");
        let errors =
            parse("[retry]\ninitial_interval = \"10m\"\nmax_interval = \"1m\"").unwrap_err();
        assert_eq!(errors[0].key, "delivery.retry.max_interval");
        assert_eq!(errors[0].message, "must be at least initial_interval");
    }

    #[test]
    fn errors_name_dotted_keys() {
        let errors = parse(
            r#"
            [[routes]]
            domains = ["example.com"]
            hosts = [{ host = "a.example", port = 25 }, { host = "b.example", port = 0 }]
            [resolver]
            nameservers = ["127.0.0.1"]
            "#,
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "delivery.routes[0].hosts[1].port",
                "delivery.resolver.nameservers[0]"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(parse("[retry]\nmax_ag = 3").is_err());
        assert!(
            parse("[[routes]]\ndomains=[\"a.b\"]\nhosts=[{host=\"x\", tls=\"maybe\"}]").is_err()
        );
    }
}
