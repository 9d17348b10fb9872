//! MIME access for plugins: the part tree, decoded content and text-part replacement, so no
//! plugin in any language parses MIME itself.
//!
//! Layout: [`tree`] splits the body into parts (offsets only), [`header`] reads and rewrites
//! a part's MIME fields, [`decode`] undoes transfer encodings and charsets, [`encode`]
//! re-encodes replaced text. The tree is built on first use and cached with the message; a
//! part replacement updates it in place (offsets shift, nothing is parsed again), while a new
//! body or a change to the message's own MIME fields drops it to be built again on demand.
//! The body is never copied to answer a read: only the part asked for is decoded.

mod decode;
mod encode;
mod header;
pub(crate) mod long_lines;
mod tree;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use wasmrelay_codec::message::header_end;

pub(crate) use self::header::MimeHeader;
use self::tree::{Node, Tree};
use super::bindings::wasmrelay::plugin::types as wit;
use super::message::MessageRes;
use super::message_traits;

/// Largest text `part-text` returns and `replace-part-text` takes (as UTF-8).
pub(crate) const MAX_TEXT: usize = 4 << 20;

/// What a message caches about its MIME structure. Cloning is cheap (shared), like the
/// message itself; a clone that is edited gets its own copy.
#[derive(Debug, Clone, Default)]
pub(crate) struct MimeCache {
    tree: Option<Arc<Tree>>,
    /// The part `read-part` decoded last, so reading one in chunks decodes it once.
    decoded: Option<(u32, Arc<Vec<u8>>)>,
}

/// The message's part tree, built on first use.
fn tree(m: &mut MessageRes) -> Arc<Tree> {
    if let Some(tree) = &m.mime.tree {
        return tree.clone();
    }
    let top = MimeHeader::parse(m.field_lines(), "text/plain");
    let tree = Arc::new(Tree::scan(top, m.body()));
    if tree.truncated {
        tracing::debug!(
            parts = tree.nodes.len(),
            "message has more MIME parts than plugins are shown"
        );
    }
    m.mime = MimeCache {
        tree: Some(tree.clone()),
        decoded: None,
    };
    tree
}

/// The content types of the message's leaf parts (lower case), for the `wants` declarations
/// check; `None` when the tree stopped at its part limit and cannot tell.
pub(crate) fn leaf_types(m: &mut MessageRes) -> Option<Vec<String>> {
    let tree = tree(m);
    let leaves = tree.nodes.iter().filter(|n| !n.container);
    (!tree.truncated).then(|| leaves.map(|n| n.info.content_type.clone()).collect())
}

/// Whether the message has an `attachment` (a `host.want-messages-with` trait): a part
/// [`message_traits::is_attachment`] says is one, or as many parts as the tree lists at most
/// (what a reader of `message.parts` cannot tell from a message cut there).
pub(crate) fn has_attachment(m: &mut MessageRes) -> bool {
    let tree = tree(m);
    tree.truncated
        || tree.nodes.len() >= tree::MAX_PARTS
        || tree.nodes.iter().any(|n| {
            let info = &n.info;
            message_traits::is_attachment(
                &info.content_type,
                info.filename.as_deref(),
                info.disposition.as_deref(),
                !n.container,
            )
        })
}

/// What the MIME fields of a message that is not multipart say of its one part, read from
/// its header `fields` (the bytes before the empty line) without the message being parsed:
/// the tree's only node. `None` for a multipart message, whose parts need the tree.
pub(crate) fn single_part(fields: &[u8]) -> Option<MimeHeader> {
    let top = MimeHeader::parse(header::fields(fields), "text/plain");
    (!top.content_type.starts_with("multipart/")).then_some(top)
}

/// Whether one of the raw header `fields` is named one of `names` (case-insensitive).
pub(crate) fn has_any_field(fields: &[u8], names: &[String]) -> bool {
    header::fields(fields).any(|f| {
        let name = header::field_name(f);
        names
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
    })
}

/// The leaf part `id`, or why there is none.
fn leaf(tree: &Tree, id: u32) -> Result<&Node, wit::PartError> {
    let node = tree
        .nodes
        .get(id as usize)
        .ok_or(wit::PartError::NoSuchPart)?;
    if node.container {
        return Err(wit::PartError::NotText);
    }
    Ok(node)
}

/// Leaf `id` when it is a `text/*` part.
fn text_leaf(tree: &Tree, id: u32) -> Result<&Node, wit::PartError> {
    let node = leaf(tree, id)?;
    if !node.info.content_type.starts_with("text/") {
        return Err(wit::PartError::NotText);
    }
    Ok(node)
}

pub(crate) fn parts(m: &mut MessageRes) -> Vec<wit::MimePart> {
    let mut tree = tree(m);
    if tree.nodes.iter().any(|n| n.size.is_none()) {
        let sizes: Vec<u64> = tree
            .nodes
            .iter()
            .map(|n| {
                n.size.unwrap_or_else(|| {
                    let raw = n.content(m.body());
                    decode::transfer_decoded(raw, n.info.encoding.as_deref()).len() as u64
                })
            })
            .collect();
        // The cache lets go first: a tree nothing else shares (no other copy of the message
        // holds it) takes its sizes in place instead of being copied.
        m.mime.tree = None;
        let nodes = &mut Arc::make_mut(&mut tree).nodes;
        for (node, size) in nodes.iter_mut().zip(sizes) {
            node.size = Some(size);
        }
        m.mime.tree = Some(tree.clone());
    }
    tree.nodes
        .iter()
        .enumerate()
        .map(|(id, n)| wit::MimePart {
            id: id as u32,
            parent: n.parent,
            content_type: n.info.content_type.clone(),
            charset: n.info.charset.clone(),
            filename: n.info.filename.clone(),
            disposition: n.info.disposition.clone(),
            transfer_encoding: n.info.encoding.clone(),
            size: n.size.unwrap_or_default(),
        })
        .collect()
}

pub(crate) fn part_text(m: &mut MessageRes, id: u32) -> Result<String, wit::PartError> {
    let tree = tree(m);
    let node = text_leaf(&tree, id)?;
    let raw = node.content(m.body());
    // Refused before any decoding: content over four times the cap decodes to text over it
    // in every encoding mail carries text in (base64 keeps 3/4, UTF-16 halves at most).
    if raw.len() > 4 * MAX_TEXT {
        return Err(wit::PartError::TooLarge);
    }
    let bytes = decode::transfer_decoded(raw, node.info.encoding.as_deref());
    if bytes.len() > 2 * MAX_TEXT {
        return Err(wit::PartError::TooLarge);
    }
    let text =
        decode::to_utf8(&bytes, node.info.charset.as_deref()).ok_or(wit::PartError::NotText)?;
    if text.len() > MAX_TEXT {
        return Err(wit::PartError::TooLarge);
    }
    Ok(text)
}

pub(crate) fn read_part(
    m: &mut MessageRes,
    id: u32,
    offset: u64,
    len: u32,
) -> Result<Vec<u8>, wit::PartError> {
    let tree = tree(m);
    let node = leaf(&tree, id)?;
    let chunk = |bytes: &[u8]| {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start.saturating_add(len as usize).min(bytes.len());
        bytes[start..end].to_vec()
    };
    let raw = node.content(m.body());
    if decode::is_identity(node.info.encoding.as_deref()) {
        return Ok(chunk(raw));
    }
    if let Some((cached, bytes)) = &m.mime.decoded {
        if *cached == id {
            return Ok(chunk(bytes));
        }
    }
    let bytes = Arc::new(decode::transfer_decoded(raw, node.info.encoding.as_deref()).into_owned());
    let out = chunk(&bytes);
    m.mime.decoded = Some((id, bytes));
    Ok(out)
}

pub(crate) fn replace_part_text(
    m: &mut MessageRes,
    id: u32,
    text: &str,
) -> Result<(), wit::PartError> {
    let mut tree = tree(m);
    let node = text_leaf(&tree, id)?;
    if text.len() > MAX_TEXT {
        return Err(wit::PartError::TooLarge);
    }
    if !node.spans_within(m.body().len()) {
        debug_assert!(false, "{node:?} beyond the body");
        return Err(wit::PartError::NoSuchPart);
    }
    let (start, old_end) = (node.header, node.end);
    let new = rewrite_part(m, id, node, text);
    let new_len = m.body().len() - (old_end - start) + new.bytes.len();
    if new_len > m.max_body() {
        return Err(wit::PartError::TooLarge);
    }
    move_parts(Arc::make_mut(&mut tree), id as usize, start..old_end, &new);
    m.splice_body(start..old_end, &new.bytes);
    if let Some(fields) = new.top_fields {
        m.set_field_lines(fields);
    }
    m.mime = MimeCache {
        tree: Some(tree),
        decoded: None,
    };
    Ok(())
}

/// A text part as `replace-part-text` writes it, ready to take the place of the old one.
struct Rewritten {
    /// What replaces the part's header fields and content in the body (part 0's header
    /// fields are the message's, in `top_fields`).
    bytes: Vec<u8>,
    /// Offsets into `bytes` of the header fields, the content and the content's end.
    header: usize,
    content: usize,
    end: usize,
    /// What the new header fields say, read as a fresh parse reads them.
    info: MimeHeader,
    size: u64,
    top_fields: Option<Vec<Vec<u8>>>,
}

/// `node` is a text leaf of `m` whose offsets lie within the body.
fn rewrite_part(m: &MessageRes, id: u32, node: &Node, text: &str) -> Rewritten {
    let body = m.body();
    let content = encode::canonical(text);
    let size = content.len() as u64;
    // What follows a part is the line break its delimiter starts with; where nothing (or a
    // delimiter with no line break of its own) follows, the content must end one.
    let follows = &body[node.end..];
    let end_line = !(follows.starts_with(b"\r\n") || follows.starts_with(b"\n"));
    let encoded = encode::encode(content, end_line);
    let ctype = node.info.content_type.as_str();

    let mut bytes = Vec::with_capacity(encoded.bytes.len() + (node.content - node.header) + 64);
    let mut header = 0;
    let (info, top_fields) = if id == 0 {
        let mut fields = Vec::new();
        header::rewrite(m.field_lines(), ctype, encoded.encoding, |f| {
            fields.push(f.to_vec())
        });
        if !fields
            .iter()
            .any(|f| header::field_name(f).eq_ignore_ascii_case(b"mime-version"))
        {
            fields.push(b"MIME-Version: 1.0".to_vec());
        }
        let info = MimeHeader::parse(fields.iter().map(Vec::as_slice), ctype);
        (info, Some(fields))
    } else {
        // A delimiter line that ends the data has no line break yet: the part needs one.
        if body[..node.header].last() != Some(&b'\n') {
            bytes.extend_from_slice(b"\r\n");
            header = 2;
        }
        let part = &body[node.header..node.end];
        let fields_end = header_end(part).map_or(part.len(), |h| h.fields);
        let fields = header::fields(&part[..fields_end]);
        header::rewrite(fields, ctype, encoded.encoding, |f| {
            bytes.extend_from_slice(f);
            bytes.extend_from_slice(b"\r\n");
        });
        let info = MimeHeader::parse(header::fields(&bytes[header..]), ctype);
        bytes.extend_from_slice(b"\r\n");
        (info, None)
    };
    let content = bytes.len();
    bytes.extend_from_slice(&encoded.bytes);
    // A delimiter right after the part takes the content's last line break as its own.
    let delimiter_follows = end_line && !follows.is_empty();
    if delimiter_follows && !encoded.bytes.ends_with(b"\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    let end = bytes.len() - if delimiter_follows { 2 } else { 0 };
    Rewritten {
        bytes,
        header,
        content,
        end,
        info,
        size,
        top_fields,
    }
}

/// Updates the tree for part `id`, which spanned `old` and is now `new`: parts after it move
/// by the change in length, the ones enclosing it grow by it, the others stay.
fn move_parts(tree: &mut Tree, id: usize, old: std::ops::Range<usize>, new: &Rewritten) {
    let delta = new.bytes.len() as isize - old.len() as isize;
    let shift = |offset: &mut usize| *offset = offset.saturating_add_signed(delta);
    for i in 0..tree.nodes.len() {
        if tree.encloses(i, id) {
            shift(&mut tree.nodes[i].end);
        } else if i != id && tree.nodes[i].header >= old.end {
            let n = &mut tree.nodes[i];
            shift(&mut n.header);
            shift(&mut n.content);
            shift(&mut n.end);
        }
    }
    let n = &mut tree.nodes[id];
    n.header = old.start + new.header;
    n.content = old.start + new.content;
    n.end = old.start + new.end;
    n.info = new.info.clone();
    n.size = Some(new.size);
}
