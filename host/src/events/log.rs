//! The writer: one thread owns the file, takes events off a bounded channel, appends them in
//! batches and rotates by size. Nobody else touches the disk, so a slow or full disk costs
//! events, never a session's or a delivery's time.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::{mpsc, oneshot};

use super::{Counters, Event, Events, Msg};
use crate::config::events::EventsConfig;

/// Events waiting for the writer, and their bytes; past either the newest are counted as
/// lost.
pub(crate) const CAPACITY: usize = 8192;
pub(crate) const MAX_QUEUED_BYTES: usize = 16 << 20;
/// How long a shutdown waits for the last events to be written.
pub const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// A batch is written once it reaches this size (or the channel is empty).
const BATCH_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("events.path: cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("events: cannot start the writer thread: {0}")]
    Thread(io::Error),
}

/// The running writer. [`EventLog::close`] writes what is queued and stops it.
pub struct EventLog {
    tx: mpsc::Sender<Msg>,
}

impl EventLog {
    /// Opens (or creates, mode 0640) the log file and starts the writer; `Events::off()` and
    /// no writer when `config.path` is empty. Fails if the file cannot be opened, so a wrong
    /// path stops the relay at start rather than losing every event.
    pub fn open(config: &EventsConfig) -> Result<(Events, Option<EventLog>), EventLogError> {
        if !config.is_enabled() {
            return Ok((Events::off(), None));
        }
        let file = LogFile::open(config).map_err(|source| EventLogError::Open {
            path: config.path.clone(),
            source,
        })?;
        let (events, rx) = Events::channel(CAPACITY, MAX_QUEUED_BYTES);
        let (tx, counters) = events.parts().expect("a channel was just made");
        std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || write_loop(rx, file, &counters))
            .map_err(EventLogError::Thread)?;
        Ok((events, Some(EventLog { tx })))
    }

    /// Writes every event queued so far and stops the writer; events emitted later are
    /// dropped silently (the relay is stopping). A disk that does not answer within
    /// [`CLOSE_TIMEOUT`] does not hold up the shutdown.
    pub async fn close(self) {
        let (done, wait) = oneshot::channel();
        let closed = async {
            if self.tx.send(Msg::Close(done)).await.is_ok() {
                let _ = wait.await;
            }
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, closed).await.is_err() {
            tracing::warn!("event log: the writer did not finish in time; last events may be lost");
        }
    }
}

/// The writer thread's loop: block for one message, take whatever else is queued (up to a
/// batch), write it with one `write` call, answer flushes once their events are written.
/// Ends on [`Msg::Close`], or once every sender is gone.
fn write_loop(mut rx: mpsc::Receiver<Msg>, mut file: LogFile, counters: &Counters) {
    let lost = &counters.lost;
    let mut buf = Vec::with_capacity(BATCH_BYTES);
    let mut reported_lost = 0;
    let mut closing = false;
    while let Some(first) = rx.blocking_recv() {
        let mut answers = Vec::new();
        let mut lines = 0u64;
        let mut weight = 0;
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Event(e, w) => {
                    e.write_line(&mut buf);
                    lines += 1;
                    weight += w;
                }
                Msg::Flush(done) => answers.push(done),
                Msg::Close(done) => {
                    answers.push(done);
                    rx.close();
                    closing = true;
                }
            }
            next = if buf.len() < BATCH_BYTES || closing {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let lost_now = lost.load(Relaxed);
        if lost_now > reported_lost {
            tracing::warn!(
                lost = lost_now - reported_lost,
                "event log: channel full, events lost"
            );
            Event::new("events-lost")
                .field("count", lost_now - reported_lost)
                .write_line(&mut buf);
            lines += 1;
            reported_lost = lost_now;
        }
        if !buf.is_empty() {
            if let Err(e) = file.append(&buf) {
                tracing::warn!(path = %file.path.display(), error = %e, lines, "event log: write failed, events lost");
                // Counted like a full channel, so the next batch says how many are missing.
                lost.fetch_add(lines, Relaxed);
                reported_lost += lines;
            }
            buf.clear();
        }
        counters.queued.fetch_sub(weight, Relaxed);
        for done in answers {
            let _ = done.send(());
        }
        if closing {
            break;
        }
    }
}

/// The open log file and its rotation.
pub(crate) struct LogFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    /// `None` after a failed write or rotation; reopened before the next batch.
    file: Option<File>,
    size: u64,
}

impl LogFile {
    pub(crate) fn open(config: &EventsConfig) -> io::Result<LogFile> {
        let mut log = LogFile {
            path: config.path.clone(),
            max_size: config.max_size.0,
            keep: config.keep,
            file: None,
            size: 0,
        };
        log.reopen()?;
        Ok(log)
    }

    fn reopen(&mut self) -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
        let file = options.open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    /// Appends whole lines; rotates first if they would take the file past `max_size` (a
    /// batch never spans two files, and a line never splits).
    pub(crate) fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size.saturating_add(lines.len() as u64) > self.max_size {
            if let Err(e) = self.rotate() {
                tracing::warn!(path = %self.path.display(), error = %e, "event log: rotation failed; appending to the current file");
            }
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let file = self.file.as_mut().expect("opened above");
        match file.write_all(lines) {
            Ok(()) => {
                self.size += lines.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut a partly written batch so the next line starts on a line of its own.
                let _ = file.set_len(self.size);
                self.file = None;
                Err(e)
            }
        }
    }

    /// `path.N-1` → `path.N` … `path` → `path.1`, dropping what falls past `keep`; then a
    /// fresh `path`.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            remove_if_present(&numbered(&self.path, self.keep))?;
            for n in (1..self.keep).rev() {
                rename_if_present(&numbered(&self.path, n), &numbered(&self.path, n + 1))?;
            }
            std::fs::rename(&self.path, numbered(&self.path, 1))?;
        }
        self.reopen()
    }
}

/// `events.jsonl` → `events.jsonl.3`.
pub(crate) fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs a writer on `rx` in a thread of its own; for tests that fill the channel first.
#[cfg(test)]
fn spawn_writer(rx: mpsc::Receiver<Msg>, file: LogFile, counters: std::sync::Arc<Counters>) {
    std::thread::spawn(move || write_loop(rx, file, &counters));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::events::ByteSize;

    fn config(dir: &Path, max_size: u64, keep: u32) -> EventsConfig {
        EventsConfig {
            path: dir.join("events.jsonl"),
            max_size: ByteSize(max_size),
            keep,
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }

    fn numbered_event(n: usize) -> Event {
        Event::new("queued")
            .queue_id(format!("q{n:05}"))
            .field("pad", "x".repeat(100))
    }

    #[tokio::test]
    async fn rotates_by_size_keeps_n_files_and_never_splits_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let (events, log) = EventLog::open(&config(dir.path(), 4096, 2)).unwrap();
        // Each event is ~190 bytes: 100 events are ~19 KB, about 5 files' worth.
        for n in 0..100 {
            events.emit(numbered_event(n));
            // One event per batch: rotation is checked between batches.
            events.flush().await;
        }
        log.unwrap().close().await;
        let path = dir.path().join("events.jsonl");
        let (current, one, two) = (
            lines(&path),
            lines(&numbered(&path, 1)),
            lines(&numbered(&path, 2)),
        );
        assert!(!numbered(&path, 3).exists(), "keep = 2");
        for p in [&path, &numbered(&path, 1), &numbered(&path, 2)] {
            let len = std::fs::metadata(p).unwrap().len();
            assert!(len <= 4096, "{} is {len} bytes", p.display());
        }
        // The newest events, in order, across .2 → .1 → current, with nothing missing.
        let ids: Vec<String> = two
            .iter()
            .chain(&one)
            .chain(&current)
            .map(|v| v["queue_id"].as_str().unwrap().to_string())
            .collect();
        let first: usize = ids[0][1..].parse().unwrap();
        let expected: Vec<String> = (first..100).map(|n| format!("q{n:05}")).collect();
        assert_eq!(ids, expected);
        assert!(first > 0, "older files were dropped");
        // A file was rotated only when the next line would not have fit.
        let line = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .len()
            + 1;
        for p in [numbered(&path, 2), numbered(&path, 1)] {
            let len = std::fs::metadata(&p).unwrap().len() as usize;
            assert!(
                len + line > 4096,
                "{} rotated early at {len} bytes",
                p.display()
            );
        }
    }

    #[tokio::test]
    async fn keep_zero_starts_over_and_an_existing_log_is_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"event\":\"from-before\"}\n").unwrap();
        let (events, log) = EventLog::open(&config(dir.path(), 4096, 0)).unwrap();
        events.emit(numbered_event(0));
        log.unwrap().close().await;
        let kept = lines(&path);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0]["event"], "from-before");

        let (events, log) = EventLog::open(&config(dir.path(), 4096, 0)).unwrap();
        for n in 0..40 {
            events.emit(numbered_event(n));
            events.flush().await;
        }
        log.unwrap().close().await;
        assert!(!numbered(&path, 1).exists());
        let kept = lines(&path);
        assert!(!kept.is_empty() && kept.len() < 40, "{}", kept.len());
        assert_eq!(kept.last().unwrap()["queue_id"], "q00039");
    }

    #[tokio::test]
    async fn a_full_channel_loses_events_and_says_how_many() {
        let dir = tempfile::tempdir().unwrap();
        let file = LogFile::open(&config(dir.path(), 1 << 20, 1)).unwrap();
        let (events, rx) = Events::channel(3, MAX_QUEUED_BYTES);
        // Nobody writes yet: three fit, the other five are lost and counted.
        for n in 0..8 {
            events.emit(numbered_event(n));
        }
        assert_eq!(events.lost(), 5);
        spawn_writer(rx, file, events.parts().unwrap().1);
        events.flush().await;
        let got = lines(&dir.path().join("events.jsonl"));
        let names: Vec<&str> = got.iter().map(|v| v["event"].as_str().unwrap()).collect();
        assert_eq!(names, ["queued", "queued", "queued", "events-lost"]);
        assert_eq!(got[3]["count"], 5);
        assert_eq!(got[2]["queue_id"], "q00002");
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes_and_frees_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = LogFile::open(&config(dir.path(), 1 << 20, 1)).unwrap();
        let heavy = || numbered_event(0).field("big", "y".repeat(10_000));
        let weight = heavy().weight();
        assert!(weight > 10_000 && weight < 11_000, "{weight}");
        let (events, rx) = Events::channel(1000, 3 * weight);
        for _ in 0..5 {
            events.emit(heavy());
        }
        assert_eq!(events.lost(), 2, "room for three by weight, not by count");
        let counters = events.parts().unwrap().1;
        assert_eq!(counters.queued.load(Relaxed), 3 * weight);
        spawn_writer(rx, file, counters.clone());
        events.flush().await;
        assert_eq!(counters.queued.load(Relaxed), 0);
        events.emit(heavy());
        events.flush().await;
        assert_eq!(events.lost(), 2);
        let got = lines(&dir.path().join("events.jsonl"));
        let names: Vec<&str> = got.iter().map(|v| v["event"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["queued", "queued", "queued", "events-lost", "queued"]
        );
    }

    #[test]
    fn an_unopenable_path_fails_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&dir.path().join("missing-dir"), 4096, 1);
        let err = match EventLog::open(&cfg) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("opened a file in a missing directory"),
        };
        assert!(err.starts_with("events.path: cannot open "), "{err}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_log_is_not_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (_events, log) = EventLog::open(&config(dir.path(), 4096, 1)).unwrap();
        log.unwrap().close().await;
        let mode = std::fs::metadata(dir.path().join("events.jsonl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o007, 0, "mode {mode:o}");
    }
}
