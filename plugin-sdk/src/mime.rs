//! Helpers over the host's MIME access, so a plugin edits text parts without parsing MIME.

use crate::{Message, MimePart, PartError};

impl MimePart {
    /// Whether this is a `text/<subtype>` part (`"*"` for any text) that is not an attachment.
    pub fn is_text(&self, subtype: &str) -> bool {
        let Some(sub) = self.content_type.strip_prefix("text/") else {
            return false;
        };
        let attachment = self.disposition.as_deref() == Some("attachment");
        !attachment && (subtype == "*" || sub.eq_ignore_ascii_case(subtype))
    }
}

impl Message {
    /// The inline `text/<subtype>` parts (`"*"` for every text part), in order.
    pub fn text_parts(&self, subtype: &str) -> Vec<MimePart> {
        self.parts()
            .into_iter()
            .filter(|p| p.is_text(subtype))
            .collect()
    }

    /// Calls `edit` with the decoded text of every inline `text/<subtype>` part and replaces
    /// the parts for which it returns new text; returns how many were replaced.
    pub fn rewrite_text_parts(
        &self,
        subtype: &str,
        mut edit: impl FnMut(&MimePart, &str) -> Option<String>,
    ) -> Result<usize, PartError> {
        let mut replaced = 0;
        for part in self.text_parts(subtype) {
            let text = self.part_text(part.id)?;
            if let Some(new) = edit(&part, &text) {
                self.replace_part_text(part.id, &new)?;
                replaced += 1;
            }
        }
        Ok(replaced)
    }

    /// The first value of header `name`, if present.
    pub fn first_header(&self, name: &str) -> Option<String> {
        self.header(name).into_iter().next()
    }
}
