//! SMTP AUTH (RFC 4954) with PLAIN and LOGIN against argon2 password hashes from config.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;
use wasmrelay_codec::command::LineReader;
use wasmrelay_codec::reply::{Enhanced, Reply};

use super::{Flow, Session};
use crate::config::{LimitsConfig, UserConfig};
use crate::smtp::auth_guard::{AuthGuard, Refusal};

/// The AUTH accounts, name → PHC hash, and the brakes on guessing shared by all sessions.
#[derive(Clone)]
pub struct Users {
    accounts: Arc<HashMap<String, String>>,
    guard: Arc<AuthGuard>,
}

impl Default for Users {
    fn default() -> Self {
        Users::from_config(&[], AuthGuard::new(&LimitsConfig::default()))
    }
}

impl Users {
    pub fn from_config(users: &[UserConfig], guard: Arc<AuthGuard>) -> Self {
        Users {
            accounts: Arc::new(
                users
                    .iter()
                    .map(|u| (u.name.clone(), u.password_hash.clone()))
                    .collect(),
            ),
            guard,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Checks a password on the guard's bounded pool (argon2 is slow on purpose). Unknown
    /// users cost the same as known ones so timing does not reveal which names exist.
    pub async fn verify(&self, user: &str, password: &str) -> Result<bool, Refusal> {
        static DUMMY: OnceLock<String> = OnceLock::new();
        let known = self.accounts.get(user).cloned();
        let hash = match &known {
            Some(h) => h.clone(),
            None => DUMMY
                .get_or_init(|| hash_password("unknown user").unwrap_or_default())
                .clone(),
        };
        let password = password.to_string();
        let ok = self
            .guard
            .run(move || {
                PasswordHash::new(&hash)
                    .map(|h| {
                        Argon2::default()
                            .verify_password(password.as_bytes(), &h)
                            .is_ok()
                    })
                    .unwrap_or(false)
            })
            .await?;
        Ok(ok && known.is_some())
    }
}

/// Makes a PHC argon2id hash for `[[users]]`.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// AUTH is offered once the channel is encrypted, or in the clear only to loopback clients
    /// on a listener that explicitly allows it.
    pub(super) fn auth_offered(&self) -> bool {
        !self.env.users.is_empty()
            && (self.ctx.tls.is_some()
                || (self.env.listener.allow_plaintext_auth
                    && self.ctx.peer.ip().to_canonical().is_loopback()))
    }

    pub(super) async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> Flow {
        if !self.ctx.esmtp {
            return self.fail(Reply::new(503, Enhanced(5, 5, 1), "Send EHLO first"));
        }
        if self.ctx.auth_user.is_some() {
            return self.fail(Reply::new(503, Enhanced(5, 5, 1), "Already authenticated"));
        }
        if self.txn.is_some() {
            return self.fail(Reply::new(
                503,
                Enhanced(5, 5, 1),
                "AUTH not allowed during a mail transaction",
            ));
        }
        if !self.auth_offered() {
            if self.env.users.is_empty() {
                return self.fail(Reply::new(502, Enhanced(5, 5, 1), "AUTH not available"));
            }
            return self.fail(Reply::new(
                538,
                Enhanced(5, 7, 11),
                "Encryption required: issue STARTTLS first",
            ));
        }
        let ip = self.ctx.peer.ip();
        if let Some(left) = self.env.users.guard.blocked(ip) {
            tracing::warn!(%ip, "AUTH refused: too many failures from this client");
            return self.fail(Reply::new(
                454,
                Enhanced(4, 7, 0),
                format!(
                    "Too many failed authentications from your address; try again in {} minutes",
                    left.as_secs().div_ceil(60).max(1)
                ),
            ));
        }
        let credentials = match mechanism.to_ascii_uppercase().as_str() {
            "PLAIN" => self.sasl_plain(initial).await,
            "LOGIN" => self.sasl_login(initial).await,
            _ => {
                return self.fail(Reply::new(
                    504,
                    Enhanced(5, 5, 4),
                    "Unrecognized authentication mechanism",
                ))
            }
        };
        let (user, password) = match credentials {
            Ok(c) => c,
            Err(SaslError::Closed) => return Flow::Close,
            Err(SaslError::Reply(r)) => return self.fail(r),
        };
        let verified = match self.env.users.verify(&user, &password).await {
            Ok(verified) => verified,
            Err(_) => {
                tracing::warn!(%ip, "AUTH deferred: too many password checks waiting");
                return self.fail(Reply::new(
                    454,
                    Enhanced(4, 7, 0),
                    "Temporary authentication failure, try again later",
                ));
            }
        };
        if verified {
            if let Some(flow) = self.hook_auth(&user).await {
                info!(user = %user, "authentication refused by policy");
                return flow;
            }
            info!(user = %user, "authenticated");
            self.ctx.auth_user = Some(user);
            self.ok(Reply::new(
                235,
                Enhanced(2, 7, 0),
                "Authentication successful",
            ))
        } else {
            let failures = self.env.users.guard.record_failure(ip);
            info!(user = %user, %ip, failures, "authentication failed");
            self.fail(Reply::new(
                535,
                Enhanced(5, 7, 8),
                "Authentication credentials invalid",
            ))
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`; an authzid other than the user is refused.
    async fn sasl_plain(&mut self, initial: Option<String>) -> Result<(String, String), SaslError> {
        let response = match initial {
            Some(r) if r != "=" => r,
            Some(_) => String::new(),
            None => self.challenge("").await?,
        };
        let decoded = decode(&response)?;
        let mut parts = decoded.split(|&b| b == 0);
        let (Some(authz), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        if !authz.is_empty() && authz != user {
            return Err(SaslError::Reply(Reply::new(
                535,
                Enhanced(5, 7, 8),
                "Authorization identity not permitted",
            )));
        }
        Ok((utf8(user)?, utf8(pass)?))
    }

    async fn sasl_login(&mut self, initial: Option<String>) -> Result<(String, String), SaslError> {
        let user = match initial {
            Some(r) => r,
            None => self.challenge(&BASE64.encode("Username:")).await?,
        };
        let user = utf8(&decode(&user)?)?;
        let pass = self.challenge(&BASE64.encode("Password:")).await?;
        Ok((user, utf8(&decode(&pass)?)?))
    }

    /// Sends a `334` challenge and reads one response line; `*` cancels (RFC 4954 §4).
    async fn challenge(&mut self, text: &str) -> Result<String, SaslError> {
        self.io.reply(&Reply::plain(334, text));
        let mut lines = LineReader::new(self.env.limits.max_command_line.max(12288), false);
        let timeout = self.env.limits.command_timeout;
        loop {
            match lines.next_line(self.io.buffer()) {
                Ok(Some(line)) => {
                    let line = String::from_utf8_lossy(&line).trim().to_string();
                    if line == "*" {
                        return Err(SaslError::Reply(Reply::new(
                            501,
                            Enhanced(5, 7, 0),
                            "Authentication cancelled",
                        )));
                    }
                    return Ok(line);
                }
                Ok(None) => {
                    if self.io.flush().await.is_err() || self.io.read_more(timeout).await.is_err() {
                        return Err(SaslError::Closed);
                    }
                }
                Err(e) => return Err(SaslError::Reply(e.reply())),
            }
        }
    }
}

enum SaslError {
    Reply(Reply),
    Closed,
}

fn malformed() -> SaslError {
    SaslError::Reply(Reply::new(
        501,
        Enhanced(5, 5, 2),
        "Malformed authentication response",
    ))
}

fn decode(s: &str) -> Result<Vec<u8>, SaslError> {
    BASE64.decode(s.trim()).map_err(|_| malformed())
}

fn utf8(b: &[u8]) -> Result<String, SaslError> {
    String::from_utf8(b.to_vec()).map_err(|_| malformed())
}
