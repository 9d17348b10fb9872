//! Says what the connection facts were at each hook it handles: `connect`, `helo`, `auth`
//! and `mail-from` log them and go on; `rcpt` refuses with them as its reply text,
//! `helo=... tls=... auth=... trusted=...`, so a client sees what plugins were shown.
use wasmrelay_plugin_sdk::{export_plugin, host, Context, Hook, Plugin, Verdict};

struct FactsEcho;

fn facts(ctx: &Context) -> String {
    let tls = ctx.tls().map_or("none".to_string(), |t| t.protocol);
    format!(
        "helo={} tls={tls} auth={} trusted={}",
        ctx.helo().unwrap_or_else(|| "none".into()),
        ctx.auth_user().unwrap_or_else(|| "none".into()),
        ctx.attribute("trusted").unwrap_or_else(|| "unset".into()),
    )
}

impl Plugin for FactsEcho {
    const HOOKS: &'static [Hook] = &[
        Hook::Connect,
        Hook::Helo,
        Hook::Auth,
        Hook::MailFrom,
        Hook::Rcpt,
    ];

    fn init(_config: &str) -> Result<Self, String> {
        Ok(FactsEcho)
    }

    fn connect(&mut self, ctx: &Context) -> Verdict {
        host::info(&facts(ctx));
        Verdict::Continue
    }

    fn helo(&mut self, ctx: &Context) -> Verdict {
        host::info(&facts(ctx));
        Verdict::Continue
    }

    fn auth(&mut self, ctx: &Context, _user: &str) -> Verdict {
        host::info(&facts(ctx));
        Verdict::Continue
    }

    fn mail_from(&mut self, ctx: &Context, _sender: &str) -> Verdict {
        host::info(&facts(ctx));
        Verdict::Continue
    }

    fn rcpt(&mut self, ctx: &Context, _recipient: &str) -> Verdict {
        Verdict::reject(550, "5.7.1", facts(ctx))
    }
}

export_plugin!(FactsEcho);
