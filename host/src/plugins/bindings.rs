//! Host bindings generated from `plugin-sdk/wit` (the only copy of the interface), and the
//! conversions between its types and the host's.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../plugin-sdk/wit",
    imports: {
        "wasmrelay:plugin/host.dns-lookup": async | trappable,
        "wasmrelay:plugin/host.rate-limit": async | trappable,
        "wasmrelay:plugin/host.rate-limit-for-message": async | trappable,
        "wasmrelay:plugin/host.counter-add": async | trappable,
        "wasmrelay:plugin/host.counter-get": async | trappable,
        "wasmrelay:plugin/host.counter-hold": async | trappable,
        "wasmrelay:plugin/host.quota-add": async | trappable,
        "wasmrelay:plugin/host.quota-get": async | trappable,
        "wasmrelay:plugin/host.quota-add-for-message": async | trappable,
        "wasmrelay:plugin/host.kv-get": async | trappable,
        "wasmrelay:plugin/host.kv-set": async | trappable,
        "wasmrelay:plugin/host.kv-add": async | trappable,
        "wasmrelay:plugin/host.kv-delete": async | trappable,
        "wasmrelay:plugin/host.list-contains": async | trappable,
        "wasmrelay:plugin/host.list-add": async | trappable,
        "wasmrelay:plugin/host.list-remove": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "wasmrelay:plugin/types.context": super::context::ContextRes,
        "wasmrelay:plugin/types.message": super::message::MessageRes,
        "wasmrelay:plugin/types.envelope": super::envelope::EnvelopeRes,
        "wasmrelay:plugin/types.recipient": super::envelope::RecipientRes,
    },
});

use wasmrelay_codec::reply::{Enhanced, Reply};

use self::wasmrelay::plugin::host as host_wit;
use self::wasmrelay::plugin::types as wit;
use super::relay_limits::{KeyPart, RelayCount, RelayLimit, RelayRate};
use super::types::{self as host, Hook};
use crate::state;

/// Longest reply text or reason a plugin may return.
const MAX_TEXT: usize = 512;

/// Why a plugin's return value was refused.
pub(crate) type Malformed = String;

/// The state backend's answers and errors as the `host` interface gives them to plugins.
impl From<crate::state::StateError> for host_wit::StateError {
    fn from(e: crate::state::StateError) -> Self {
        use crate::state::StateError;
        match e {
            StateError::Unavailable(m) => host_wit::StateError::Unavailable(m),
            StateError::Denied(m) => host_wit::StateError::Denied(m),
            StateError::Invalid(m) => host_wit::StateError::Invalid(m),
        }
    }
}

pub(crate) fn quota_window(w: host_wit::QuotaWindow) -> state::QuotaWindow {
    match w {
        host_wit::QuotaWindow::Minute => state::QuotaWindow::Minute,
        host_wit::QuotaWindow::Hour => state::QuotaWindow::Hour,
        host_wit::QuotaWindow::Day => state::QuotaWindow::Day,
    }
}

pub(crate) fn rate_decision(d: state::RateDecision) -> host_wit::RateDecision {
    host_wit::RateDecision {
        allowed: d.allowed,
        remaining: d.remaining,
        retry_after_ms: d.retry_after.as_millis().min(u64::MAX as u128) as u64,
    }
}

pub(crate) fn quota_decision(d: state::QuotaDecision) -> host_wit::QuotaDecision {
    host_wit::QuotaDecision {
        allowed: d.allowed,
        total: d.total,
        reset_ms: d.reset_ms,
    }
}

/// A declared limit in the host's terms, or why it is refused.
pub(crate) fn relay_limit(hook: Hook, limit: host_wit::RelayLimit) -> Result<RelayLimit, String> {
    let key = |parts: Vec<host_wit::KeyPart>| -> Vec<KeyPart> {
        parts
            .into_iter()
            .map(|part| match part {
                host_wit::KeyPart::ClientNetwork(p) => KeyPart::ClientNetwork {
                    ipv4: p.ipv4,
                    ipv6: p.ipv6,
                },
                host_wit::KeyPart::Sender => KeyPart::Sender,
                host_wit::KeyPart::SenderDomain => KeyPart::SenderDomain,
                host_wit::KeyPart::AuthUser => KeyPart::AuthUser,
            })
            .collect()
    };
    Ok(match limit {
        host_wit::RelayLimit::Rate(r) => RelayLimit::Rate(RelayRate::new(
            hook,
            r.key_start,
            key(r.key),
            (r.rate, r.period_ms, r.burst),
        )?),
        host_wit::RelayLimit::Concurrent(c) => RelayLimit::Concurrent(RelayCount::new(
            hook,
            c.key_start,
            key(c.key),
            c.max,
            c.epoch_ms,
        )?),
    })
}

impl From<wit::Hook> for Hook {
    fn from(h: wit::Hook) -> Hook {
        match h {
            wit::Hook::Connect => Hook::Connect,
            wit::Hook::Helo => Hook::Helo,
            wit::Hook::Auth => Hook::Auth,
            wit::Hook::MailFrom => Hook::MailFrom,
            wit::Hook::Rcpt => Hook::Rcpt,
            wit::Hook::Data => Hook::Data,
            wit::Hook::Queued => Hook::Queued,
            wit::Hook::Closed => Hook::Closed,
            wit::Hook::Route => Hook::Route,
            wit::Hook::RecipientCopy => Hook::RecipientCopy,
            wit::Hook::DeliveryResult => Hook::DeliveryResult,
        }
    }
}

/// Checks a plugin reply against the code range its verdict allows.
fn reply(r: wit::Reply, codes: std::ops::RangeInclusive<u16>) -> Result<Reply, Malformed> {
    if !codes.contains(&r.code) {
        return Err(format!("reply code {} outside {codes:?}", r.code));
    }
    if r.text.len() > MAX_TEXT {
        return Err(format!(
            "reply text of {} bytes (max {MAX_TEXT})",
            r.text.len()
        ));
    }
    let enhanced = match r.enhanced {
        None => None,
        Some(e) => {
            if u16::from(e.class) != r.code / 100 || e.subject > 999 || e.detail > 999 {
                return Err(format!(
                    "enhanced code {}.{}.{} does not fit reply code {}",
                    e.class, e.subject, e.detail, r.code
                ));
            }
            Some(Enhanced(e.class, e.subject, e.detail))
        }
    };
    let text = if r.text.trim().is_empty() {
        "Policy decision".to_string()
    } else {
        r.text
    };
    Ok(match enhanced {
        Some(e) => Reply::new(r.code, e, text),
        None => Reply::plain(r.code, text),
    })
}

pub(crate) fn verdict(v: wit::Verdict) -> Result<host::Verdict, Malformed> {
    Ok(match v {
        wit::Verdict::Continue => host::Verdict::Continue,
        wit::Verdict::Accept => host::Verdict::Accept,
        wit::Verdict::Reject(r) => host::Verdict::Reject(reply(r, 500..=599)?),
        wit::Verdict::Tempfail(r) => host::Verdict::Tempfail(reply(r, 400..=499)?),
        wit::Verdict::Disconnect(r) => host::Verdict::Disconnect(reply(r, 400..=599)?),
    })
}

fn reason(s: String) -> Result<String, Malformed> {
    if s.len() > MAX_TEXT || s.contains(['\r', '\n']) {
        return Err("route reason too long or not one line".to_string());
    }
    Ok(s)
}

/// Longest pool name a route may name.
const MAX_POOL_NAME: usize = 64;

pub(crate) fn tls_policy(t: wit::TlsPolicy) -> host::TlsPolicy {
    match t {
        wit::TlsPolicy::None => host::TlsPolicy::None,
        wit::TlsPolicy::Opportunistic => host::TlsPolicy::Opportunistic,
        wit::TlsPolicy::Require => host::TlsPolicy::Require,
    }
}

/// Validates a route decision; `pools` are the configured pool names.
pub(crate) fn route(
    r: wit::RouteDecision,
    pools: &[String],
) -> Result<host::RouteDecision, Malformed> {
    Ok(match r {
        wit::RouteDecision::Continue => host::RouteDecision::Continue,
        wit::RouteDecision::Pool(name) => {
            if name.len() > MAX_POOL_NAME || !pools.contains(&name) {
                let shown: String = name.chars().take(MAX_POOL_NAME).collect();
                return Err(format!("route names unknown pool {shown:?}"));
            }
            host::RouteDecision::Pool(name)
        }
        wit::RouteDecision::Mx(tls) => host::RouteDecision::Mx(tls_policy(tls)),
        wit::RouteDecision::Hold(s) => host::RouteDecision::Hold(reason(s)?),
        wit::RouteDecision::Drop(s) => host::RouteDecision::Drop(reason(s)?),
        wit::RouteDecision::Defer(r) => host::RouteDecision::Defer(reply(r, 400..=499)?),
        wit::RouteDecision::Bounce(r) => host::RouteDecision::Bounce(reply(r, 500..=599)?),
    })
}

pub(crate) fn wit_reply(r: &Reply) -> wit::Reply {
    wit::Reply {
        code: r.code,
        enhanced: r.enhanced.map(|e| wit::EnhancedCode {
            class: e.0,
            subject: e.1,
            detail: e.2,
        }),
        text: r.lines.join(" "),
    }
}

pub(crate) fn delivery_report(r: &host::DeliveryReport) -> wit::DeliveryReport {
    wit::DeliveryReport {
        domain: r.domain.clone(),
        recipients: r.recipients.clone(),
        status: match r.status {
            host::DeliveryStatus::Delivered => wit::DeliveryStatus::Delivered,
            host::DeliveryStatus::Deferred => wit::DeliveryStatus::Deferred,
            host::DeliveryStatus::Bounced => wit::DeliveryStatus::Bounced,
            host::DeliveryStatus::Held => wit::DeliveryStatus::Held,
            host::DeliveryStatus::Dropped => wit::DeliveryStatus::Dropped,
        },
        remote_host: r.remote_host.clone(),
        reply: r.reply.as_ref().map(wit_reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(code: u16, enhanced: Option<(u8, u16, u16)>, text: &str) -> wit::Reply {
        wit::Reply {
            code,
            enhanced: enhanced.map(|(class, subject, detail)| wit::EnhancedCode {
                class,
                subject,
                detail,
            }),
            text: text.into(),
        }
    }

    #[test]
    fn verdict_replies_must_fit_their_kind() {
        let ok = verdict(wit::Verdict::Reject(r(550, Some((5, 1, 1)), "no"))).unwrap();
        assert_eq!(
            ok,
            host::Verdict::Reject(Reply::new(550, Enhanced(5, 1, 1), "no"))
        );
        for bad in [
            wit::Verdict::Reject(r(250, None, "ok")),
            wit::Verdict::Tempfail(r(550, None, "no")),
            wit::Verdict::Reject(r(550, Some((4, 1, 1)), "class mismatch")),
            wit::Verdict::Reject(r(550, None, &"x".repeat(MAX_TEXT + 1))),
        ] {
            assert!(verdict(bad).is_err());
        }
    }

    #[test]
    fn routes_are_validated() {
        let pools = vec!["newsletters".to_string()];
        let ok = route(wit::RouteDecision::Pool("newsletters".into()), &pools).unwrap();
        assert_eq!(ok, host::RouteDecision::Pool("newsletters".into()));
        assert!(route(wit::RouteDecision::Pool("other".into()), &pools).is_err());
        assert!(route(wit::RouteDecision::Pool("x".repeat(10_000)), &pools).is_err());
        assert_eq!(
            route(wit::RouteDecision::Mx(wit::TlsPolicy::Require), &pools).unwrap(),
            host::RouteDecision::Mx(host::TlsPolicy::Require)
        );
        assert!(route(wit::RouteDecision::Hold("a\r\nb".into()), &pools).is_err());
        assert!(route(wit::RouteDecision::Defer(r(550, None, "x")), &pools).is_err());
        assert!(route(wit::RouteDecision::Bounce(r(451, None, "x")), &pools).is_err());
    }
}
