//! What one attempt did for one recipient, as typed values: the next hop's [`Reply`] stays a
//! reply all the way to the `delivery-result` hook, the spool's `last_reply` and the DSN,
//! and the words of each are formatted here, in one place.

use std::fmt;

use wasmrelay_codec::reply::{Enhanced, Reply};

/// How one recipient's delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the next hop (`remote` is `name[ip]:port`) with this reply.
    Delivered { remote: String, reply: Reply },
    /// Try again later.
    Transient(Failure),
    /// Give up and bounce.
    Permanent(Failure),
    /// A route decision keeps the recipient queued, untried, until `queue flush` (or expiry).
    Held(String),
    /// A route decision discarded the recipient: no delivery, no bounce.
    Dropped(String),
}

impl Outcome {
    /// Classifies a failure by its status class.
    pub fn failed(f: Failure) -> Outcome {
        if f.is_permanent() {
            Outcome::Permanent(f)
        } else {
            Outcome::Transient(f)
        }
    }
}

/// A failed attempt: the status code for the DSN, who answered, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// RFC 3463 status (`5.1.1`, `4.4.1` ...).
    pub status: Enhanced,
    /// The remote host that answered (`name[ip]:port`), if any got that far.
    pub remote: Option<String>,
    pub reason: Reason,
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The next hop's SMTP reply.
    Remote(Reply),
    /// A plugin's decision (`route` defer or bounce, `recipient-copy` tempfail or reject).
    Policy(Reply),
    /// What the relay found itself: DNS, TLS policy, timeouts, expiry.
    Local(String),
}

impl Failure {
    /// A failure we diagnosed ourselves (DNS, TLS policy, timeouts ...).
    pub fn local(status: Enhanced, diagnostic: impl Into<String>) -> Self {
        Failure {
            status,
            remote: None,
            reason: Reason::Local(diagnostic.into()),
        }
    }

    /// The next hop `remote` refused with `reply`: its own enhanced code when it fits the
    /// reply's class, else a generic one of that class.
    pub fn remote_reply(remote: &str, reply: &Reply) -> Self {
        Failure {
            status: status_of(reply),
            remote: Some(remote.to_string()),
            reason: Reason::Remote(reply.clone()),
        }
    }

    /// A plugin's 4xx or 5xx decision.
    pub fn policy(reply: Reply) -> Self {
        Failure {
            status: status_of(&reply),
            remote: None,
            reason: Reason::Policy(reply),
        }
    }

    /// Whether it is a permanent failure, going by its status class.
    pub fn is_permanent(&self) -> bool {
        self.status.0 == 5
    }

    /// Hard or soft, by status and words (see [`crate::feedback::classify`]).
    pub fn class(&self) -> crate::feedback::BounceClass {
        crate::feedback::classify(self.status, &self.reason.to_string())
    }

    /// The failure as a reply, for the `delivery-result` hook: the remote's or the plugin's
    /// own, or one made of our status and words (451 or 550 by class).
    pub fn reply(&self) -> Reply {
        match &self.reason {
            Reason::Remote(r) | Reason::Policy(r) => r.clone(),
            Reason::Local(text) => {
                let code = if self.is_permanent() { 550 } else { 451 };
                Reply::new(code, self.status, text.clone())
            }
        }
    }

    /// The same failure reported at expiry: status 4.4.7, the last error kept in the words.
    pub fn expired(self) -> Failure {
        Failure {
            status: Enhanced(4, 4, 7),
            reason: Reason::Local(format!(
                "delivery time expired; last error: {}",
                self.reason
            )),
            remote: self.remote,
        }
    }

    /// The line kept as the recipient's `last_reply` and shown in a DSN's readable part.
    pub fn summary(&self) -> String {
        match &self.remote {
            Some(r) => format!("{r}: {}", self.reason),
            None => self.reason.to_string(),
        }
    }

    /// The RFC 3464 `Diagnostic-Code` value: `smtp; 550 5.1.1 ...` for a remote reply, our
    /// own `X-wasmrelay; ...` for everything else.
    pub fn diagnostic_code(&self) -> String {
        let kind = match self.reason {
            Reason::Remote(_) => "smtp",
            Reason::Policy(_) | Reason::Local(_) => "X-wasmrelay",
        };
        format!("{kind}; {}", self.reason)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Remote(r) => write!(f, "{r}"),
            Reason::Policy(r) => write!(f, "policy: {r}"),
            Reason::Local(text) => f.write_str(text),
        }
    }
}

fn status_of(reply: &Reply) -> Enhanced {
    let class = if reply.is_permanent() { 5 } else { 4 };
    match reply.enhanced {
        Some(e) if e.0 == class => e,
        _ => Enhanced(class, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_replies_by_reason() {
        let remote = Failure::remote_reply(
            "mx.test[127.0.0.1]:25",
            &Reply::new(550, Enhanced(5, 1, 1), "no such user"),
        );
        assert_eq!(remote.status, Enhanced(5, 1, 1));
        assert!(remote.is_permanent());
        assert_eq!(
            remote.summary(),
            "mx.test[127.0.0.1]:25: 550 5.1.1 no such user"
        );
        assert_eq!(remote.diagnostic_code(), "smtp; 550 5.1.1 no such user");
        assert_eq!(remote.reply().code, 550);

        // A reply whose enhanced code contradicts its class gets a generic one.
        let odd = Failure::remote_reply("r", &Reply::new(451, Enhanced(5, 1, 1), "busy"));
        assert_eq!(odd.status, Enhanced(4, 0, 0));

        let policy = Failure::policy(Reply::new(451, Enhanced(4, 7, 1), "over quota"));
        assert_eq!(policy.summary(), "policy: 451 4.7.1 over quota");
        assert_eq!(
            policy.diagnostic_code(),
            "X-wasmrelay; policy: 451 4.7.1 over quota"
        );

        let local = Failure::local(Enhanced(4, 4, 1), "connection refused");
        assert_eq!(
            local.reply(),
            Reply::new(451, Enhanced(4, 4, 1), "connection refused")
        );
        let expired = local.expired();
        assert_eq!(expired.status, Enhanced(4, 4, 7));
        assert_eq!(
            expired.summary(),
            "delivery time expired; last error: connection refused"
        );
        assert!(matches!(
            Outcome::failed(remote),
            Outcome::Permanent(Failure { .. })
        ));
    }
}
