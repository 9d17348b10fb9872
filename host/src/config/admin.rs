//! `[admin]`: the admin HTTP API, the dashboard and `/metrics`.
//!
//! ```toml
//! [admin]
//! listen = "127.0.0.1:8026"          # absent (the default) = no admin server
//! token_file = "/etc/wasmrelay/admin.token"   # or: token = "..."
//! ```
//!
//! On a loopback address a token is optional (then every local user can use the API: set
//! one on a shared machine); on any other address one is required, and `check-config`
//! refuses the config without it. Like `[tracking]`, the section is read at start; a change
//! needs a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{check_duration, ConfigError, POSITIVE};

/// Shortest token accepted: 16 bytes, so it cannot be guessed over the network.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where the admin server listens (plain HTTP); absent turns it off. Put TLS in front
    /// of it (a reverse proxy) before listening beyond loopback.
    pub listen: Option<SocketAddr>,
    /// The bearer token every request must carry (`Authorization: Bearer TOKEN`), at least
    /// 16 bytes. Required unless `listen` is a loopback address.
    pub token: Option<String>,
    /// A file holding the token (trailing whitespace ignored), instead of `token`; relative
    /// to the config file.
    pub token_file: Option<PathBuf>,
    /// HTTP connections served at once; more wait to be accepted.
    pub max_connections: u32,
    /// Time for a client to send a request (headers and body); idle keep-alive connections
    /// are closed after it too.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            token: None,
            token_file: None,
            max_connections: 64,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("max_connections", &self.max_connections)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl AdminConfig {
    pub fn is_enabled(&self) -> bool {
        self.listen.is_some()
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.token_file {
            super::resolve(base, p);
        }
    }

    /// The token from `token` or `token_file`, if one is configured.
    pub fn load_token(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    format!("{key}.token_file"),
                    "set token or token_file, not both",
                ))
            }
            (Some(t), None) => t.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ConfigError::new(
                        format!("{key}.token_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
                .trim_end()
                .to_string(),
            (None, None) => return Ok(None),
        };
        let which = if self.token.is_some() {
            "token"
        } else {
            "token_file"
        };
        if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_control() || c == ' ') {
            return Err(ConfigError::new(
                format!("{key}.{which}"),
                format!("the token must be at least {MIN_TOKEN_LEN} printable characters without spaces"),
            ));
        }
        Ok(Some(token))
    }

    pub fn validate(&self, key: &str, errors: &mut Vec<ConfigError>) {
        let Some(listen) = self.listen else {
            return;
        };
        match self.load_token(key) {
            Err(e) => errors.push(e),
            Ok(None) if !listen.ip().to_canonical().is_loopback() => errors.push(ConfigError::new(
                format!("{key}.token"),
                format!(
                    "required: {key}.listen ({listen}) is not a loopback address, so every \
                     request needs a bearer token (set token or token_file)"
                ),
            )),
            Ok(_) => {}
        }
        if self.max_connections == 0 {
            errors.push(ConfigError::new(
                format!("{key}.max_connections"),
                "must be at least 1",
            ));
        }
        check_duration(
            errors,
            format!("{key}.request_timeout"),
            self.request_timeout,
            POSITIVE,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn errors(text: &str) -> Vec<String> {
        match Config::parse(text, Path::new("/nonexistent")) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    const LISTENER: &str = "[[listeners]]\naddress = \"127.0.0.1:2525\"\n";

    #[test]
    fn off_by_default_and_loopback_needs_no_token() {
        let config = Config::parse(LISTENER, Path::new("/")).unwrap();
        assert!(!config.admin.is_enabled());
        for listen in ["127.0.0.1:8026", "[::1]:8026", "127.0.0.2:0"] {
            let text = format!("{LISTENER}[admin]\nlisten = \"{listen}\"\n");
            assert_eq!(errors(&text), Vec::<String>::new(), "{listen}");
        }
    }

    #[test]
    fn other_addresses_need_a_token() {
        let e = errors(&format!("{LISTENER}[admin]\nlisten = \"0.0.0.0:8026\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("admin.token: required: admin.listen (0.0.0.0:8026)"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{LISTENER}[admin]\nlisten = \"[::ffff:10.0.0.1]:8026\"\n"
        ));
        assert!(e[0].starts_with("admin.token: required"), "{e:?}");
        let ok =
            format!("{LISTENER}[admin]\nlisten = \"0.0.0.0:8026\"\ntoken = \"0123456789abcdef\"\n");
        assert_eq!(errors(&ok), Vec::<String>::new());
    }

    #[test]
    fn bad_tokens_are_named() {
        let short = format!("{LISTENER}[admin]\nlisten = \"127.0.0.1:1\"\ntoken = \"short\"\n");
        let e = errors(&short);
        assert!(e[0].starts_with("admin.token: the token must be"), "{e:?}");
        let both = format!(
            "{LISTENER}[admin]\nlisten = \"127.0.0.1:1\"\ntoken = \"0123456789abcdef\"\n\
             token_file = \"t\"\n"
        );
        assert!(errors(&both)[0].starts_with("admin.token_file: set token or token_file"));
        let missing = format!("{LISTENER}[admin]\nlisten = \"0.0.0.0:1\"\ntoken_file = \"nope\"\n");
        let e = errors(&missing);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("admin.token_file: cannot read /nonexistent/nope"),
            "{e:?}"
        );
        let unknown = format!("{LISTENER}[admin]\nlisten = \"127.0.0.1:1\"\npassword = \"x\"\n");
        assert!(errors(&unknown)[0].starts_with("admin.password: unknown field"));
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin.token"), "0123456789abcdefXYZ\n").unwrap();
        let text =
            format!("{LISTENER}[admin]\nlisten = \"0.0.0.0:1\"\ntoken_file = \"admin.token\"\n");
        let config = Config::parse(&text, dir.path()).unwrap();
        assert_eq!(
            config.admin.load_token("admin").unwrap().as_deref(),
            Some("0123456789abcdefXYZ")
        );
        assert!(!format!("{:?}", config.admin).contains("0123456789"));
    }
}
