//! Test plugin, one half of a shared list: at `data`, a message with the header
//! `X-Unsubscribe: yes` puts its sender on the `suppression` list (read by `list-reader`).
//! A list the relay cannot write tempfails the message rather than losing the request.
use wasmrelay_plugin_sdk::{export_plugin, host, Context, Hook, Message, Plugin, Verdict};

struct ListWriter;

impl Plugin for ListWriter {
    const HOOKS: &'static [Hook] = &[Hook::Data];

    fn init(_config: &str) -> Result<Self, String> {
        Ok(ListWriter)
    }

    fn data(&mut self, ctx: &Context, msg: &Message) -> Verdict {
        let unsubscribe = msg.header("x-unsubscribe");
        if !unsubscribe
            .iter()
            .any(|v| v.trim().eq_ignore_ascii_case("yes"))
        {
            return Verdict::Continue;
        }
        let sender = host::list_address(&ctx.mail_from().unwrap_or_default());
        if sender.is_empty() {
            return Verdict::Continue;
        }
        match host::list_add("suppression", &sender, None) {
            Ok(_) => {
                host::info(&format!("{sender} unsubscribed"));
                Verdict::Continue
            }
            Err(e) => Verdict::tempfail(451, "4.3.0", format!("suppression list: {e:?}")),
        }
    }
}

export_plugin!(ListWriter);
