//! [`MessageBytes`]: a message's content, owned in memory or mapped from a file, so that a
//! large message moves between reception, the spool and delivery without a heap copy.

use std::ops::Deref;
use std::sync::Arc;

/// The bytes of one message. Cheap to clone (a mapped message shares its mapping).
///
/// A mapped message reads from a file that only the relay writes (the spool's own files,
/// under a `0700` directory), and is never truncated while mapped.
#[derive(Clone)]
pub enum MessageBytes {
    Owned(Arc<[u8]>),
    Mapped {
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    },
}

impl MessageBytes {
    /// `len` bytes of `map` from `start`; `None` if that range is not inside the mapping.
    pub fn mapped(map: Arc<memmap2::Mmap>, start: usize, len: usize) -> Option<MessageBytes> {
        let end = start.checked_add(len)?;
        (end <= map.len()).then_some(MessageBytes::Mapped { map, start, len })
    }

    pub fn is_mapped(&self) -> bool {
        matches!(self, MessageBytes::Mapped { .. })
    }
}

impl Deref for MessageBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            MessageBytes::Owned(bytes) => bytes,
            MessageBytes::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }
}

impl AsRef<[u8]> for MessageBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for MessageBytes {
    fn from(bytes: Vec<u8>) -> Self {
        MessageBytes::Owned(bytes.into())
    }
}

impl From<&[u8]> for MessageBytes {
    fn from(bytes: &[u8]) -> Self {
        MessageBytes::Owned(bytes.into())
    }
}

impl Default for MessageBytes {
    fn default() -> Self {
        MessageBytes::Owned(Arc::from(&[][..]))
    }
}

impl std::fmt::Debug for MessageBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageBytes")
            .field("len", &self.len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

impl PartialEq for MessageBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl PartialEq<[u8]> for MessageBytes {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<Vec<u8>> for MessageBytes {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == other[..]
    }
}
