//! What a refused client reads: the code for the stage and the rule's action, and text that
//! says which limit and when to come back.

use std::time::Duration;

use wasmrelay_plugin_sdk::Verdict;

use crate::config::{Action, Config};
use crate::limits::Refusal;

/// Where the refusal happens: at connect a temporary refusal also ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Transaction,
}

pub fn verdict(config: &Config, stage: Stage, refusal: &Refusal) -> Verdict {
    let rule = &config.rules[refusal.rule()];
    let what = rule.count.name();
    let name = &rule.name;
    let (text, when) = match refusal {
        Refusal::Rate { retry_after, .. } => {
            let rate = rule.rate.as_ref().map_or("", |r| r.text.as_str());
            (
                format!("{what} rate limit exceeded ({name}: {rate})"),
                format!("try again in {} seconds", seconds(*retry_after)),
            )
        }
        Refusal::Quota {
            limit,
            window,
            reset_ms,
            ..
        } => (
            format!("{what} quota reached ({name}: {limit} per {window})"),
            format!("try again after {}", utc(*reset_ms)),
        ),
        Refusal::Cap { cap, .. } if rule.per_message.is_some() => {
            let text = format!("too many recipients ({name}: at most {cap} per message)");
            return match rule.action {
                Action::Tempfail => Verdict::tempfail(
                    452,
                    "4.5.3",
                    format!("{text}; send the rest in another transaction"),
                ),
                Action::Reject => Verdict::reject(550, "5.5.3", text),
            };
        }
        Refusal::Cap { cap, .. } => (
            format!("too many {what} ({name}: at most {cap})"),
            "try again later".to_string(),
        ),
        Refusal::State { .. } => {
            let text = "limits cannot be checked right now; try again later";
            return match stage {
                Stage::Connect => Verdict::disconnect(421, "4.3.0", text),
                Stage::Transaction => Verdict::tempfail(451, "4.3.0", text),
            };
        }
    };
    match (rule.action, stage) {
        (Action::Tempfail, Stage::Connect) => {
            Verdict::disconnect(421, "4.7.0", format!("{text}; {when}"))
        }
        (Action::Tempfail, Stage::Transaction) => {
            Verdict::tempfail(451, "4.7.1", format!("{text}; {when}"))
        }
        (Action::Reject, Stage::Connect) => Verdict::reject(554, "5.7.1", text),
        (Action::Reject, Stage::Transaction) => Verdict::reject(550, "5.7.1", text),
    }
}

/// Whole seconds, rounded up, at least one.
fn seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).clamp(1, u64::MAX as u128) as u64
}

/// `2026-12-02 00:00:00 UTC` for ms since the epoch (civil-from-days, proleptic Gregorian).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_169_600_000), "2026-12-02 00:00:00 UTC");
        assert_eq!(utc(1_796_169_599_999), "2026-12-01 23:59:59 UTC");
    }

    #[test]
    fn retry_seconds_round_up() {
        assert_eq!(seconds(Duration::from_millis(0)), 1);
        assert_eq!(seconds(Duration::from_millis(12_000)), 12);
        assert_eq!(seconds(Duration::from_millis(12_001)), 13);
    }

    #[test]
    fn replies_by_stage_and_action() {
        let config = Config::parse(
            r#"{"rules": [
                {"name": "flood", "count": "connections", "key": "ip", "rate": "3/h"},
                {"name": "per-sender", "count": "messages", "key": "sender", "rate": "5/min"},
                {"name": "day", "count": "messages", "key": "sender", "quota": "500/day",
                 "action": "reject"},
                {"name": "rcpts", "count": "recipients", "key": "ip", "per_message": 100}
            ]}"#,
        )
        .unwrap();
        let rate = |rule| Refusal::Rate {
            rule,
            retry_after: Duration::from_millis(11_500),
        };
        let wire = |v: Verdict| match v {
            Verdict::Tempfail(r) => format!("tempfail {} {}", r.code, r.text),
            Verdict::Reject(r) => format!("reject {} {}", r.code, r.text),
            Verdict::Disconnect(r) => format!("disconnect {} {}", r.code, r.text),
            _ => "continue".into(),
        };
        assert_eq!(
            wire(verdict(&config, Stage::Connect, &rate(0))),
            "disconnect 421 connections rate limit exceeded (flood: 3/h); try again in 12 seconds"
        );
        assert_eq!(
            wire(verdict(&config, Stage::Transaction, &rate(1))),
            "tempfail 451 messages rate limit exceeded (per-sender: 5/min); try again in 12 seconds"
        );
        let quota = Refusal::Quota {
            rule: 2,
            limit: 500,
            window: "day",
            reset_ms: 1_796_169_600_000,
        };
        assert_eq!(
            wire(verdict(&config, Stage::Transaction, &quota)),
            "reject 550 messages quota reached (day: 500 per day)"
        );
        let cap = Refusal::Cap { rule: 3, cap: 100 };
        assert_eq!(
            wire(verdict(&config, Stage::Transaction, &cap)),
            "tempfail 452 too many recipients (rcpts: at most 100 per message); send the rest \
             in another transaction"
        );
        assert_eq!(
            wire(verdict(
                &config,
                Stage::Connect,
                &Refusal::State { rule: 0 }
            )),
            "disconnect 421 limits cannot be checked right now; try again later"
        );
    }
}
