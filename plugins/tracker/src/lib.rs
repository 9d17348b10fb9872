//! The bundled `tracker` policy plugin (see plugins/README.md#tracker).
//!
//! At `recipient-copy`, for a message with an inline HTML part: rewrites every `http(s)`
//! link of the HTML to a click URL of the relay's tracking endpoint, adds an open pixel (and
//! a visible unsubscribe link where configured) before `</body>`, and adds
//! `List-Unsubscribe` with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
//! Every URL carries a token signed with the config's `secret` (crate
//! `wasmrelay-tracking-token`) naming the queue id, the recipient and the link, so the
//! endpoint can record who opened, clicked or unsubscribed. Text parts, other parts and mail
//! without HTML are left alone.
//!
//! Layout: `config` (the table), `html` (finding links), `render` (one recipient's copy).

mod config;
mod html;
mod render;

use wasmrelay_plugin_sdk::{
    export_plugin, host, Envelope, Hook, Message, Plugin, Recipient, Verdict,
};

use config::Config;

struct Tracker {
    config: Config,
}

/// Tells the host to call `recipient-copy` only for messages with an HTML part (section
/// `wasmrelay:wants`, docs/plugins.md#cost-per-language): mail without one is never tracked,
/// so the host neither instantiates this plugin nor hands it the message for it. And that
/// an instance keeps only the config, so a pooled one goes back after every call.
#[used]
#[link_section = "wasmrelay:wants"]
static WANTS: [u8; 47] = *b"recipient-copy: text/html\nsession-memory: none\n";

impl Plugin for Tracker {
    const HOOKS: &'static [Hook] = &[Hook::RecipientCopy];

    fn init(config: &str) -> Result<Self, String> {
        Ok(Tracker {
            config: Config::parse(config)?,
        })
    }

    fn recipient_copy(&mut self, env: &Envelope, rcpt: &Recipient, msg: &Message) -> Verdict {
        let sender = env.mail_from().to_ascii_lowercase();
        if self.config.excluded(&sender) {
            return Verdict::Continue;
        }
        let parts = render::html_parts(&msg.parts());
        if parts.is_empty() {
            return Verdict::Continue;
        }
        let copy = render::Copy::new(&self.config, env, &sender, &rcpt.address());
        match copy.render(msg, &parts) {
            Ok(links) => host::emit(
                "tracked",
                &[
                    ("links", &links.to_string()),
                    ("sender_domain", &copy.sender_domain),
                ],
            ),
            // The copy goes out as it was: tracking is never worth a delivery.
            Err(e) => host::warn(&format!("not tracked: {e}")),
        }
        Verdict::Continue
    }
}

export_plugin!(Tracker);
