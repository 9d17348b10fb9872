//! The segment file format: a segment header, then records back to back (see the module
//! docs of [`super`] for the layout). Pure functions over byte slices, no I/O.

use crc32fast::Hasher;

/// First bytes of every segment file; the version is in the magic.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"wrlog\x00\x00\x01";
/// Segment header: magic, then a random 64-bit nonce that seeds every record's header CRC.
pub(crate) const SEGMENT_HEADER_LEN: usize = 16;
/// First bytes of every record.
pub(crate) const RECORD_MAGIC: [u8; 4] = *b"WRrc";
/// Fixed record header: magic, kind, id length, 2 zero bytes, payload length (u64 LE),
/// payload CRC-32 (u32 LE), header CRC-32 (u32 LE), id (64 bytes, zero-padded).
pub(crate) const HEADER_LEN: usize = 88;
const ID_FIELD: usize = 64;
const ID_AT: usize = 24;
/// A Message payload starts with the envelope JSON length and the message CRC-32 (u32 LE each).
pub(crate) const MESSAGE_PREFIX: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Envelope JSON and message bytes, in one record: the message is queued.
    Message = 1,
    /// A full replacement envelope (after a delivery attempt).
    Envelope = 2,
    /// The message is finished; nothing after it refers to it.
    Done = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Message),
            2 => Some(Kind::Envelope),
            3 => Some(Kind::Done),
            _ => None,
        }
    }
}

/// The first bytes of a new segment.
pub(crate) fn segment_header(nonce: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..].copy_from_slice(&nonce.to_le_bytes());
    h
}

/// The nonce of a segment, or why its header is not one.
pub(crate) fn parse_segment_header(seg: &[u8]) -> Result<u64, String> {
    if seg.len() < SEGMENT_HEADER_LEN {
        return Err(format!(
            "{} bytes, shorter than a segment header",
            seg.len()
        ));
    }
    if seg[..8] != SEGMENT_MAGIC {
        return Err("not a segment (bad magic)".into());
    }
    Ok(u64::from_le_bytes(seg[8..16].try_into().expect("8 bytes")))
}

/// The header CRC covers the nonce, so a record can only be forged by someone who knows the
/// segment's nonce: message content that happens to contain a well-formed record (an attacker
/// mailing one) is never mistaken for a record when recovery resynchronises after damage.
fn header_crc(nonce: u64, header: &[u8; HEADER_LEN]) -> u32 {
    let mut h = Hasher::new();
    h.update(&nonce.to_le_bytes());
    h.update(&header[..20]);
    h.update(&header[ID_AT..]);
    h.finalize()
}

fn header(nonce: u64, kind: Kind, id: &str, payload_len: u64, crc: u32) -> [u8; HEADER_LEN] {
    assert!(
        !id.is_empty() && id.len() <= ID_FIELD,
        "ids are checked before they reach the log"
    );
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&RECORD_MAGIC);
    h[4] = kind as u8;
    h[5] = id.len() as u8;
    h[8..16].copy_from_slice(&payload_len.to_le_bytes());
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h[ID_AT..ID_AT + id.len()].copy_from_slice(id.as_bytes());
    let hcrc = header_crc(nonce, &h);
    h[20..24].copy_from_slice(&hcrc.to_le_bytes());
    h
}

/// Everything of a Message record before the message bytes (header, prefix, envelope JSON).
/// The payload CRC covers the message too, combined from `message_crc` without reading it
/// again.
pub(crate) fn message_head(
    nonce: u64,
    id: &str,
    json: &[u8],
    message_len: u64,
    message_crc: u32,
) -> Vec<u8> {
    let json_len = u32::try_from(json.len()).expect("an envelope is far below 4 GiB");
    let mut prefix = [0u8; MESSAGE_PREFIX];
    prefix[..4].copy_from_slice(&json_len.to_le_bytes());
    prefix[4..].copy_from_slice(&message_crc.to_le_bytes());
    let mut crc = Hasher::new();
    crc.update(&prefix);
    crc.update(json);
    crc.combine(&Hasher::new_with_initial_len(message_crc, message_len));
    let payload_len = (MESSAGE_PREFIX + json.len()) as u64 + message_len;
    let mut out = Vec::with_capacity(HEADER_LEN + MESSAGE_PREFIX + json.len());
    out.extend_from_slice(&header(
        nonce,
        Kind::Message,
        id,
        payload_len,
        crc.finalize(),
    ));
    out.extend_from_slice(&prefix);
    out.extend_from_slice(json);
    out
}

/// A whole Envelope record.
pub(crate) fn envelope_record(nonce: u64, id: &str, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + json.len());
    out.extend_from_slice(&header(
        nonce,
        Kind::Envelope,
        id,
        json.len() as u64,
        crc32fast::hash(json),
    ));
    out.extend_from_slice(json);
    out
}

/// A whole Done record.
pub(crate) fn done_record(nonce: u64, id: &str) -> Vec<u8> {
    header(nonce, Kind::Done, id, 0, crc32fast::hash(&[])).to_vec()
}

/// One record that checked (magic, header CRC, length, payload CRC).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rec<'a> {
    pub kind: Kind,
    pub id: &'a str,
    /// Offset of the record in its segment.
    pub start: u64,
    /// Header plus payload.
    pub len: u64,
    pub payload: &'a [u8],
}

/// The parts of a Message record's payload.
pub(crate) struct MessagePart<'a> {
    pub json: &'a [u8],
    /// Offset of the message bytes in the segment.
    pub offset: u64,
    pub len: u64,
    pub crc: u32,
}

impl<'a> Rec<'a> {
    /// Splits a Message payload; `Err` if its prefix does not fit (a record that checked
    /// its CRC but does not parse is damage as well).
    pub(crate) fn message(&self) -> Result<MessagePart<'a>, String> {
        let p = self.payload;
        if p.len() < MESSAGE_PREFIX {
            return Err("message record shorter than its prefix".into());
        }
        let json_len = u32::from_le_bytes(p[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(p[4..8].try_into().expect("4 bytes"));
        let json_end = MESSAGE_PREFIX
            .checked_add(json_len)
            .filter(|&end| end <= p.len())
            .ok_or("envelope length past the record")?;
        let message = &p[json_end..];
        if crc32fast::hash(message) != crc {
            return Err("message checksum mismatch".into());
        }
        Ok(MessagePart {
            json: &p[MESSAGE_PREFIX..json_end],
            offset: self.start + (HEADER_LEN + json_end) as u64,
            len: message.len() as u64,
            crc,
        })
    }
}

/// Parses the record at `at` of a segment whose nonce is `nonce`.
pub(crate) fn parse(seg: &[u8], nonce: u64, at: usize) -> Result<Rec<'_>, String> {
    let head: &[u8; HEADER_LEN] = seg
        .get(at..)
        .and_then(|rest| rest.get(..HEADER_LEN))
        .and_then(|h| h.try_into().ok())
        .ok_or("header cut short")?;
    if head[..4] != RECORD_MAGIC {
        return Err("bad record magic".into());
    }
    let stored = u32::from_le_bytes(head[20..24].try_into().expect("4 bytes"));
    if header_crc(nonce, head) != stored {
        return Err("header checksum mismatch".into());
    }
    let kind = Kind::from_u8(head[4]).ok_or("unknown record kind")?;
    let id_len = head[5] as usize;
    let id = std::str::from_utf8(&head[ID_AT..ID_AT + id_len.min(ID_FIELD)])
        .ok()
        .filter(|id| id_len <= ID_FIELD && super::id::is_valid(id))
        .ok_or("invalid id")?;
    let payload_len = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    let payload_crc = u32::from_le_bytes(head[16..20].try_into().expect("4 bytes"));
    let start = at + HEADER_LEN;
    let payload = usize::try_from(payload_len)
        .ok()
        .and_then(|len| seg.get(start..)?.get(..len))
        .ok_or("payload cut short")?;
    if crc32fast::hash(payload) != payload_crc {
        return Err("payload checksum mismatch".into());
    }
    Ok(Rec {
        kind,
        id,
        start: at as u64,
        len: HEADER_LEN as u64 + payload_len,
        payload,
    })
}

/// A stretch of a segment where no record checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad {
    pub start: u64,
    pub end: u64,
    pub why: String,
}

/// Every record of a segment (after its header) that checks, in order, and the stretches
/// between them that do not. After a bad stretch the scan resumes at the next offset where a
/// record checks, so that damage in the middle loses only what it hit.
pub(crate) fn scan(seg: &[u8], nonce: u64) -> (Vec<Rec<'_>>, Vec<Bad>) {
    let mut recs = Vec::new();
    let mut bad = Vec::new();
    let mut at = SEGMENT_HEADER_LEN.min(seg.len());
    while at < seg.len() {
        match parse(seg, nonce, at) {
            Ok(rec) => {
                at += rec.len as usize;
                recs.push(rec);
            }
            Err(why) => {
                let resume = next_record(seg, nonce, at + 1);
                bad.push(Bad {
                    start: at as u64,
                    end: resume.unwrap_or(seg.len()) as u64,
                    why,
                });
                match resume {
                    Some(next) => at = next,
                    None => break,
                }
            }
        }
    }
    (recs, bad)
}

fn next_record(seg: &[u8], nonce: u64, from: usize) -> Option<usize> {
    let mut at = from;
    while at + RECORD_MAGIC.len() <= seg.len() {
        let found = seg[at..]
            .windows(RECORD_MAGIC.len())
            .position(|w| w == RECORD_MAGIC)?;
        at += found;
        if parse(seg, nonce, at).is_ok() {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: u64 = 0x5eed;

    fn segment(records: &[Vec<u8>]) -> Vec<u8> {
        let mut seg = segment_header(NONCE).to_vec();
        for r in records {
            seg.extend_from_slice(r);
        }
        seg
    }

    fn message(id: &str, json: &[u8], body: &[u8]) -> Vec<u8> {
        let mut r = message_head(NONCE, id, json, body.len() as u64, crc32fast::hash(body));
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn records_round_trip() {
        let seg = segment(&[
            message("A1", b"{\"x\":1}", b"Subject: hi\r\n\r\nbody\r\n"),
            envelope_record(NONCE, "A1", b"{\"x\":2}"),
            done_record(NONCE, "A1"),
        ]);
        assert_eq!(parse_segment_header(&seg), Ok(NONCE));
        let (recs, bad) = scan(&seg, NONCE);
        assert!(bad.is_empty(), "{bad:?}");
        let kinds: Vec<_> = recs.iter().map(|r| (r.kind, r.id)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::Message, "A1"),
                (Kind::Envelope, "A1"),
                (Kind::Done, "A1")
            ]
        );
        let m = recs[0].message().unwrap();
        assert_eq!(m.json, b"{\"x\":1}");
        let (start, end) = (m.offset as usize, (m.offset + m.len) as usize);
        assert_eq!(&seg[start..end], b"Subject: hi\r\n\r\nbody\r\n");
        assert_eq!(recs[1].payload, b"{\"x\":2}");
    }

    #[test]
    fn every_truncation_is_a_bad_tail() {
        let full = segment(&[message("A1", b"{}", b"abc"), done_record(NONCE, "A1")]);
        let first_len = HEADER_LEN + MESSAGE_PREFIX + 2 + 3;
        for cut in SEGMENT_HEADER_LEN + 1..full.len() {
            let (recs, bad) = scan(&full[..cut], NONCE);
            if cut == SEGMENT_HEADER_LEN + first_len {
                assert!(recs.len() == 1 && bad.is_empty(), "cut at {cut}");
                continue;
            }
            let whole = (cut - SEGMENT_HEADER_LEN) / first_len.max(1);
            assert_eq!(recs.len(), whole.min(1), "cut at {cut}");
            assert_eq!(bad.len(), 1, "cut at {cut}");
            assert_eq!(bad[0].end as usize, cut, "the bad stretch runs to the end");
        }
    }

    #[test]
    fn damage_in_the_middle_loses_only_what_it_hit() {
        let mut seg = segment(&[
            message("A1", b"{}", b"one"),
            message("B2", b"{}", b"two"),
            message("C3", b"{}", b"three"),
        ]);
        let second = SEGMENT_HEADER_LEN + HEADER_LEN + MESSAGE_PREFIX + 2 + 3;
        seg[second + HEADER_LEN + 12] ^= 0x40;
        let (recs, bad) = scan(&seg, NONCE);
        let ids: Vec<_> = recs.iter().map(|r| r.id).collect();
        assert_eq!(ids, ["A1", "C3"]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].start as usize, second);
    }

    #[test]
    fn a_record_inside_message_content_is_not_a_record_without_the_nonce() {
        // A message whose body is a well-formed record for another segment's nonce.
        let forged = {
            let mut r = message_head(0xbad, "EVIL", b"{}", 3, crc32fast::hash(b"xyz"));
            r.extend_from_slice(b"xyz");
            r
        };
        let mut seg = segment(&[message("A1", b"{}", &forged)]);
        // Damage the real record's header so that the scan has to resynchronise.
        seg[SEGMENT_HEADER_LEN + 9] ^= 1;
        let (recs, bad) = scan(&seg, NONCE);
        assert!(recs.is_empty(), "{recs:?}");
        assert_eq!(bad.len(), 1);
    }

    #[test]
    fn bad_segment_headers() {
        assert!(parse_segment_header(b"wrlog").is_err());
        assert!(parse_segment_header(&[0u8; 16]).is_err());
    }
}
