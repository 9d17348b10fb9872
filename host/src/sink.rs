//! `wasmrelay sink`: a catch-all SMTP server that writes every message it receives (envelope
//! and bytes) to a directory, for trying routes and plugins locally.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::smtp::incoming::Spill;
use crate::smtp::session::{MessageStore, StoreFuture};
use crate::spool::{Envelope, MessageBytes, MessageId, SpoolError};

/// Writes `<id>.eml` (the message as received) and `<id>.json` (the envelope) per message.
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    pub fn new(dir: &Path) -> std::io::Result<Arc<DirStore>> {
        std::fs::create_dir_all(dir)?;
        Ok(Arc::new(DirStore {
            dir: dir.to_path_buf(),
        }))
    }
}

impl MessageStore for DirStore {
    fn new_id(&self) -> MessageId {
        MessageId::generate()
    }

    /// A tool for trying routes: messages stay in memory while they arrive.
    fn spill(&self) -> Spill {
        Spill::memory()
    }

    fn store<'a>(&'a self, envelope: &'a Envelope, message: MessageBytes) -> StoreFuture<'a> {
        let dir = self.dir.clone();
        let id = envelope.id.0.clone();
        let json = serde_json::to_vec_pretty(envelope).unwrap_or_default();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || write_pair(&dir, &id, &json, &message))
                .await
                .map_err(|e| SpoolError::Write {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e),
                })?
        })
    }
}

/// The message first, then the envelope: a reader that sees `<id>.json` finds the message too.
fn write_pair(dir: &Path, id: &str, json: &[u8], message: &[u8]) -> Result<(), SpoolError> {
    for (name, bytes) in [(format!("{id}.eml"), message), (format!("{id}.json"), json)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        let path = dir.join(&name);
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| SpoolError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}
