//! Which recipients we delivered which message to, so that a report can be matched to a
//! delivery we really made: a forged DSN or complaint naming a queue id we never used, or a
//! recipient that message never went to, matches nothing and is ignored.
//!
//! An [`EventTap`] on `delivered` events. Each delivery is kept as 16 bytes of
//! SHA-256(queue id, NUL, lower-cased recipient) with its time, in memory and in an
//! append-only file of 24-byte records, `<spool>/feedback/delivered`, written and fdatasynced
//! in batches by its own thread (a crash loses at most the last batch: reports about those
//! deliveries are then ignored, never wrongly accepted). Entries older than `match_window`,
//! and the oldest past `max_tracked`, are forgotten; the file is rewritten from memory when
//! it holds twice what is live.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::events::{Event, EventTap};

type Key = [u8; 16];
const RECORD: usize = 24;

pub struct SentIndex {
    live: Arc<Mutex<Live>>,
    tx: Mutex<mpsc::SyncSender<(Key, u64)>>,
}

struct Live {
    times: HashMap<Key, u64>,
    /// Keys in the order they were added, with their time then.
    order: VecDeque<(Key, u64)>,
    window_ms: u64,
    max: usize,
}

impl Live {
    fn insert(&mut self, key: Key, at: u64) {
        self.times.insert(key, at);
        self.order.push_back((key, at));
        self.expire(at);
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(key, at)) = self.order.front() {
            if self.order.len() <= self.max && at + self.window_ms > now {
                break;
            }
            self.order.pop_front();
            if self.times.get(&key) == Some(&at) {
                self.times.remove(&key);
            }
        }
    }
}

fn key(queue_id: &str, recipient: &str) -> Key {
    let mut h = Sha256::new();
    h.update(queue_id.as_bytes());
    h.update([0]);
    h.update(
        recipient
            .trim_matches(['<', '>'])
            .to_ascii_lowercase()
            .as_bytes(),
    );
    let mut k = [0; 16];
    k.copy_from_slice(&h.finalize()[..16]);
    k
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SentIndex {
    /// Loads `dir/delivered` (creating `dir`), keeping what is younger than `window`, at most
    /// `max` entries, and starts the writer thread.
    pub fn open(dir: &Path, window: Duration, max: usize) -> io::Result<SentIndex> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("delivered");
        let mut live = Live {
            times: HashMap::new(),
            order: VecDeque::new(),
            window_ms: window.as_millis() as u64,
            max,
        };
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(&path) {
            f.read_to_end(&mut bytes)?;
        }
        let now = now_ms();
        for rec in bytes.chunks_exact(RECORD) {
            let mut k = [0; 16];
            k.copy_from_slice(&rec[..16]);
            let at = u64::from_le_bytes(rec[16..].try_into().expect("8 bytes"));
            if at + live.window_ms > now {
                live.insert(k, at);
            }
        }
        live.expire(now);
        let records = bytes.len() / RECORD;
        let live = Arc::new(Mutex::new(live));
        let mut writer = Writer {
            path,
            file: None,
            records,
            live: live.clone(),
        };
        // A torn last record (crash mid-write) and anything expired go at once.
        writer.compact()?;
        let (tx, rx) = mpsc::sync_channel(16_384);
        std::thread::Builder::new()
            .name("feedback-index".into())
            .spawn(move || writer.run(rx))?;
        Ok(SentIndex {
            live,
            tx: Mutex::new(tx),
        })
    }

    /// Whether `queue_id` was delivered to `recipient` within the window.
    pub fn contains(&self, queue_id: &str, recipient: &str) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.times
            .get(&key(queue_id, recipient))
            .is_some_and(|at| at + live.window_ms > now_ms())
    }

    /// Records a delivery (the tap does this for every `delivered` event).
    pub fn record(&self, queue_id: &str, recipient: &str) {
        let (k, at) = (key(queue_id, recipient), now_ms());
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, at);
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.try_send((k, at)).is_err() {
            tracing::warn!(
                "feedback: delivery index writer is behind; a delivery is kept in memory only"
            );
        }
    }
}

impl EventTap for SentIndex {
    fn event(&self, event: &Event) {
        if event.name != "delivered" {
            return;
        }
        if let (Some(id), Some(rcpt)) = (&event.queue_id, &event.recipient) {
            self.record(id, rcpt);
        }
    }
}

struct Writer {
    path: PathBuf,
    file: Option<File>,
    /// Records in the file.
    records: usize,
    live: Arc<Mutex<Live>>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<(Key, u64)>) {
        let mut buf = Vec::new();
        while let Ok(first) = rx.recv() {
            buf.clear();
            let mut next = Some(first);
            while let Some((k, at)) = next {
                buf.extend_from_slice(&k);
                buf.extend_from_slice(&at.to_le_bytes());
                next = rx.try_recv().ok();
            }
            if let Err(e) = self.append(&buf) {
                tracing::error!(path = %self.path.display(), error = %e, "feedback: cannot write the delivery index");
                self.file = None;
            }
        }
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&self.path)?,
            );
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(buf)?;
        file.sync_data()?;
        self.records += buf.len() / RECORD;
        let live = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .order
            .len();
        if self.records > 2 * live.max(4096) {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file from what is live: a temporary file, fsynced, renamed over it.
    fn compact(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        {
            let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            for (k, at) in &live.order {
                out.extend_from_slice(k);
                out.extend_from_slice(&at.to_le_bytes());
            }
        }
        let tmp = self.path.with_extension("new");
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.records = out.len() / RECORD;
        self.file = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_remembered_across_a_restart_and_forgotten_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(86_400);
        {
            let index = SentIndex::open(dir.path(), day, 2).unwrap();
            index.event(&Event::new("delivered").queue_id("Q1").recipient("A@x.test"));
            index.event(&Event::new("bounced").queue_id("Q1").recipient("b@x.test"));
            assert!(index.contains("Q1", "a@X.TEST"));
            assert!(!index.contains("Q1", "b@x.test"), "only deliveries count");
            assert!(!index.contains("Q2", "a@x.test"));
        }
        // The writer thread appends in the background: wait for the record.
        let path = dir.path().join("delivered");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&path).map_or(0, |m| m.len()) < RECORD as u64 {
            assert!(std::time::Instant::now() < deadline, "record never written");
            std::thread::sleep(Duration::from_millis(10));
        }
        let index = SentIndex::open(dir.path(), day, 2).unwrap();
        assert!(index.contains("Q1", "a@x.test"));
        index.record("Q2", "c@x.test");
        index.record("Q3", "d@x.test");
        assert!(!index.contains("Q1", "a@x.test"), "the oldest go past max");
        assert!(index.contains("Q3", "d@x.test"));
    }
}
