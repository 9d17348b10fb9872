//! Counts a session's hooks in its session value (`context.set-session-value`), keeping
//! nothing in memory, and says so (`session-memory: none`). RCPT answers what it found:
//! - `count@...`: rejects with "hooks: N", N counting this call;
//! - `big@...`: tries to keep 4 KiB + 1 and rejects with the host's error;
//! - `trap@...`: counts this call, then traps (what it set must not be kept);
//! - anything else: continues.
use wasmrelay_plugin_sdk::{export_plugin, Context, Hook, Plugin, Verdict};

#[used]
#[link_section = "wasmrelay:wants"]
static WANTS: [u8; 21] = *b"session-memory: none\n";

struct SessionValue;

/// Adds this call to the session's count and returns the new count.
fn count(ctx: &Context) -> u32 {
    let n = ctx
        .session_value()
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    ctx.set_session_value(Some(n.to_string().as_bytes()))
        .expect("a small value is kept");
    n
}

impl Plugin for SessionValue {
    const HOOKS: &'static [Hook] = &[Hook::Connect, Hook::Helo, Hook::MailFrom, Hook::Rcpt];

    fn init(_config: &str) -> Result<Self, String> {
        Ok(SessionValue)
    }

    fn connect(&mut self, ctx: &Context) -> Verdict {
        count(ctx);
        Verdict::Continue
    }

    fn helo(&mut self, ctx: &Context) -> Verdict {
        count(ctx);
        Verdict::Continue
    }

    fn mail_from(&mut self, ctx: &Context, _sender: &str) -> Verdict {
        count(ctx);
        Verdict::Continue
    }

    fn rcpt(&mut self, ctx: &Context, recipient: &str) -> Verdict {
        let n = count(ctx);
        match recipient.split('@').next() {
            Some("count") => Verdict::reject(550, "5.7.1", format!("hooks: {n}")),
            Some("big") => match ctx.set_session_value(Some(&[b'x'; 4097])) {
                Ok(()) => Verdict::reject(550, "5.7.1", "kept"),
                Err(e) => Verdict::reject(550, "5.7.1", &e),
            },
            Some("trap") => panic!("trapping after setting the session value"),
            _ => Verdict::Continue,
        }
    }
}

export_plugin!(SessionValue);
