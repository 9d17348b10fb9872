//! One recipient's copy: the tokens, the rewritten HTML and the List-Unsubscribe fields.
//! Everything here is a function of the envelope, the recipient and the message, so a retry
//! renders the copy byte for byte again.

use std::collections::HashMap;

use wasmrelay_plugin_sdk::{host, Envelope, Message, MimePart};
use wasmrelay_tracking_token::{is_web_url, Claims, Kind, SignError};

use crate::config::Config;
use crate::html;

/// The inline `text/html` parts worth tracking, in order: not attachments, and not inside
/// an attachment or an attached message (`message/rfc822`), whose bytes are someone
/// else's mail.
pub fn html_parts(parts: &[MimePart]) -> Vec<u32> {
    if !parts.iter().any(|p| p.is_text("html")) {
        return Vec::new();
    }
    let by_id: HashMap<u32, &MimePart> = parts.iter().map(|p| (p.id, p)).collect();
    let foreign = |p: &MimePart| {
        p.disposition.as_deref() == Some("attachment") || p.content_type == "message/rfc822"
    };
    parts
        .iter()
        .filter(|p| p.is_text("html"))
        .filter(|p| {
            let mut parent = p.parent;
            // Bounded by the number of parts, whatever the parent links say.
            for _ in 0..parts.len() {
                let Some(up) = parent.and_then(|id| by_id.get(&id)) else {
                    return true;
                };
                if foreign(up) {
                    return false;
                }
                parent = up.parent;
            }
            false
        })
        .map(|p| p.id)
        .collect()
}

pub struct Copy<'a> {
    config: &'a Config,
    queue_id: String,
    recipient: String,
    pub sender_domain: String,
    issued: u32,
}

impl<'a> Copy<'a> {
    /// `sender` is the reverse path, lower-cased.
    pub fn new(config: &'a Config, env: &Envelope, sender: &str, recipient: &str) -> Copy<'a> {
        Copy {
            config,
            queue_id: env.queue_id(),
            recipient: host::list_address(recipient),
            sender_domain: sender.rsplit_once('@').map_or("", |(_, d)| d).to_string(),
            issued: (env.received_ms() / 1000).min(u32::MAX as u64) as u32,
        }
    }

    /// The endpoint URL for a token of `kind`.
    fn url(&self, kind: Kind, link: u16, target: &str) -> Result<String, SignError> {
        let token = self.config.key.sign(&Claims {
            kind,
            issued: self.issued,
            link,
            queue_id: self.queue_id.clone(),
            recipient: self.recipient.clone(),
            sender_domain: self.sender_domain.clone(),
            url: target.to_string(),
        })?;
        Ok(format!(
            "{}/{}/{token}",
            self.config.base_url,
            kind.letter()
        ))
    }

    /// Edits `msg` and returns how many links are tracked. Fails (before any edit) only
    /// when no token can be made for this recipient.
    pub fn render(&self, msg: &Message, parts: &[u32]) -> Result<u16, SignError> {
        let c = self.config;
        let unsubscribe = self.url(Kind::Unsubscribe, 0, "")?;
        let mut footer = String::new();
        if c.opens {
            footer.push_str(&format!(
                "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" \
                 style=\"display:block;width:1px;height:1px;border:0\">",
                self.url(Kind::Open, 0, "")?
            ));
        }
        if !c.unsubscribe_link.is_empty() {
            footer.push_str(&format!(
                "<p style=\"font-size:12px;text-align:center\"><a href=\"{unsubscribe}\">{}</a></p>",
                c.unsubscribe_link
            ));
        }
        let mut links = 0;
        let mut footer = Some(footer).filter(|f| !f.is_empty());
        for &id in parts {
            let Ok(text) = msg.part_text(id) else {
                continue;
            };
            // The pixel and the visible link go into the first HTML part only.
            let new = self.rewrite(&text, &mut links, footer.take().as_deref());
            if new != text && msg.replace_part_text(id, &new).is_err() {
                host::warn(&format!("part {id}: could not replace its text"));
            }
        }
        if c.list_unsubscribe && msg.header("List-Unsubscribe").is_empty() {
            msg.add_header("List-Unsubscribe", &format!("<{unsubscribe}>"));
            msg.replace_header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
        }
        Ok(links)
    }

    /// `text` with its links tracked (numbered on from `*links`) and `footer` inserted
    /// before `</body>`, or at the end without one.
    fn rewrite(&self, text: &str, links: &mut u16, footer: Option<&str>) -> String {
        let scan = html::scan(text);
        let mut edits: Vec<(usize, usize, String)> = Vec::new();
        if self.config.clicks {
            let ours = format!("{}/", self.config.base_url);
            for (range, url) in scan.links {
                if !is_web_url(&url) || url.starts_with(&ours) || *links == u16::MAX {
                    continue;
                }
                // A link too long for a token stays as it is.
                if let Ok(tracked) = self.url(Kind::Click, *links + 1, &url) {
                    *links += 1;
                    edits.push((range.start, range.end, format!("\"{tracked}\"")));
                }
            }
        }
        if let Some(footer) = footer {
            let at = scan.body_end.unwrap_or(text.len());
            edits.push((at, at, footer.to_string()));
            edits.sort_by_key(|e| e.0);
        }
        let mut out = String::with_capacity(text.len() + edits.len() * 200);
        let mut pos = 0;
        for (start, end, with) in edits {
            out.push_str(&text[pos..start]);
            out.push_str(&with);
            pos = end;
        }
        out.push_str(&text[pos..]);
        out
    }
}
