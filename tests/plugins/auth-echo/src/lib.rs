//! Copies what `context.auth-results()` returns at `data` into the message, so a test can read
//! what plugins were given where the message arrives: `X-Auth-Count: N`, then one
//! `X-Auth-Echo: method=result domain=DOMAIN detail=DETAIL` per result, in order.
use wasmrelay_plugin_sdk::{export_plugin, Context, Hook, Message, Plugin, Verdict};

struct AuthEcho;

impl Plugin for AuthEcho {
    const HOOKS: &'static [Hook] = &[Hook::Data];

    fn init(_config: &str) -> Result<Self, String> {
        Ok(AuthEcho)
    }

    fn data(&mut self, ctx: &Context, msg: &Message) -> Verdict {
        let results = ctx.auth_results();
        msg.add_header("X-Auth-Count", &results.len().to_string());
        for r in results {
            msg.add_header(
                "X-Auth-Echo",
                &format!(
                    "{}={} domain={} detail={}",
                    r.method, r.result, r.domain, r.detail
                ),
            );
        }
        Verdict::Continue
    }
}

export_plugin!(AuthEcho);
