//! File names and the envelope record format (see the module docs of [`super`] for the layout).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Envelope;

pub(crate) const QUEUE_DIR: &str = "queue";
pub(crate) const CORRUPT_DIR: &str = "corrupt";
/// Held exclusively by the one relay that owns the spool, for as long as it runs.
pub(crate) const OWNER_LOCK: &str = "owner.lock";
/// Held exclusively around every batch of renames/unlinks, by the relay and by `delete_by_id`.
pub(crate) const COMMIT_LOCK: &str = "commit.lock";

pub(crate) const MSG_EXT: &str = "msg";
pub(crate) const ENV_EXT: &str = "env";
pub(crate) const TMP_EXT: &str = "tmp";

/// First word of the trailer line; the version is in the name so a future format can differ.
const TRAILER_TAG: &str = "wasmrelay-env-v1";

/// What a file name in `queue/` says it is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Name<'a> {
    Message(&'a str),
    Envelope(&'a str),
    Temp,
    Other,
}

pub(crate) fn classify(name: &str) -> Name<'_> {
    if name.ends_with(&format!(".{TMP_EXT}")) {
        return Name::Temp;
    }
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return Name::Other;
    };
    if !super::id::is_valid(stem) {
        return Name::Other;
    }
    match ext {
        MSG_EXT => Name::Message(stem),
        ENV_EXT => Name::Envelope(stem),
        _ => Name::Other,
    }
}

pub(crate) fn msg_path(queue: &Path, id: &str) -> PathBuf {
    queue.join(format!("{id}.{MSG_EXT}"))
}

pub(crate) fn env_path(queue: &Path, id: &str) -> PathBuf {
    queue.join(format!("{id}.{ENV_EXT}"))
}

/// A temp name that no other writer uses: the sequence is unique within the process and the
/// owner lock keeps other relays out.
pub(crate) fn tmp_path(queue: &Path, id: &str, ext: &str, seq: u64) -> PathBuf {
    queue.join(format!("{id}.{ext}.{seq}.{TMP_EXT}"))
}

/// The envelope plus what is needed to check the message file against it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EnvelopeRecord {
    pub message_len: u64,
    pub message_crc32: u32,
    pub envelope: Envelope,
}

/// `<json>\n<TRAILER_TAG> <json length> <crc32 of json, 8 hex>\n`
pub(crate) fn encode(record: &EnvelopeRecord) -> Vec<u8> {
    let mut out = serde_json::to_vec(record).expect("envelope serializes");
    let crc = crc32fast::hash(&out);
    let len = out.len();
    out.extend_from_slice(format!("\n{TRAILER_TAG} {len} {crc:08x}\n").as_bytes());
    out
}

/// Checks the trailer, then parses; any failure is described for the warning and `corrupt/`.
pub(crate) fn decode(bytes: &[u8]) -> Result<EnvelopeRecord, String> {
    let body = bytes
        .strip_suffix(b"\n")
        .ok_or("missing final newline (truncated)")?;
    let split = body
        .iter()
        .rposition(|&b| b == b'\n')
        .ok_or("missing trailer line")?;
    let (json, trailer) = (&body[..split], &body[split + 1..]);
    let trailer = std::str::from_utf8(trailer).map_err(|_| "trailer is not UTF-8")?;
    let mut words = trailer.split(' ');
    if words.next() != Some(TRAILER_TAG) {
        return Err(format!("unknown trailer {trailer:?}"));
    }
    let len: usize = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or("bad trailer length")?;
    let crc = words
        .next()
        .and_then(|w| u32::from_str_radix(w, 16).ok())
        .ok_or("bad trailer checksum")?;
    if len != json.len() {
        return Err(format!("length {} but trailer says {len}", json.len()));
    }
    if crc32fast::hash(json) != crc {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("invalid envelope JSON: {e}"))
}

/// fsync of a directory, so that renames and unlinks in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{ClientInfo, MessageId, Recipient};

    fn record() -> EnvelopeRecord {
        EnvelopeRecord {
            message_len: 3,
            message_crc32: crc32fast::hash(b"abc"),
            envelope: Envelope {
                id: MessageId("X1".into()),
                received_at: 1,
                mail_from: None,
                recipients: vec![Recipient::pending("a@b".into())],
                client: ClientInfo {
                    ip: "127.0.0.1".parse().unwrap(),
                    helo: "h".into(),
                    auth_user: None,
                    tls: false,
                    origin: Default::default(),
                },
                eight_bit: false,
                smtputf8: false,
                ret_headers_only: false,
                envid: None,
                size: 3,
                listener: String::new(),
                annotations: Vec::new(),
                trace: None,
            },
        }
    }

    #[test]
    fn round_trip_and_every_truncation_is_detected() {
        let bytes = encode(&record());
        assert_eq!(decode(&bytes).unwrap().envelope, record().envelope);
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
        let mut flipped = bytes.clone();
        flipped[5] ^= 0x01;
        assert!(decode(&flipped).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(classify("AB.msg"), Name::Message("AB"));
        assert_eq!(classify("AB.env"), Name::Envelope("AB"));
        assert_eq!(classify("AB.env.7.tmp"), Name::Temp);
        assert_eq!(classify("a.b.msg"), Name::Other);
        assert_eq!(classify("README"), Name::Other);
    }
}
