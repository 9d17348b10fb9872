//! MIME access for plugins: the part tree, decoded content and text-part replacement.
// Filled in by the MIME change; these answer "no such part" until then.

use super::bindings::wasmrelay::plugin::types as wit;
use super::message::MessageRes;

pub(crate) fn parts(_m: &MessageRes) -> Vec<wit::MimePart> {
    Vec::new()
}

pub(crate) fn part_text(_m: &MessageRes, _id: u32) -> Result<String, wit::PartError> {
    Err(wit::PartError::NoSuchPart)
}

pub(crate) fn read_part(
    _m: &MessageRes,
    _id: u32,
    _offset: u64,
    _len: u32,
) -> Result<Vec<u8>, wit::PartError> {
    Err(wit::PartError::NoSuchPart)
}

pub(crate) fn replace_part_text(
    _m: &mut MessageRes,
    _id: u32,
    _text: &str,
) -> Result<(), wit::PartError> {
    Err(wit::PartError::NoSuchPart)
}
