//! Charges the transaction's message (`host.rate-limit-for-message` and
//! `host.quota-add-for-message`, 0.2.7), keeping nothing in memory and having no hook that
//! gives anything back:
//! - `mail-from`: charges the rate "m" (three an hour) and then the day quota "q" (one a
//!   day); refuses with "rate: ..." or "quota: ..." when one refuses;
//! - `rcpt` `count@...`: rejects with "rate left N, quota T" (the rate peeked at: a cost
//!   above its burst charges nothing);
//! - `rcpt` `many@...`: charges the rate "many" 40 times and rejects with how many it got
//!   and the first refusal;
//! - `helo`: charges outside a transaction and rejects with the refusal.
use std::time::Duration;

use wasmrelay_plugin_sdk::host::{self, QuotaWindow, StateError};
use wasmrelay_plugin_sdk::{export_plugin, Context, Hook, Plugin, Verdict};

#[used]
#[link_section = "wasmrelay:wants"]
static WANTS: [u8; 21] = *b"session-memory: none\n";

const HOUR: Duration = Duration::from_secs(3600);

struct MessageCharge;

fn error_text(e: &StateError) -> String {
    match e {
        StateError::Unavailable(s) | StateError::Denied(s) | StateError::Invalid(s) => s.clone(),
    }
}

fn charge_rate(key: &str) -> Result<bool, StateError> {
    host::rate_limit_for_message(key, 3, HOUR, 3, 1).map(|d| d.allowed)
}

impl Plugin for MessageCharge {
    const HOOKS: &'static [Hook] = &[Hook::Helo, Hook::MailFrom, Hook::Rcpt];

    fn init(_config: &str) -> Result<Self, String> {
        Ok(MessageCharge)
    }

    fn helo(&mut self, _ctx: &Context) -> Verdict {
        let text = match charge_rate("m") {
            Ok(allowed) => format!("charged outside a transaction: {allowed}"),
            Err(e) => error_text(&e),
        };
        Verdict::reject(550, "5.7.1", text)
    }

    fn mail_from(&mut self, _ctx: &Context, _sender: &str) -> Verdict {
        match charge_rate("m") {
            Ok(true) => {}
            Ok(false) => return Verdict::tempfail(451, "4.7.1", "rate: over"),
            Err(e) => return Verdict::tempfail(451, "4.7.1", format!("rate: {}", error_text(&e))),
        }
        match host::quota_add_for_message("q", 1, 1, QuotaWindow::Day) {
            Ok(d) if d.allowed => Verdict::Continue,
            Ok(_) => Verdict::tempfail(451, "4.7.1", "quota: over"),
            Err(e) => Verdict::tempfail(451, "4.7.1", format!("quota: {}", error_text(&e))),
        }
    }

    fn rcpt(&mut self, _ctx: &Context, recipient: &str) -> Verdict {
        match recipient.split('@').next() {
            Some("count") => {
                let rate = host::rate_limit("m", 3, HOUR, 3, 4).expect("a peek");
                let quota = host::quota_get("q", QuotaWindow::Day).expect("a quota read");
                let text = format!("rate left {}, quota {}", rate.remaining, quota.total);
                Verdict::reject(550, "5.7.1", text)
            }
            Some("many") => {
                let mut got = 0;
                let mut refusal = String::from("none");
                for _ in 0..40 {
                    match host::rate_limit_for_message("many", 1000, HOUR, 1000, 1) {
                        Ok(d) if d.allowed => got += 1,
                        Ok(_) => {
                            refusal = "over the rate".into();
                            break;
                        }
                        Err(e) => {
                            refusal = error_text(&e);
                            break;
                        }
                    }
                }
                Verdict::reject(550, "5.7.1", format!("charged {got}; then {refusal}"))
            }
            _ => Verdict::Continue,
        }
    }
}

export_plugin!(MessageCharge);
