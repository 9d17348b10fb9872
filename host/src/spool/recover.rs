//! Start-up recovery: rebuild the index from `queue/`, discard what was never committed and
//! move aside what cannot be trusted. Runs on a blocking thread before the committer starts.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::commit::{open_lock, Entry};
use super::format::{self, Name};
use super::write::read_optional;
use super::{MessageId, RecoveryReport, SpoolError};

pub(crate) struct Recovered {
    pub index: BTreeMap<MessageId, Entry>,
    pub report: RecoveryReport,
    /// Held (exclusively locked) for the life of the spool.
    pub owner: File,
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the layout if needed, fsyncing every directory entry it creates.
pub(crate) fn ensure_layout(dir: &Path) -> Result<(), SpoolError> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(write_err(dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            format::sync_dir(parent).map_err(write_err(parent))?;
        }
    }
    let mut created = false;
    for sub in [format::QUEUE_DIR, format::CORRUPT_DIR] {
        let path = dir.join(sub);
        match fs::create_dir(&path) {
            Ok(()) => created = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(write_err(&path)(e)),
        }
    }
    if created {
        format::sync_dir(dir).map_err(write_err(dir))?;
    }
    // Mail is private: only the relay's user may list or read the spool.
    for path in [
        dir.to_path_buf(),
        dir.join(format::QUEUE_DIR),
        dir.join(format::CORRUPT_DIR),
    ] {
        restrict(&path, 0o700);
    }
    Ok(())
}

/// Sets `mode` on `path`; a spool we may use but not chmod (another owner) is only warned
/// about.
pub(crate) fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        tracing::warn!(path = %path.display(), error = %e, "spool: cannot restrict permissions to {mode:o}");
    }
}

pub(crate) fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    ensure_layout(dir)?;
    let owner_path = dir.join(format::OWNER_LOCK);
    let owner = open_lock(&owner_path)?;
    match owner.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(SpoolError::Write {
                path: owner_path,
                source: io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "spool is owned by another running relay",
                ),
            })
        }
        Err(TryLockError::Error(e)) => return Err(write_err(&owner_path)(e)),
    }
    // Keep `queue delete` from another process out while we look at the directory.
    let commit_path = dir.join(format::COMMIT_LOCK);
    let commit = open_lock(&commit_path)?;
    commit.lock().map_err(write_err(&commit_path))?;
    let result = scan(dir);
    let _ = commit.unlock();
    let (index, report) = result?;
    Ok(Recovered {
        index,
        report,
        owner,
    })
}

fn scan(dir: &Path) -> Result<(BTreeMap<MessageId, Entry>, RecoveryReport), SpoolError> {
    let queue = dir.join(format::QUEUE_DIR);
    let corrupt_dir = dir.join(format::CORRUPT_DIR);
    let read_err = |source| SpoolError::Read {
        path: queue.clone(),
        source,
    };
    let mut report = RecoveryReport::default();
    let mut temps = Vec::new();
    let mut msgs: HashMap<String, u64> = HashMap::new();
    let mut envs: Vec<String> = Vec::new();
    for entry in fs::read_dir(&queue).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(file = ?name, "spool: ignoring non-UTF-8 file name in queue");
            continue;
        };
        match format::classify(name) {
            Name::Temp => temps.push(entry.path()),
            Name::Message(id) => {
                let len = entry.metadata().map_err(read_err)?.len();
                msgs.insert(id.to_string(), len);
            }
            Name::Envelope(id) => envs.push(id.to_string()),
            Name::Other => {
                tracing::warn!(file = name, "spool: ignoring unknown file in queue");
            }
        }
    }

    let mut changed = false;
    for tmp in temps {
        fs::remove_file(&tmp).map_err(write_err(&tmp))?;
        tracing::info!(file = %tmp.display(), "spool: removed unfinished write");
        report.discarded_partial += 1;
        changed = true;
    }

    let mut index = BTreeMap::new();
    for id in envs {
        let env = format::env_path(&queue, &id);
        let msg = format::msg_path(&queue, &id);
        let msg_len = msgs.remove(&id);
        let verdict = match read_optional(&env)? {
            None => continue,
            Some(bytes) => check(&id, &bytes, msg_len),
        };
        match verdict {
            Ok(entry) => {
                index.insert(entry.record.envelope.id.clone(), entry);
                report.recovered += 1;
            }
            Err(why) => {
                // Never delete here: this message may have been acknowledged.
                tracing::warn!(id = %id, why = %why, dir = %corrupt_dir.display(),
                    "spool: corrupt queue entry moved aside");
                move_aside(&env, &corrupt_dir)?;
                if msg_len.is_some() {
                    move_aside(&msg, &corrupt_dir)?;
                }
                report.corrupt += 1;
                changed = true;
            }
        }
    }

    // A message file without an envelope was never committed (the envelope is renamed in
    // last) or was being removed (the envelope is unlinked first): never acknowledged or done.
    for id in msgs.into_keys() {
        let msg = format::msg_path(&queue, &id);
        fs::remove_file(&msg).map_err(write_err(&msg))?;
        tracing::info!(id = %id, "spool: removed message file without envelope");
        report.discarded_partial += 1;
        changed = true;
    }

    if changed {
        format::sync_dir(&queue).map_err(write_err(&queue))?;
        if report.corrupt > 0 {
            format::sync_dir(&corrupt_dir).map_err(write_err(&corrupt_dir))?;
        }
    }
    tracing::info!(
        dir = %dir.display(),
        recovered = report.recovered,
        discarded_partial = report.discarded_partial,
        corrupt = report.corrupt,
        "spool recovered"
    );
    Ok((index, report))
}

/// Validates one envelope file against its name and its message file's length.
fn check(id: &str, bytes: &[u8], msg_len: Option<u64>) -> Result<Entry, String> {
    let record = format::decode(bytes)?;
    if record.envelope.id.0 != id {
        return Err(format!("envelope names id {}", record.envelope.id));
    }
    match msg_len {
        None => Err("message file missing".into()),
        Some(len) if len != record.message_len => Err(format!(
            "message file has {len} bytes, envelope says {}",
            record.message_len
        )),
        Some(_) => Ok(Entry { record }),
    }
}

/// Moves `path` into `corrupt/`, never overwriting an earlier casualty of the same name.
fn move_aside(path: &Path, corrupt_dir: &Path) -> Result<(), SpoolError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut target: PathBuf = corrupt_dir.join(&*name);
    if target.exists() {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        target = corrupt_dir.join(format!("{name}.{stamp}"));
    }
    fs::rename(path, &target).map_err(write_err(path))
}
