//! One webhook's durable outbox: `<spool>/webhooks/NAME/outbox`, an append-only file of one
//! line per event (`UNIX_MS JSON\n`), and `cursor`, the byte offset up to which the receiver
//! acknowledged. One thread owns both files: it appends what the tap queues and fdatasyncs
//! each batch, and moves the cursor when the sender says a batch was acknowledged. Once
//! everything is acknowledged the file is truncated to nothing (the cursor back to 0), so
//! the outbox only holds what is still owed.
//!
//! Crash safety: a torn last line (no `\n`) is cut off at open; the cursor is replaced by
//! rename, so it is the old or the new one; a cursor past the end of the file means the
//! crash fell between a truncation and the cursor's reset, and reads as 0. Events in the
//! tap's channel, not yet written, are lost with the process; written ones are not.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::{oneshot, watch};

pub(crate) enum Msg {
    /// Lines to append, each ending in `\n`.
    Append(Vec<u8>),
    /// The receiver has everything before this offset; answered with the new cursor.
    Ack(u64, oneshot::Sender<u64>),
    /// Answered once everything appended before it is fsynced.
    Flush(oneshot::Sender<()>),
}

/// The sender's side of an open outbox.
pub struct Outbox {
    pub(crate) tx: mpsc::SyncSender<Msg>,
    /// The file's length after the last fsynced append (or truncation).
    pub(crate) len: watch::Receiver<u64>,
    /// Where the receiver's acknowledgement stands at open.
    pub(crate) cursor: u64,
    path: PathBuf,
}

/// Events queued for the writer before the tap counts them as dropped.
const CHANNEL: usize = 65_536;

impl Outbox {
    /// Opens (creating) the outbox in `dir`, repairs a torn tail and starts its writer.
    pub fn open(dir: &Path) -> io::Result<Outbox> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("outbox");
        let cursor_path = dir.join("cursor");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let len = whole_lines(&mut file)?;
        if len < file.metadata()?.len() {
            tracing::warn!(path = %path.display(), "webhook outbox: cut off a torn last line");
            file.set_len(len)?;
            file.sync_data()?;
        }
        let cursor = std::fs::read_to_string(&cursor_path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let cursor = if cursor > len { 0 } else { cursor };
        let (len_tx, len_rx) = watch::channel(len);
        let (tx, rx) = mpsc::sync_channel(CHANNEL);
        let writer = Writer {
            file,
            len,
            cursor,
            cursor_path,
            len_tx,
        };
        std::thread::Builder::new()
            .name("webhook-outbox".into())
            .spawn(move || writer.run(rx))?;
        Ok(Outbox {
            tx,
            len: len_rx,
            cursor,
            path,
        })
    }

    /// Reads whole lines from `[from, to)`, at most `max_lines` and about `max_bytes` (one
    /// line at least). Returns the lines and the offset after the last.
    pub async fn read(
        &self,
        from: u64,
        to: u64,
        max_lines: usize,
        max_bytes: usize,
    ) -> io::Result<(Vec<Vec<u8>>, u64)> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let file = File::open(&path)?;
            let mut lines = Vec::new();
            let mut at = from;
            let mut bytes = 0;
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending: Vec<u8> = Vec::new();
            while at + (pending.len() as u64) < to && lines.len() < max_lines {
                let want = ((to - at) as usize - pending.len()).min(buf.len());
                let n = file.read_at(&mut buf[..want], at + pending.len() as u64)?;
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    at += line.len() as u64;
                    bytes += line.len();
                    lines.push(line);
                    if lines.len() >= max_lines || bytes >= max_bytes {
                        return Ok((lines, at));
                    }
                }
            }
            Ok((lines, at))
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Records that the receiver has everything before `offset`; returns the new cursor
    /// (0 when that emptied the outbox).
    pub async fn ack(&self, offset: u64) -> u64 {
        let (done, answer) = oneshot::channel();
        if self.tx.send(Msg::Ack(offset, done)).is_err() {
            return offset;
        }
        answer.await.unwrap_or(offset)
    }
}

/// Length of the file up to and including its last `\n`.
fn whole_lines(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

struct Writer {
    file: File,
    len: u64,
    cursor: u64,
    cursor_path: PathBuf,
    len_tx: watch::Sender<u64>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut buf = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut acks = Vec::new();
            let mut flushes = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next {
                match msg {
                    Msg::Append(line) => buf.extend_from_slice(&line),
                    Msg::Ack(offset, done) => acks.push((offset, done)),
                    Msg::Flush(done) => flushes.push(done),
                }
                next = if buf.len() < (1 << 20) {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if !buf.is_empty() {
                match self.append(&buf) {
                    Ok(()) => buf.clear(),
                    Err(e) => {
                        // Kept in `buf` and written with the next batch.
                        tracing::error!(error = %e, "webhook outbox: cannot append; retrying with the next batch");
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                }
            }
            for (offset, done) in acks {
                if let Err(e) = self.ack(offset) {
                    tracing::error!(error = %e, "webhook outbox: cannot record the cursor");
                }
                let _ = done.send(self.cursor);
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let written = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Cut off whatever part was written, so the file holds whole lines only.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        let _ = self.len_tx.send(self.len);
        Ok(())
    }

    fn ack(&mut self, offset: u64) -> io::Result<()> {
        self.cursor = offset.min(self.len);
        if self.cursor == self.len && self.len > 0 {
            // Everything was acknowledged: empty the file first, then the cursor; a crash
            // in between leaves a cursor past the end, which reads as 0.
            self.file.set_len(0)?;
            self.file.sync_data()?;
            self.len = 0;
            self.cursor = 0;
            let _ = self.len_tx.send(0);
        }
        let tmp = self.cursor_path.with_extension("new");
        let mut f = File::create(&tmp)?;
        f.write_all(self.cursor.to_string().as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, &self.cursor_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn wait_len(outbox: &Outbox, len: u64) {
        let mut rx = outbox.len.clone();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            rx.wait_for(|l| *l == len),
        )
        .await
        .expect("the writer appends")
        .unwrap();
    }

    #[tokio::test]
    async fn lines_are_kept_until_acknowledged_then_compacted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let outbox = Outbox::open(dir.path()).unwrap();
            for line in ["1 {\"a\":1}\n", "2 {\"b\":2}\n", "3 {\"c\":3}\n"] {
                outbox
                    .tx
                    .send(Msg::Append(line.as_bytes().to_vec()))
                    .unwrap();
            }
            wait_len(&outbox, 30).await;
            let (lines, end) = outbox.read(0, 30, 2, 1 << 20).await.unwrap();
            assert_eq!(
                lines,
                [b"1 {\"a\":1}\n".to_vec(), b"2 {\"b\":2}\n".to_vec()]
            );
            assert_eq!(end, 20);
            assert_eq!(outbox.ack(end).await, 20);
        }
        // A torn line from a crash mid-append is cut off; the cursor survives.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("outbox"))
            .unwrap();
        f.write_all(b"4 {\"d\"").unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!((outbox.cursor, *outbox.len.borrow()), (20, 30));
        let (lines, end) = outbox.read(20, 30, 10, 1 << 20).await.unwrap();
        assert_eq!(lines, [b"3 {\"c\":3}\n".to_vec()]);
        // All acknowledged: the file empties and the cursor goes back to 0.
        assert_eq!(outbox.ack(end).await, 0);
        assert_eq!(
            std::fs::metadata(dir.path().join("outbox")).unwrap().len(),
            0
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cursor")).unwrap(),
            "0"
        );
    }
}
