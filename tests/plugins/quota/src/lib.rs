//! Test plugin: "N messages a day per user" with a calendar quota. At `mail-from`, charges
//! one message to the authenticated user (else the sender) and, over `limit` (config,
//! default 3), answers 451 4.7.1 with the moment the UTC day ends and the quota resets.
use wasmrelay_plugin_sdk::host::QuotaWindow;
use wasmrelay_plugin_sdk::{export_plugin, host, Context, Hook, Plugin, Verdict};

struct Quota {
    limit: u64,
}

/// `"limit":N` in flat JSON; enough for a test plugin without serde.
fn json_u64(json: &str, key: &str) -> Option<u64> {
    let start = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl Plugin for Quota {
    const HOOKS: &'static [Hook] = &[Hook::MailFrom];

    fn init(config: &str) -> Result<Self, String> {
        Ok(Quota {
            limit: json_u64(config, "limit").unwrap_or(3),
        })
    }

    fn mail_from(&mut self, ctx: &Context, sender: &str) -> Verdict {
        let user = ctx
            .auth_user()
            .unwrap_or_else(|| host::list_address(sender));
        match host::quota_add(&format!("user:{user}"), 1, self.limit, QuotaWindow::Day) {
            Ok(d) if d.allowed => Verdict::Continue,
            Ok(d) => Verdict::tempfail(
                451,
                "4.7.1",
                format!(
                    "daily quota of {} messages reached, resets at {} (Unix time)",
                    self.limit,
                    d.reset_ms / 1000
                ),
            ),
            Err(e) => Verdict::tempfail(451, "4.3.0", format!("quota state: {e:?}")),
        }
    }
}

export_plugin!(Quota);
