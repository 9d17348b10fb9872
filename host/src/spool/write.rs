//! Blocking file writes: temp files written in full and fdatasync'ed before anyone renames them.
//! Called from `spawn_blocking`, never on a runtime worker.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::commit::Stats;
use super::SpoolError;

/// Creates `path` (which must not exist), writes `bytes` and fdatasyncs it. On any error the
/// file is removed again, so a failed write (disk full, EIO) leaves nothing behind.
pub(crate) fn write_synced(path: &Path, bytes: &[u8], stats: &Stats) -> Result<(), SpoolError> {
    let result = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(bytes)?;
        file.sync_data()
    })();
    match result {
        Ok(()) => {
            stats.file_syncs.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(source) => {
            remove_quietly(path);
            Err(SpoolError::Write {
                path: path.to_path_buf(),
                source,
            })
        }
    }
}

/// Removes a file whose absence is the goal; logs (but otherwise ignores) failures other
/// than "already gone", because the caller is already reporting a more important error or
/// recovery will remove the leftover on the next start.
pub(crate) fn remove_quietly(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "spool: could not remove file")
        }
    }
}

/// Removes a file; `Ok(false)` if it was not there.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads a whole file, mapping "not there" to `Ok(None)` so callers can say `NotFound`.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, SpoolError> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SpoolError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| SpoolError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Some(bytes))
}
