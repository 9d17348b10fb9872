//! Attachment checks over the host's part tree. The host does not split `message/rfc822`
//! parts (a forwarded message is one leaf), so for those the plugin reads the part's
//! decoded content in chunks and finds its parts with [`nested::Scanner`], without keeping
//! more than a header block and a line in memory.
//!
//! Fails closed: content that cannot be inspected (a multipart nested deeper than the host
//! splits, a nested message over `max_nested_scan`, one encoded inside another) counts as a
//! blocked attachment.

mod nested;

use std::collections::HashSet;

use wasmrelay_plugin_sdk::{Message, MimePart};

use self::nested::{PartInfo, Scanner};

/// Read size for nested messages.
const CHUNK: u32 = 256 * 1024;
/// As many parts as the host lists at most: a tree that long may have been cut.
const HOST_MAX_PARTS: usize = 1_000;

/// What an attachment rule blocks.
#[derive(Debug, Default)]
pub struct Blocked {
    /// Lower-case, without the dot.
    pub extensions: HashSet<String>,
    /// `type/subtype` or `type/*`, lower-case.
    pub types: Vec<String>,
}

impl Blocked {
    /// Why the part with this type and file name is blocked, if it is.
    pub fn matches(&self, content_type: &str, filename: Option<&str>) -> Option<String> {
        if let Some(name) = filename {
            // Windows ignores trailing dots and spaces: `evil.exe.` runs as `evil.exe`.
            let trimmed = name.trim_end_matches(['.', ' ']);
            if let Some((_, ext)) = trimmed.rsplit_once('.') {
                if self.extensions.contains(&ext.to_ascii_lowercase()) {
                    return Some(format!("file {name}"));
                }
            }
        }
        let ct = content_type.to_ascii_lowercase();
        let hit = self.types.iter().any(|t| match t.strip_suffix("/*") {
            Some(major) => ct.split_once('/').is_some_and(|(m, _)| m == major),
            None => *t == ct,
        });
        hit.then(|| match filename {
            Some(name) => format!("{ct} ({name})"),
            None => ct,
        })
    }
}

impl Blocked {
    /// Whether a type this blocks may be a part the relay's `attachment` trait does not
    /// count: a plain text or HTML body, or a multipart container.
    pub fn may_match_plain_parts(&self) -> bool {
        self.types.iter().any(|t| {
            matches!(t.as_str(), "text/*" | "text/plain" | "text/html")
                || t.starts_with("multipart/")
        })
    }
}

/// The walk over one message for every attachment rule of a DATA hook, so nested messages
/// are read once however many rules look at them.
pub struct Attachments {
    /// Each part as (content type, file names, whether inside a nested message).
    parts: Vec<(String, Vec<String>, bool)>,
    /// Why part of the message could not be inspected.
    pub uninspected: Option<String>,
}

impl Attachments {
    pub fn read(msg: &Message, max_nested_scan: u64) -> Attachments {
        let tree = msg.parts();
        let mut out = Attachments {
            parts: Vec::with_capacity(tree.len()),
            uninspected: None,
        };
        if tree.len() >= HOST_MAX_PARTS {
            out.uninspected = Some(format!("more than {HOST_MAX_PARTS} MIME parts"));
        }
        for part in &tree {
            let names = part.filename.iter().cloned().collect();
            out.parts.push((part.content_type.clone(), names, false));
            if is_message(&part.content_type) {
                out.scan_nested(msg, part, max_nested_scan);
            } else if part.content_type.starts_with("multipart/")
                && part.id != 0
                && !tree.iter().any(|p| p.parent == Some(part.id))
            {
                // Deeper than the host splits, or without a delimiter line: readers may
                // still find parts in it.
                out.uninspected
                    .get_or_insert_with(|| "a multipart part that was not split".to_string());
            }
        }
        out
    }

    /// Reads the nested message `part` in chunks and lists its parts.
    fn scan_nested(&mut self, msg: &Message, part: &MimePart, limit: u64) {
        let mut scanner = Scanner::new();
        let mut offset = 0u64;
        loop {
            if offset >= limit {
                self.uninspected
                    .get_or_insert_with(|| format!("nested message larger than {limit} bytes"));
                break;
            }
            let len = CHUNK.min((limit - offset).min(u64::from(u32::MAX)) as u32);
            let chunk = match msg.read_part(part.id, offset, len) {
                Ok(chunk) => chunk,
                Err(e) => {
                    self.uninspected
                        .get_or_insert_with(|| format!("nested message unreadable ({e:?})"));
                    break;
                }
            };
            if chunk.is_empty() {
                break;
            }
            offset += chunk.len() as u64;
            scanner.feed(&chunk);
        }
        let (found, problem) = scanner.finish();
        for PartInfo {
            content_type,
            filenames,
        } in found
        {
            self.parts.push((content_type, filenames, true));
        }
        if let Some(problem) = problem {
            self.uninspected.get_or_insert(problem);
        }
    }

    /// The first part `rule` blocks, described for the reply.
    pub fn blocked_by(&self, rule: &Blocked) -> Option<String> {
        if let Some(why) = &self.uninspected {
            return Some(format!("cannot inspect the message: {why}"));
        }
        self.parts.iter().find_map(|(ct, names, nested)| {
            let why = match names.as_slice() {
                [] => rule.matches(ct, None),
                names => names.iter().find_map(|n| rule.matches(ct, Some(n))),
            }?;
            Some(if *nested {
                format!("{why} in a nested message")
            } else {
                why
            })
        })
    }
}

/// Types whose content is a whole message (RFC 2046 §5.2.1, RFC 6532 §3.5).
pub fn is_message(content_type: &str) -> bool {
    matches!(content_type, "message/rfc822" | "message/global")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_and_type_matching() {
        let b = Blocked {
            extensions: ["exe".to_string()].into(),
            types: vec!["application/x-msdownload".into(), "video/*".into()],
        };
        assert_eq!(
            b.matches("application/octet-stream", Some("a.EXE"))
                .unwrap(),
            "file a.EXE"
        );
        assert!(b
            .matches("application/octet-stream", Some("a.exe. "))
            .is_some());
        assert!(b
            .matches("application/octet-stream", Some("a.exe.txt"))
            .is_none());
        assert!(b.matches("application/x-msdownload", None).is_some());
        assert!(b.matches("video/mp4", None).is_some());
        assert!(b.matches("text/plain", Some("exe")).is_none());
    }
}
