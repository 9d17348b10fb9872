//! The part tree: where each MIME part's header and content lie in the body.
//!
//! Parts are split at boundary delimiter lines exactly as RFC 2046 §5.1.1 draws them (a line
//! that is `--boundary`, optionally `--boundary--`, then only blanks), the same rule Python's
//! `email` and mail clients apply, so a part the relay rewrites is the part readers see. The
//! line break before a delimiter belongs to the delimiter. The scan only records offsets: no
//! content is decoded or copied, and caps on the number of parts and on nesting bound the
//! work and memory any message can cost.

use wasmrelay_codec::message::header_end;

use super::header::{self, MimeHeader};

/// Most parts listed for one message; later ones are not listed (and cannot be read or
/// replaced), the ones listed stay exact.
pub(crate) const MAX_PARTS: usize = 1_000;
/// Deepest multipart nesting that is split; a multipart deeper down is listed as a leaf.
/// Each level scans its own range once, so the scan costs at most this many passes.
pub(crate) const MAX_DEPTH: usize = 10;

/// One part. Offsets are into the message body; part 0 is the message, whose header fields
/// are the message's own (so its `header` and `content` are 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub parent: Option<u32>,
    /// Start of the part's header fields.
    pub header: usize,
    /// Start of its content, after the empty line.
    pub content: usize,
    /// End of its content (the line break before the next delimiter is not included).
    pub end: usize,
    pub info: MimeHeader,
    /// A multipart whose parts were split; every other part is a leaf.
    pub container: bool,
    /// Decoded size, once computed (0 for containers).
    pub size: Option<u64>,
}

impl Node {
    /// The part's content in `body` (the body the tree was built for or kept up with).
    pub(crate) fn content<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        debug_assert!(
            self.spans_within(body.len()),
            "{self:?} beyond {}",
            body.len()
        );
        body.get(self.content..self.end).unwrap_or_default()
    }

    /// Whether the part's offsets are in order and within a body of `len` bytes.
    pub(crate) fn spans_within(&self, len: usize) -> bool {
        self.header <= self.content && self.content <= self.end && self.end <= len
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tree {
    pub nodes: Vec<Node>,
    /// Whether parts were left out at [`MAX_PARTS`].
    pub truncated: bool,
}

impl Tree {
    /// Splits `body` into parts; `top` is what the message's own header fields say.
    pub(crate) fn scan(top: MimeHeader, body: &[u8]) -> Tree {
        let mut tree = Tree {
            nodes: Vec::new(),
            truncated: false,
        };
        tree.add(body, None, (0, 0, body.len()), top, 0);
        tree
    }

    /// Adds a part spanning `header..end` with content from `content`, and its parts.
    fn add(
        &mut self,
        body: &[u8],
        parent: Option<u32>,
        (header, content, end): (usize, usize, usize),
        info: MimeHeader,
        depth: usize,
    ) {
        if self.nodes.len() >= MAX_PARTS {
            self.truncated = true;
            return;
        }
        let id = self.nodes.len();
        let boundary = info.boundary.clone().filter(|_| depth < MAX_DEPTH);
        let digest = info.content_type == "multipart/digest";
        self.nodes.push(Node {
            parent,
            header,
            content,
            end,
            info,
            container: false,
            size: None,
        });
        let Some(boundary) = boundary else {
            return;
        };
        let parts = delimited(&body[content..end], boundary.as_bytes());
        if parts.is_empty() {
            // No delimiter line: not a multipart after all (RFC 2046 leaves it unreadable),
            // listed as a leaf that no text operation touches.
            return;
        }
        self.nodes[id].container = true;
        self.nodes[id].size = Some(0);
        // RFC 2046 §5.1.5: in a digest, a part without Content-Type is a message.
        let default_type = if digest {
            "message/rfc822"
        } else {
            "text/plain"
        };
        for (start, stop) in parts {
            let (start, stop) = (content + start, content + stop);
            let (fields, body_start) = header_end(&body[start..stop])
                .map_or((stop, stop), |h| (start + h.fields, start + h.body));
            let info = MimeHeader::parse(header::fields(&body[start..fields]), default_type);
            self.add(
                body,
                Some(id as u32),
                (start, body_start, stop),
                info,
                depth + 1,
            );
            if self.truncated {
                return;
            }
        }
    }

    /// Whether part `ancestor` encloses part `id`.
    pub(crate) fn encloses(&self, ancestor: usize, id: usize) -> bool {
        let mut at = self.nodes[id].parent;
        while let Some(p) = at {
            if p as usize == ancestor {
                return true;
            }
            at = self.nodes[p as usize].parent;
        }
        false
    }
}

/// The parts of a multipart's content: (start, end) of each, between its delimiter lines.
/// Empty when there is no delimiter line at all; a missing close delimiter ends the last
/// part at the end of `data`. At most [`MAX_PARTS`] ranges.
fn delimited(data: &[u8], boundary: &[u8]) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut open: Option<usize> = None;
    let starts = std::iter::once(0).chain(memchr::memmem::find_iter(data, b"\n--").map(|i| i + 1));
    for line in starts {
        let Some((next, close)) = delimiter(&data[line..], boundary) else {
            continue;
        };
        if let Some(start) = open {
            let before = if data[..line].ends_with(b"\r\n") {
                line - 2
            } else if data[..line].ends_with(b"\n") {
                line - 1
            } else {
                line
            };
            parts.push((start, before.max(start)));
            if parts.len() >= MAX_PARTS {
                return parts;
            }
        }
        if close {
            return parts;
        }
        open = Some(line + next);
    }
    if let Some(start) = open {
        parts.push((start, data.len()));
    }
    parts
}

/// Whether `line` (from a line start to the end of the data) begins with a delimiter line
/// for `boundary`: if so, the length of that line with its line break, and whether it is the
/// close delimiter.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<(usize, bool)> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (rest, close) = match rest.strip_prefix(b"--") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let blanks = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let after = &rest[blanks..];
    let eol = match after {
        [] => 0,
        [b'\n', ..] => 1,
        [b'\r', b'\n', ..] => 2,
        _ => return None,
    };
    Some((line.len() - after.len() + eol, close))
}
