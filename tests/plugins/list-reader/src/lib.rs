//! Test plugin, the other half of a shared list: at `rcpt`, refuses recipients on the
//! `suppression` list (written by `list-writer` or `wasmrelay list add`) with 550 5.7.1.
use wasmrelay_plugin_sdk::{export_plugin, host, Context, Hook, Plugin, Verdict};

struct ListReader;

impl Plugin for ListReader {
    const HOOKS: &'static [Hook] = &[Hook::Rcpt];

    fn init(_config: &str) -> Result<Self, String> {
        Ok(ListReader)
    }

    fn rcpt(&mut self, _ctx: &Context, recipient: &str) -> Verdict {
        match host::list_contains("suppression", &host::list_address(recipient)) {
            Ok(true) => Verdict::reject(550, "5.7.1", "recipient unsubscribed"),
            Ok(false) => Verdict::Continue,
            Err(e) => Verdict::tempfail(451, "4.3.0", format!("suppression list: {e:?}")),
        }
    }
}

export_plugin!(ListReader);
