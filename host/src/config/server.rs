//! The receiving side: `hostname`, `[[listeners]]`, `[relay]`, `[limits]`, `[[users]]`, `[spool]`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{check_duration, resolve, ConfigError, POSITIVE};

/// What a listener is for; it sets the defaults for TLS and AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ListenerRole {
    /// Port 25/2525: mail from other servers and trusted networks; STARTTLS offered if a
    /// certificate is configured; AUTH optional.
    #[default]
    Relay,
    /// Port 587: STARTTLS, then AUTH, then mail (RFC 6409).
    Submission,
    /// Port 465: TLS from the first byte (RFC 8314), then AUTH.
    Smtps,
}

/// Which messages a listener checks for SPF, DKIM, DMARC and ARC. Authenticated sessions are
/// never checked: their mail is ours to vouch for, not to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthCheck {
    /// Nothing is checked (and no `Authentication-Results` is added).
    Off,
    /// Mail from the outside for us: clients outside `relay_networks`, at least one recipient
    /// in `local_domains`.
    Inbound,
    /// Every message from an unauthenticated client, `relay_networks` included.
    All,
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Socket address to bind, e.g. `"0.0.0.0:25"` or `"[::1]:2525"`.
    pub address: SocketAddr,
    /// `relay` (default), `submission` or `smtps`.
    #[serde(default)]
    pub role: ListenerRole,
    /// A name for logs and plugins; defaults to the role and port.
    #[serde(default)]
    pub name: Option<String>,
    /// PEM certificate chain; with `tls_key`, enables STARTTLS (or implicit TLS for `smtps`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Require AUTH before MAIL. Default: true for `submission` and `smtps`, false for `relay`.
    #[serde(default)]
    pub require_auth: Option<bool>,
    /// Allow AUTH without TLS. Honoured only for clients on a loopback address.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    /// Accept bare CR/LF in DATA and rewrite them to CRLF (trusted networks only; the default
    /// rejects them, which is what keeps SMTP smuggling out).
    #[serde(default)]
    pub normalize_line_endings: bool,
    /// A message line over 998 octets (minified HTML from an application): `encode`
    /// re-encodes the parts that have one (quoted-printable, or re-wrapped base64; the
    /// content and charset stay the same) before plugins, spooling and DKIM signing see it;
    /// `refuse` answers `550 5.6.0`. Lines beyond `limits.max_text_line` are refused either
    /// way only under `refuse`.
    #[serde(default)]
    pub long_lines: LongLines,
    /// Check SPF, DKIM, DMARC (and ARC) at the end of DATA, add an `Authentication-Results`
    /// header and give the results to plugins: `inbound`, `all` or `off`. Default: `inbound`
    /// for `relay`, `off` for `submission` and `smtps`.
    #[serde(default)]
    pub check_auth: Option<AuthCheck>,
    /// Refuse with `550 5.7.1` a checked message that fails DMARC for an author domain whose
    /// policy is `p=reject`. Off by default: the result is recorded and plugins decide.
    #[serde(default)]
    pub dmarc_reject: bool,
}

impl ListenerConfig {
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let role = match self.role {
                ListenerRole::Relay => "relay",
                ListenerRole::Submission => "submission",
                ListenerRole::Smtps => "smtps",
            };
            format!("{role}-{}", self.address.port())
        })
    }

    pub fn requires_auth(&self) -> bool {
        self.require_auth
            .unwrap_or(self.role != ListenerRole::Relay)
    }

    /// What this listener checks: `check_auth`, or the role's default.
    pub fn auth_check(&self) -> AuthCheck {
        self.check_auth.unwrap_or(match self.role {
            ListenerRole::Relay => AuthCheck::Inbound,
            ListenerRole::Submission | ListenerRole::Smtps => AuthCheck::Off,
        })
    }

    pub fn has_tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }
}

/// `[relay]`: who may send where. Never an open relay: a recipient outside `local_domains`
/// needs an authenticated session or a client in `relay_networks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Domains we accept mail for from anyone (exact, or `*.example.com` for subdomains).
    pub local_domains: Vec<String>,
    /// Client networks allowed to relay to any domain, e.g. `["127.0.0.0/8", "::1/128"]`.
    pub relay_networks: Vec<IpNet>,
}

impl RelayConfig {
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.local_domains.iter().any(|d| {
            let d = d.to_ascii_lowercase();
            match d.strip_prefix("*.") {
                Some(parent) => {
                    domain.len() > parent.len() + 1 && domain.ends_with(&format!(".{parent}"))
                }
                None => d == domain,
            }
        })
    }

    pub fn is_relay_network(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.relay_networks.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 peers (`::ffff:1.2.3.4` on dual-stack sockets) compare as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `[limits]`: RFC 5321 §4.5.3 floors with overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest message accepted, in octets; advertised with SIZE.
    pub max_message_size: u64,
    /// Most recipients per message (RFC floor 100).
    pub max_recipients: usize,
    /// Longest command line including CRLF (RFC floor 512).
    pub max_command_line: usize,
    /// Longest text line in DATA including CRLF (RFC floor 1000).
    pub max_text_line: usize,
    /// Simultaneous connections across all listeners.
    pub max_connections: usize,
    /// Simultaneous connections from one client IP.
    pub max_connections_per_ip: usize,
    /// Failed commands before the session is closed with `421`.
    pub max_errors: u32,
    /// How long to wait for a command (RFC 5321 §4.5.3.2.7: 5 minutes).
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// How long to wait for each block of DATA (§4.5.3.2.5: 3 minutes).
    #[serde(with = "humantime_serde")]
    pub data_block_timeout: Duration,
    /// How long a session may take for the TLS handshake.
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// Most `Received:` fields a message may carry, ours included; more is a mail loop and
    /// is refused with `554 5.4.6` (Postfix's `hopcount_limit`).
    pub max_hops: usize,
    /// NOOP, RSET, HELP, VRFY, EHLO/HELO commands a session may send before each further one
    /// counts as an error (towards `max_errors`); reset when a message is accepted (Postfix's
    /// `smtpd_junk_command_limit`).
    pub max_junk_commands: u32,
    /// After SIGTERM, how long sessions may take to finish their transaction before they are
    /// cut off.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long the SPF/DKIM/DMARC checks of one message may take; lookups still
    /// unanswered then count as `temperror`. At most `data_block_timeout`.
    #[serde(with = "humantime_serde")]
    pub auth_check_timeout: Duration,
    /// Failed AUTH attempts one client (IPv4 address or IPv6 /64) may make within
    /// `auth_failure_window`, across connections, before AUTH is refused (`454 4.7.0`)
    /// until the window ends; 0 turns the brake off.
    pub auth_failures: u32,
    #[serde(with = "humantime_serde")]
    pub auth_failure_window: Duration,
    /// Password checks (argon2) running at once; more wait in a bounded queue.
    pub auth_workers: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 2048,
            max_text_line: 1000,
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_errors: 10,
            command_timeout: Duration::from_secs(300),
            data_block_timeout: Duration::from_secs(180),
            tls_handshake_timeout: Duration::from_secs(30),
            max_hops: 50,
            max_junk_commands: 100,
            shutdown_grace: Duration::from_secs(30),
            auth_check_timeout: Duration::from_secs(20),
            auth_failures: 10,
            auth_failure_window: Duration::from_secs(15 * 60),
            auth_workers: 2,
        }
    }
}

/// See [`ListenerConfig::long_lines`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongLines {
    #[default]
    Encode,
    Refuse,
}

/// One `[[users]]` entry for SMTP AUTH.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The login name.
    pub name: String,
    /// A PHC string from `wasmrelay hash-password` (argon2id).
    pub password_hash: String,
}

/// `[spool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory holding queued messages; relative paths are against the config file.
    pub dir: PathBuf,
    /// How long an fdatasync may wait for messages other sessions are still receiving, so
    /// that one covers them all. Paid only while others are sending; `0s` turns it off.
    #[serde(with = "humantime_serde")]
    pub commit_delay: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("spool"),
            commit_delay: crate::spool::DEFAULT_COMMIT_DELAY,
        }
    }
}

/// Longest `[spool] commit_delay`: past this a `250` waits noticeably for nothing.
const MAX_COMMIT_DELAY: Duration = Duration::from_millis(50);

pub(super) fn validate_spool(spool: &SpoolConfig, errors: &mut Vec<ConfigError>) {
    super::check_duration(
        errors,
        "spool.commit_delay",
        spool.commit_delay,
        Duration::ZERO..=MAX_COMMIT_DELAY,
    );
}

pub(super) fn resolve_listener_paths(
    listeners: &mut [ListenerConfig],
    spool: &mut SpoolConfig,
    base: &Path,
) {
    for l in listeners {
        if let Some(p) = &mut l.tls_cert {
            resolve(base, p);
        }
        if let Some(p) = &mut l.tls_key {
            resolve(base, p);
        }
    }
    resolve(base, &mut spool.dir);
}

pub(super) fn validate_listeners(listeners: &[ListenerConfig], errors: &mut Vec<ConfigError>) {
    if listeners.is_empty() {
        errors.push(ConfigError::new(
            "listeners",
            "at least one listener is required",
        ));
    }
    for (i, l) in listeners.iter().enumerate() {
        let key = format!("listeners[{i}]");
        if l.tls_cert.is_some() != l.tls_key.is_some() {
            errors.push(ConfigError::new(
                format!("{key}.tls_key"),
                "tls_cert and tls_key must be set together",
            ));
        }
        for (field, path) in [("tls_cert", &l.tls_cert), ("tls_key", &l.tls_key)] {
            if let Some(p) = path {
                if !p.is_file() {
                    errors.push(ConfigError::new(
                        format!("{key}.{field}"),
                        format!("no such file: {}", p.display()),
                    ));
                }
            }
        }
        if l.role == ListenerRole::Smtps && !l.has_tls() {
            errors.push(ConfigError::new(
                format!("{key}.tls_cert"),
                "an smtps listener needs tls_cert and tls_key",
            ));
        }
        if l.role == ListenerRole::Submission && !l.has_tls() && !l.allow_plaintext_auth {
            errors.push(ConfigError::new(
                format!("{key}.tls_cert"),
                "a submission listener needs TLS (or allow_plaintext_auth for loopback testing)",
            ));
        }
        if l.dmarc_reject && l.auth_check() == AuthCheck::Off {
            errors.push(ConfigError::new(
                format!("{key}.dmarc_reject"),
                "needs check_auth (inbound or all): DMARC is not checked on this listener",
            ));
        }
        if let Some(j) = listeners[..i].iter().position(|o| o.address == l.address) {
            errors.push(ConfigError::new(
                format!("{key}.address"),
                format!("same address as listeners[{j}]"),
            ));
        }
    }
}

pub(super) fn validate_limits(l: &LimitsConfig, errors: &mut Vec<ConfigError>) {
    let mut floor = |field: &str, value: u64, min: u64, why: &str| {
        if value < min {
            errors.push(ConfigError::new(
                format!("limits.{field}"),
                format!("must be at least {min} ({why})"),
            ));
        }
    };
    floor(
        "max_recipients",
        l.max_recipients as u64,
        100,
        "RFC 5321 §4.5.3.1.8",
    );
    floor(
        "max_command_line",
        l.max_command_line as u64,
        512,
        "RFC 5321 §4.5.3.1.4",
    );
    floor(
        "max_text_line",
        l.max_text_line as u64,
        1000,
        "RFC 5321 §4.5.3.1.6",
    );
    floor(
        "max_message_size",
        l.max_message_size,
        65536,
        "RFC 5321 §4.5.3.1.7",
    );
    floor(
        "max_connections",
        l.max_connections as u64,
        1,
        "no connection could be served",
    );
    floor(
        "max_connections_per_ip",
        l.max_connections_per_ip as u64,
        1,
        "no connection could be served",
    );
    floor(
        "max_errors",
        l.max_errors as u64,
        1,
        "the first error would close the session",
    );
    floor(
        "max_hops",
        l.max_hops as u64,
        2,
        "one hop is our own Received: field",
    );
    floor(
        "max_junk_commands",
        l.max_junk_commands as u64,
        1,
        "a client needs EHLO",
    );
    for (field, value) in [
        ("command_timeout", l.command_timeout),
        ("data_block_timeout", l.data_block_timeout),
        ("tls_handshake_timeout", l.tls_handshake_timeout),
        ("shutdown_grace", l.shutdown_grace),
        ("auth_check_timeout", l.auth_check_timeout),
        ("auth_failure_window", l.auth_failure_window),
    ] {
        check_duration(errors, format!("limits.{field}"), value, POSITIVE);
    }
    if !(1..=64).contains(&l.auth_workers) {
        errors.push(ConfigError::new("limits.auth_workers", "must be 1..=64"));
    }
    if l.auth_check_timeout > l.data_block_timeout {
        errors.push(ConfigError::new(
            "limits.auth_check_timeout",
            format!(
                "must be at most data_block_timeout ({}): the client waits for our answer",
                humantime_serde::re::humantime::format_duration(l.data_block_timeout)
            ),
        ));
    }
}

pub(super) fn validate_relay(r: &RelayConfig, errors: &mut Vec<ConfigError>) {
    for (i, d) in r.local_domains.iter().enumerate() {
        let bare = d.strip_prefix("*.").unwrap_or(d);
        if bare.is_empty() || bare.contains(['@', ' ', '*']) || bare.starts_with('.') {
            errors.push(ConfigError::new(
                format!("relay.local_domains[{i}]"),
                format!("not a domain: {d:?}"),
            ));
        }
    }
}

pub(super) fn validate_users(users: &[UserConfig], errors: &mut Vec<ConfigError>) {
    for (i, u) in users.iter().enumerate() {
        if u.name.is_empty() {
            errors.push(ConfigError::new(
                format!("users[{i}].name"),
                "must not be empty",
            ));
        }
        if users[..i].iter().any(|o| o.name == u.name) {
            errors.push(ConfigError::new(
                format!("users[{i}].name"),
                format!("duplicate user {:?}", u.name),
            ));
        }
        if argon2::PasswordHash::new(&u.password_hash).is_err() {
            errors.push(ConfigError::new(
                format!("users[{i}].password_hash"),
                "not a PHC password hash; make one with `wasmrelay hash-password`",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::parse(text, Path::new("/nonexistent"))
            .map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn auth_checks_default_by_role_and_can_be_set() {
        let config = parse(
            "[[listeners]]\naddress = \"127.0.0.1:25\"\n\
             [[listeners]]\naddress = \"127.0.0.1:587\"\nrole = \"submission\"\nallow_plaintext_auth = true\n\
             [[listeners]]\naddress = \"127.0.0.1:2525\"\ncheck_auth = \"all\"\ndmarc_reject = true\n\
             [[listeners]]\naddress = \"127.0.0.1:2526\"\ncheck_auth = \"off\"\n",
        )
        .unwrap();
        let checks: Vec<_> = config.listeners.iter().map(|l| l.auth_check()).collect();
        assert_eq!(
            checks,
            [
                AuthCheck::Inbound,
                AuthCheck::Off,
                AuthCheck::All,
                AuthCheck::Off
            ]
        );
        assert!(!config.listeners[0].dmarc_reject);
        assert!(config.listeners[2].dmarc_reject);
        assert_eq!(config.limits.auth_check_timeout, Duration::from_secs(20));
    }

    #[test]
    fn auth_check_settings_are_validated() {
        let e = parse(
            "[[listeners]]\naddress = \"127.0.0.1:25\"\ncheck_auth = \"off\"\ndmarc_reject = true\n\
             [limits]\nauth_check_timeout = \"200s\"\n",
        )
        .unwrap_err();
        let keys: Vec<_> = e.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            ["listeners[0].dmarc_reject", "limits.auth_check_timeout"]
        );
        let e =
            parse("[[listeners]]\naddress = \"127.0.0.1:25\"\ncheck_auth = true\n").unwrap_err();
        assert!(e[0].starts_with("listeners[0].check_auth"), "{e:?}");
        let e = parse(
            "[[listeners]]\naddress = \"127.0.0.1:25\"\n[limits]\nauth_check_timeout = \"0s\"\n",
        )
        .unwrap_err();
        assert!(e[0].starts_with("limits.auth_check_timeout"), "{e:?}");
    }
}
