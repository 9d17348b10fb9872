//! Declares at load (`host.want-listed-recipients`, 0.2.7) the lists of its config's
//! `lists` (a JSON array of names) for `rcpt`, and rejects every recipient it is called for
//! with "called for <recipient>", so a test sees which calls the relay made. A recipient
//! whose local part is `declare` gets the answer of declaring again outside `hooks()`.
use wasmrelay_plugin_sdk::host;
use wasmrelay_plugin_sdk::{export_plugin, Context, Hook, Plugin, Verdict};

#[used]
#[link_section = "wasmrelay:wants"]
static WANTS: [u8; 21] = *b"session-memory: none\n";

struct ListedRcpt {
    lists: Vec<String>,
}

impl Plugin for ListedRcpt {
    const HOOKS: &'static [Hook] = &[Hook::Rcpt];

    fn init(config: &str) -> Result<Self, String> {
        // The config is `{"lists": ["a", "b"]}`: the names between the brackets.
        let inner = config
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .map_or("", |(names, _)| names);
        let lists = inner
            .split(',')
            .map(|n| n.trim().trim_matches('"').to_string())
            .filter(|n| !n.is_empty())
            .collect();
        Ok(ListedRcpt { lists })
    }

    fn wanted_recipient_lists(&self) -> Vec<String> {
        self.lists.clone()
    }

    fn rcpt(&mut self, _ctx: &Context, recipient: &str) -> Verdict {
        if recipient.starts_with("declare@") {
            let answer = match host::want_listed_recipients("vip") {
                Ok(()) => "declared".to_string(),
                Err(e) => e,
            };
            return Verdict::reject(550, "5.7.1", answer);
        }
        Verdict::reject(550, "5.7.1", format!("called for {recipient}"))
    }
}

export_plugin!(ListedRcpt);
