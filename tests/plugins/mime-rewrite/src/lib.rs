//! Rewrites messages through the host's MIME access, the way a click tracker does, at `data`:
//! - every `href="http` in a `text/html` part points through the tracking URL
//!   `https://track.test/c?u=` (the original URL follows, unescaped: enough for a test);
//! - every `text/plain` part gets the line `Tracked by wasmrelay.` appended;
//! - the message gets `X-Mime-Rewrite: html=N plain=M`, the parts it replaced.
//!
//! Attachments and every other part are left to the host, which keeps them byte for byte.
use wasmrelay_plugin_sdk::{export_plugin, host, Context, Hook, Message, Plugin, Verdict};

const TRACK: &str = "https://track.test/c?u=";

struct MimeRewrite;

impl Plugin for MimeRewrite {
    const HOOKS: &'static [Hook] = &[Hook::Data];

    fn init(_config: &str) -> Result<Self, String> {
        Ok(MimeRewrite)
    }

    fn data(&mut self, _ctx: &Context, msg: &Message) -> Verdict {
        let html = msg.rewrite_text_parts("html", |_, text| {
            text.contains("href=\"http")
                .then(|| text.replace("href=\"http", &format!("href=\"{TRACK}http")))
        });
        let plain = msg.rewrite_text_parts("plain", |_, text| {
            let sep = if text.is_empty() || text.ends_with('\n') {
                ""
            } else {
                "\r\n"
            };
            Some(format!("{text}{sep}Tracked by wasmrelay.\r\n"))
        });
        match (html, plain) {
            (Ok(html), Ok(plain)) => {
                msg.add_header("X-Mime-Rewrite", &format!("html={html} plain={plain}"));
            }
            (html, plain) => host::warn(&format!(
                "parts left as they were: html {html:?}, plain {plain:?}"
            )),
        }
        Verdict::Continue
    }
}

export_plugin!(MimeRewrite);
