//! The in-memory index (id → envelope and where its records are) and the per-segment counts
//! that decide when a segment can go. [`Replay`] rebuilds both from segments, for recovery
//! and for read-only scans by other processes.

use std::collections::BTreeMap;

use super::record::{Kind, Rec};
use super::{Envelope, MessageId};

/// Where a message's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub seg: u64,
    /// Offset of the message bytes in the segment file.
    pub offset: u64,
    pub len: u64,
    pub crc: u32,
}

/// A record that keeps its segment alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecRef {
    pub seg: u64,
    pub len: u64,
}

/// One queued message.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub envelope: Envelope,
    pub msg: Span,
    /// The Message record (in `msg.seg`).
    pub msg_rec: RecRef,
    /// The latest Envelope record, when there is one after the Message record.
    pub env_rec: Option<RecRef>,
}

/// Per-segment bookkeeping.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegMeta {
    /// Records of queued messages in this segment that are still current.
    pub refs: u64,
    /// Their bytes.
    pub live: u64,
    /// The segment's length.
    pub size: u64,
}

/// Every segment that exists, by sequence number.
#[derive(Debug, Default)]
pub(crate) struct Segs(pub BTreeMap<u64, SegMeta>);

impl Segs {
    fn add(&mut self, r: RecRef, sign: i8) {
        let meta = self.0.entry(r.seg).or_default();
        if sign > 0 {
            meta.refs += 1;
            meta.live += r.len;
        } else {
            meta.refs = meta.refs.saturating_sub(1);
            meta.live = meta.live.saturating_sub(r.len);
        }
    }

    pub(crate) fn pin(&mut self, e: &Entry) {
        self.add(e.msg_rec, 1);
        if let Some(r) = e.env_rec {
            self.add(r, 1);
        }
    }

    pub(crate) fn unpin(&mut self, e: &Entry) {
        self.add(e.msg_rec, -1);
        if let Some(r) = e.env_rec {
            self.add(r, -1);
        }
    }

    pub(crate) fn grow(&mut self, seg: u64, by: u64) {
        self.0.entry(seg).or_default().size += by;
    }
}

pub(crate) type Index = BTreeMap<MessageId, Entry>;

/// Puts `entry` (or nothing) in the index under `id`, keeping the segment counts in line.
pub(crate) fn set(index: &mut Index, segs: &mut Segs, id: MessageId, entry: Option<Entry>) {
    if let Some(old) = index.remove(&id) {
        segs.unpin(&old);
    }
    if let Some(new) = entry {
        segs.pin(&new);
        index.insert(id, new);
    }
}

/// Replays records in log order: later records win, Done removes.
#[derive(Default)]
pub(crate) struct Replay {
    pub index: Index,
    pub segs: Segs,
}

impl Replay {
    /// Applies one record of segment `seg`. `Err` for a record that checked its CRC but does
    /// not make sense (an envelope that does not parse or names another id): damage.
    pub(crate) fn apply(&mut self, seg: u64, rec: &Rec<'_>) -> Result<(), String> {
        let id = MessageId(rec.id.to_string());
        let this = RecRef { seg, len: rec.len };
        let entry = match rec.kind {
            Kind::Message => {
                let m = rec.message()?;
                Some(Entry {
                    envelope: parse_envelope(m.json, &id)?,
                    msg: Span {
                        seg,
                        offset: m.offset,
                        len: m.len,
                        crc: m.crc,
                    },
                    msg_rec: this,
                    env_rec: None,
                })
            }
            Kind::Envelope => {
                let envelope = parse_envelope(rec.payload, &id)?;
                match self.index.get(&id) {
                    // Its message is finished (or was lost): nothing to update.
                    None => return Ok(()),
                    Some(old) => Some(Entry {
                        envelope,
                        env_rec: Some(this),
                        ..old.clone()
                    }),
                }
            }
            Kind::Done => None,
        };
        set(&mut self.index, &mut self.segs, id, entry);
        Ok(())
    }
}

fn parse_envelope(json: &[u8], id: &MessageId) -> Result<Envelope, String> {
    let envelope: Envelope =
        serde_json::from_slice(json).map_err(|e| format!("invalid envelope JSON: {e}"))?;
    if &envelope.id != id {
        return Err(format!(
            "record for {id} holds the envelope of {}",
            envelope.id
        ));
    }
    Ok(envelope)
}
