//! Hostile test plugin: on `RCPT TO:<greedy@...>` it pushes every shared-state capability
//! past its limits and answers 451 4.7.0 with what each attempt got, one `name=outcome`
//! word per attempt, so a test can check that each was refused the right way:
//! - `member`: a 2 KiB list member, on a list it may read (`invalid`);
//! - `undeclared`: a list no `[[lists]]` declares (`denied`);
//! - `write`: adding to `suppression`, which it may only read (`denied`);
//! - `kv`: new keys until refused (`denied@N`, N the keys it got: `limits.kv_keys`);
//! - `kvbytes`: growing one of those keys to 8 KiB (`denied`: `limits.kv_bytes`);
//! - `kvvalue`: a 100 KiB value (`invalid`) and `kvkey`: a 300-byte key (`invalid`);
//! - `quota`: u64::MAX twice, then a zero limit (`allowed,refused,refused`, no overflow);
//! - `rate`: a zero rate (`invalid`), then u32::MAX everything (`ok`);
//! - `dns`: a name outside its `dns_zones` (`denied`);
//! - `annotations`: 1,000 of them (`32/1000` set).
//!
//! Other recipients get `continue`.
use std::time::Duration;

use wasmrelay_plugin_sdk::host::{DnsError, QuotaWindow, RecordType, StateError};
use wasmrelay_plugin_sdk::{export_plugin, host, Context, Hook, Plugin, Verdict};

struct Greedy;

fn kind<T>(r: &Result<T, StateError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(StateError::Denied(_)) => "denied",
        Err(StateError::Invalid(_)) => "invalid",
        Err(StateError::Unavailable(_)) => "unavailable",
    }
}

fn quota(amount: u64, limit: u64) -> &'static str {
    match host::quota_add("absurd", amount, limit, QuotaWindow::Day) {
        Ok(d) if d.allowed => "allowed",
        Ok(_) => "refused",
        Err(_) => "error",
    }
}

impl Plugin for Greedy {
    const HOOKS: &'static [Hook] = &[Hook::Rcpt];

    fn init(_config: &str) -> Result<Self, String> {
        Ok(Greedy)
    }

    fn rcpt(&mut self, ctx: &Context, recipient: &str) -> Verdict {
        if recipient.starts_with("flood@") {
            // 16 MiB handed to the host in one call: past the per-call hostcall budget, so
            // the host refuses to lift it (a trap) instead of allocating it.
            let huge = "x".repeat(16 << 20);
            host::emit("flood", &[("payload", huge.as_str())]);
            return Verdict::Continue;
        }
        if !recipient.starts_with("greedy@") {
            return Verdict::Continue;
        }
        let mut out = Vec::new();
        let long = "m".repeat(2048);
        let member = host::list_contains("suppression", &long);
        out.push(format!("member={}", kind(&member)));
        let undeclared = host::list_contains("no-such-list", "a@example.com");
        out.push(format!("undeclared={}", kind(&undeclared)));
        let write = host::list_add("suppression", "victim@example.com", None);
        out.push(format!("write={}", kind(&write)));

        let mut got = 0;
        let refused = loop {
            let r = host::kv_set(&format!("k{got}"), b"v", None);
            if r.is_err() || got >= 10_000 {
                break kind(&r);
            }
            got += 1;
        };
        out.push(format!("kv={refused}@{got}"));
        let grow = host::kv_set("k0", &[0; 8 * 1024], None);
        out.push(format!("kvbytes={}", kind(&grow)));
        let huge = host::kv_set("k0", &vec![0; 100 * 1024], None);
        out.push(format!("kvvalue={}", kind(&huge)));
        let key = host::kv_set(&"k".repeat(300), b"v", None);
        out.push(format!("kvkey={}", kind(&key)));

        let q = [
            quota(u64::MAX, u64::MAX),
            quota(u64::MAX, u64::MAX),
            quota(1, 0),
        ];
        out.push(format!("quota={}", q.join(",")));
        let zero = host::rate_limit("r", 0, Duration::from_secs(1), 1, 1);
        let max = host::rate_limit("r", u32::MAX, Duration::MAX, u32::MAX, u32::MAX);
        out.push(format!("rate={},{}", kind(&zero), kind(&max)));

        let dns = match host::dns_lookup(
            "exfiltrate.evil.test",
            RecordType::Txt,
            Duration::from_millis(100),
        ) {
            Err(DnsError::Denied) => "denied",
            Ok(_) => "answered",
            Err(_) => "failed",
        };
        out.push(format!("dns={dns}"));
        let set = (0..1000)
            .filter(|i| ctx.set_annotation(&format!("a{i}"), "x").is_ok())
            .count();
        out.push(format!("annotations={set}/1000"));
        Verdict::tempfail(451, "4.7.0", format!("greedy: {}", out.join(" ")))
    }
}

export_plugin!(Greedy);
