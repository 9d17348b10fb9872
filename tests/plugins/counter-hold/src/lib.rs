//! Holds a count of its session (`host.counter-hold`, 0.2.2) at `connect`, keeping nothing
//! in memory and having no `closed` hook. RCPT answers what it found:
//! - `open@...`: rejects with "open: N", the count every session's hold went to;
//! - `many@...`: holds 40 more and rejects with how many it got and the first refusal;
//! - `trap@...`: holds one more, then traps (the host must still give it back);
//! - anything else: continues.
//!
//! `route` tries to hold outside any session and holds the recipients with the refusal as
//! the reason.
use std::time::Duration;

use wasmrelay_plugin_sdk::host::{self, StateError};
use wasmrelay_plugin_sdk::{
    export_plugin, Context, Envelope, Hook, Plugin, RouteDecision, Verdict,
};

#[used]
#[link_section = "wasmrelay:wants"]
static WANTS: [u8; 21] = *b"session-memory: none\n";

const WINDOW: Duration = Duration::from_secs(600);

struct CounterHold;

fn error_text(e: &StateError) -> String {
    match e {
        StateError::Unavailable(s) | StateError::Denied(s) | StateError::Invalid(s) => s.clone(),
    }
}

impl Plugin for CounterHold {
    const HOOKS: &'static [Hook] = &[Hook::Connect, Hook::Rcpt, Hook::Route];

    fn init(_config: &str) -> Result<Self, String> {
        Ok(CounterHold)
    }

    fn connect(&mut self, _ctx: &Context) -> Verdict {
        host::counter_hold("open", WINDOW).expect("a hold in a session is counted");
        Verdict::Continue
    }

    fn rcpt(&mut self, _ctx: &Context, recipient: &str) -> Verdict {
        match recipient.split('@').next() {
            Some("open") => {
                let n = host::counter_get("open").expect("the count can be read");
                Verdict::reject(550, "5.7.1", format!("open: {n}"))
            }
            Some("many") => {
                let mut got = 0;
                let mut refusal = String::from("none");
                for _ in 0..40 {
                    match host::counter_hold("open", WINDOW) {
                        Ok(_) => got += 1,
                        Err(e) => {
                            refusal = error_text(&e);
                            break;
                        }
                    }
                }
                Verdict::reject(550, "5.7.1", format!("held {got}; then {refusal}"))
            }
            Some("trap") => {
                host::counter_hold("open", WINDOW).expect("a hold in a session is counted");
                panic!("trapping after a hold");
            }
            _ => Verdict::Continue,
        }
    }

    fn route(&mut self, _env: &Envelope, _domain: &str, _recipients: &[String]) -> RouteDecision {
        let reason = match host::counter_hold("open", WINDOW) {
            Ok(n) => format!("held outside a session: {n}"),
            Err(e) => error_text(&e),
        };
        RouteDecision::Hold(reason)
    }
}

export_plugin!(CounterHold);
