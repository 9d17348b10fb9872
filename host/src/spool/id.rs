//! Message ids: 21 characters of Crockford base32, `TTTTTTTTT CCCC RRRRRRRR` without spaces.
//!
//! - `T` (9 chars, 45 bits): Unix milliseconds, so ids sort by arrival across restarts.
//! - `C` (4 chars, 20 bits): a per-process sequence within the millisecond; the generator
//!   never hands out a smaller (time, sequence) pair than before, even if the clock steps back.
//! - `R` (8 chars, 40 bits): random, so two processes (or two relays sharing nothing) do not
//!   collide within the same millisecond.
//!
//! The alphabet is ASCII-ascending, upper case only and free of `/`, `.` and punctuation, so
//! ids are safe file names on case-insensitive file systems too.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::MessageId;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const SEQ_BITS: u32 = 20;
const SEQ_MAX: u64 = (1 << SEQ_BITS) - 1;

/// Last (millis, sequence) handed out by this process.
static LAST: Mutex<(u64, u64)> = Mutex::new((0, 0));

pub(crate) fn generate() -> MessageId {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let (millis, seq) = {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let next = if now > last.0 {
            (now, 0)
        } else if last.1 < SEQ_MAX {
            (last.0, last.1 + 1)
        } else {
            // A million ids in one millisecond: borrow the next millisecond.
            (last.0 + 1, 0)
        };
        *last = next;
        next
    };
    let random: u64 = rand::random::<u64>() & ((1 << 40) - 1);
    let mut s = String::with_capacity(21);
    push_base32(&mut s, millis, 9);
    push_base32(&mut s, seq, 4);
    push_base32(&mut s, random, 8);
    MessageId(s)
}

fn push_base32(out: &mut String, value: u64, digits: u32) {
    for i in (0..digits).rev() {
        let d = (value >> (i * 5)) & 31;
        out.push(ALPHABET[d as usize] as char);
    }
}

/// Whether `id` can name files in the spool: ids come back from operators (`queue delete`)
/// and from envelopes on disk, so nothing that could escape the queue directory is accepted.
pub(crate) fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl MessageId {
    /// A fresh id; the same generator as [`super::Spool::new_id`], usable without a spool.
    pub fn generate() -> MessageId {
        generate()
    }

    /// Parses an id given by an operator, refusing anything that is not a plain file-name stem.
    pub fn parse(s: &str) -> Option<MessageId> {
        is_valid(s).then(|| MessageId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_valid_and_increasing() {
        let mut prev = generate();
        assert_eq!(prev.0.len(), 21);
        for _ in 0..10_000 {
            let id = generate();
            assert!(is_valid(&id.0), "{id}");
            // Strictly increasing in the (time, sequence) prefix within one process.
            assert!(id.0[..13] > prev.0[..13], "{prev} then {id}");
            prev = id;
        }
    }

    #[test]
    fn rejects_path_like_ids() {
        for bad in ["", "../x", "a/b", "a.b", "x y", &"A".repeat(65)] {
            assert!(MessageId::parse(bad).is_none(), "{bad:?}");
        }
        assert!(MessageId::parse("01HZX-abc_9").is_some());
    }
}
