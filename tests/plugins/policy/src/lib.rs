//! Well-behaved test plugin exercising every kind of decision:
//! - connect: rejects the IP given as `"block_ip":"..."` in its config, and IPv4 clients
//!   listed in the DNS blocklist `bl.test` (an A record for the reversed address);
//! - mail-from: rate-limits each sender to 2 messages per minute (GCRA, burst 2);
//! - rcpt: rejects `blocked@...` with 550 5.1.1, accepts `vip@...`;
//! - data: adds `X-Policy: checked`, prepends `X-Seen-By: policy`, removes `X-Remove-Me`,
//!   replaces `Subject` when it is `rewrite me`, replaces the body when it contains `REPLACE-BODY`,
//!   and emits the event `policy-checked` with the recipient count, asked for and counted;
//! - route: `routed.test` to the smart-host pool `routed`, `hold.test` held, `drop.test`
//!   dropped, `mx.test` to MX with TLS required;
//! - delivery-result: counts results per status in kv;
//! - init: refuses a config with a `fail_init` key, and fails if it can see any
//!   environment variable, file or socket (the sandbox is deny-all).
use std::time::Duration;

use wasmrelay_plugin_sdk::host::{DnsError, RecordType};
use wasmrelay_plugin_sdk::{
    export_plugin, host, Address, Context, DeliveryReport, Envelope, Hook, Message, Plugin,
    RouteDecision, TlsPolicy, Verdict,
};

struct Policy {
    block_ip: Option<String>,
}

/// Finds `"key":"value"` in flat JSON; enough for a test plugin without serde.
fn json_str(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = json[start..].find('"')?;
    Some(json[start..start + end].to_string())
}

impl Plugin for Policy {
    const HOOKS: &'static [Hook] = &[
        Hook::Connect,
        Hook::MailFrom,
        Hook::Rcpt,
        Hook::Data,
        Hook::Route,
        Hook::DeliveryResult,
    ];

    fn init(config: &str) -> Result<Self, String> {
        if !config.trim_start().starts_with('{') || config.contains("\"fail_init\"") {
            return Err(format!("refusing config {config}"));
        }
        // The sandbox is deny-all: no environment, no files, no sockets.
        if std::env::vars().next().is_some()
            || std::fs::read_dir("/").is_ok()
            || std::fs::read("/etc/hostname").is_ok()
            || std::net::TcpStream::connect("127.0.0.1:25").is_ok()
        {
            return Err("the sandbox leaks environment, files or network".into());
        }
        Ok(Policy {
            block_ip: json_str(config, "block_ip"),
        })
    }

    fn connect(&mut self, ctx: &Context) -> Verdict {
        if self.block_ip.as_deref() == Some(ctx.remote_ip().as_str()) {
            host::emit("blocked-ip", &[("ip", &ctx.remote_ip())]);
            return Verdict::disconnect(554, "5.7.1", "client blocked by policy");
        }
        let ip = ctx.remote_ip();
        if ip.contains('.') {
            let reversed: Vec<&str> = ip.split('.').rev().collect();
            let name = format!("{}.bl.test", reversed.join("."));
            match host::dns_lookup(&name, RecordType::A, Duration::from_millis(500)) {
                Ok(answers) if !answers.is_empty() => {
                    return Verdict::reject(
                        554,
                        "5.7.1",
                        format!("{ip} listed in bl.test ({})", answers[0]),
                    );
                }
                Ok(_) | Err(DnsError::NotFound) => {}
                Err(e) => host::warn(&format!("bl.test lookup failed: {e:?}")),
            }
        }
        Verdict::Continue
    }

    fn mail_from(&mut self, _ctx: &Context, sender: &str) -> Verdict {
        let Ok(addr) = Address::parse(sender) else {
            return Verdict::reject(553, "5.1.7", "bad sender address");
        };
        let key = format!("sender:{addr}");
        let Ok(d) = host::rate_limit(&key, 2, Duration::from_secs(60), 2, 1) else {
            return Verdict::tempfail(451, "4.3.0", "rate state unavailable");
        };
        if !d.allowed {
            return Verdict::tempfail(
                451,
                "4.7.1",
                format!("slow down, retry in {} ms", d.retry_after_ms),
            );
        }
        Verdict::Continue
    }

    fn rcpt(&mut self, _ctx: &Context, recipient: &str) -> Verdict {
        match Address::parse(recipient) {
            Ok(a) if a.local() == "blocked" => Verdict::reject(550, "5.1.1", "mailbox unavailable"),
            Ok(a) if a.local() == "vip" => Verdict::Accept,
            Ok(_) => Verdict::Continue,
            Err(_) => Verdict::reject(553, "5.1.3", "bad recipient address"),
        }
    }

    fn data(&mut self, ctx: &Context, msg: &Message) -> Verdict {
        host::info(&format!(
            "data from {} for {} recipients",
            ctx.remote_ip(),
            ctx.recipients().len()
        ));
        msg.add_header("X-Policy", "checked");
        msg.prepend_header("X-Seen-By", "policy");
        msg.remove_header("X-Remove-Me");
        if msg.header("subject").first().map(String::as_str) == Some("rewrite me") {
            msg.replace_header("Subject", "rewritten");
        }
        let size = msg.body_size();
        let body = msg.read_body(0, size as u32);
        if body.windows(12).any(|w| w == b"REPLACE-BODY") {
            msg.replace_body(b"replaced body\r\n");
        }
        let rcpts = ctx.recipient_count().to_string();
        let listed = ctx.recipients().len().to_string();
        host::emit(
            "policy-checked",
            &[("recipients", &rcpts), ("listed", &listed)],
        );
        Verdict::Continue
    }

    fn route(&mut self, _env: &Envelope, domain: &str, _rcpts: &[String]) -> RouteDecision {
        match domain {
            "routed.test" => RouteDecision::Pool("routed".into()),
            "hold.test" => RouteDecision::Hold("quarantined".into()),
            "drop.test" => RouteDecision::Drop("discarded".into()),
            "mx.test" => RouteDecision::Mx(TlsPolicy::Require),
            _ => RouteDecision::Continue,
        }
    }

    fn delivery_result(&mut self, _env: &Envelope, report: &DeliveryReport) {
        let key = format!("results:{:?}", report.status);
        let n = host::kv_get(&key)
            .ok()
            .flatten()
            .map(|v| v.len())
            .unwrap_or(0);
        let _ = host::kv_set(&key, &vec![b'x'; n + 1], None);
    }
}

export_plugin!(Policy);
