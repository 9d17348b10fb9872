//! Test plugin for per-recipient copies and routing by annotation, a small tracker:
//! - data: a message with `X-Stream: bulk` gets the annotation `stream=bulk`;
//! - route: `stream=bulk` goes to the pool `bulk`; `hold.test` is held, `drop.test` dropped;
//!   `stats.test` is deferred with the counters below in the reply text (how a test reads
//!   them through `queue show`); anything else continues;
//! - recipient-copy: every recipient whose local part does not start with `plain` gets
//!   `X-Recipient-Token: <token>` and `X-Copy-Attempt: <attempt>`, and each
//!   `https://track.example/c` link in the body becomes `https://track.example/c?t=<token>`.
//!   The token is FNV-1a 64 of `secret NUL queue-id NUL recipient`, in hex: deterministic,
//!   so a retry renders the same copy;
//! - delivery-result: counts results per status (`held`, `dropped`, ...), and the most hook
//!   calls one instance answered (one instance serves a whole delivery batch).
//!
//! Config: `{"secret": "..."}`.
use std::time::Duration;

use wasmrelay_plugin_sdk::{
    export_plugin, host, Context, DeliveryReport, DeliveryStatus, Envelope, Hook, Message, Plugin,
    Recipient, Reply, RouteDecision, Verdict,
};

const LINK: &[u8] = b"https://track.example/c";
/// Counters live this long; longer than any test.
const WINDOW: Duration = Duration::from_secs(86_400);

struct Tracker {
    secret: String,
    /// Hook calls this instance answered.
    calls: i64,
}

/// Finds `"key":"value"` in flat JSON; enough for a test plugin without serde.
fn json_str(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = json[start..].find('"')?;
    Some(json[start..start + end].to_string())
}

fn token(secret: &str, queue_id: &str, rcpt: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        secret.as_bytes(),
        b"\0",
        queue_id.as_bytes(),
        b"\0",
        rcpt.as_bytes(),
    ] {
        for &b in part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

fn replace_all(body: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + to.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

fn count(name: &str) -> i64 {
    host::counter_get(&format!("results:{name}")).unwrap_or(-1)
}

impl Tracker {
    fn called(&mut self) {
        self.calls += 1;
    }
}

impl Plugin for Tracker {
    const HOOKS: &'static [Hook] = &[
        Hook::Data,
        Hook::Route,
        Hook::RecipientCopy,
        Hook::DeliveryResult,
    ];

    fn init(config: &str) -> Result<Self, String> {
        let secret = json_str(config, "secret").ok_or("config needs a secret")?;
        Ok(Tracker { secret, calls: 0 })
    }

    fn data(&mut self, ctx: &Context, msg: &Message) -> Verdict {
        if msg.header("x-stream").iter().any(|v| v == "bulk") {
            if let Err(e) = ctx.set_annotation("stream", "bulk") {
                host::warn(&format!("cannot annotate: {e}"));
            }
        }
        Verdict::Continue
    }

    fn route(&mut self, env: &Envelope, domain: &str, _rcpts: &[String]) -> RouteDecision {
        self.called();
        if env.annotation("stream").as_deref() == Some("bulk") {
            return RouteDecision::Pool("bulk".into());
        }
        match domain {
            "hold.test" => RouteDecision::Hold("awaiting review".into()),
            "drop.test" => RouteDecision::Drop("unwanted".into()),
            "stats.test" => {
                let text = format!(
                    "stats held={} dropped={} delivered={} deferred={} batch-calls={}",
                    count("held"),
                    count("dropped"),
                    count("delivered"),
                    count("deferred"),
                    count("batch-calls"),
                );
                RouteDecision::Defer(Reply::new(451, "4.3.0", text))
            }
            _ => RouteDecision::Continue,
        }
    }

    fn recipient_copy(&mut self, env: &Envelope, rcpt: &Recipient, msg: &Message) -> Verdict {
        self.called();
        let address = rcpt.address();
        if address.starts_with("plain") {
            return Verdict::Continue;
        }
        let token = token(&self.secret, &env.queue_id(), &address);
        msg.add_header("X-Recipient-Token", &token);
        msg.add_header("X-Copy-Attempt", &env.attempt().to_string());
        let body = msg.read_body(0, msg.body_size() as u32);
        let link = format!("{}?t={token}", String::from_utf8_lossy(LINK));
        let rewritten = replace_all(&body, LINK, link.as_bytes());
        if rewritten != body {
            msg.replace_body(&rewritten);
        }
        Verdict::Continue
    }

    fn delivery_result(&mut self, _env: &Envelope, report: &DeliveryReport) {
        self.called();
        let status = match report.status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Deferred => "deferred",
            DeliveryStatus::Bounced => "bounced",
            DeliveryStatus::Held => "held",
            DeliveryStatus::Dropped => "dropped",
        };
        let n = report.recipients.len() as i64;
        let _ = host::counter_add(&format!("results:{status}"), n, WINDOW);
        host::emit(
            "delivery-result",
            &[("status", status), ("domain", &report.domain)],
        );
        // The most calls one instance has answered so far.
        let best = count("batch-calls");
        if self.calls > best {
            let _ = host::counter_add("results:batch-calls", self.calls - best.max(0), WINDOW);
        }
    }
}

export_plugin!(Tracker);
