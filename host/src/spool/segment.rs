//! Segment files: names, creation, the active segment the committer appends to, and the
//! directory layout they live in.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::record;
use super::SpoolError;

pub(crate) const LOG_DIR: &str = "log";
pub(crate) const CORRUPT_DIR: &str = "corrupt";
/// The previous layout's directory (one file pair per message), imported on open.
pub(crate) const LEGACY_QUEUE_DIR: &str = "queue";
/// Held exclusively by the one process that owns the spool, for as long as it runs.
pub(crate) const OWNER_LOCK: &str = "owner.lock";
const SEG_EXT: &str = "seg";

pub(crate) fn write_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Write {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn read_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Read {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn seg_path(log: &Path, seq: u64) -> PathBuf {
    log.join(format!("{seq:016x}.{SEG_EXT}"))
}

/// The sequence number a segment file name stands for.
pub(crate) fn seg_seq(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(&format!(".{SEG_EXT}"))?;
    (stem.len() == 16 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(stem, 16).ok())
        .flatten()
}

/// The segments under `log`, oldest first. Other names are warned about and left alone.
pub(crate) fn list(log: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(log).map_err(read_err(log))? {
        let name = entry.map_err(read_err(log))?.file_name();
        match name.to_str().and_then(seg_seq) {
            Some(seq) => seqs.push(seq),
            None => {
                tracing::warn!(file = ?name, dir = %log.display(), "spool: ignoring unknown file")
            }
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// fsync of a directory, so that creations, renames and unlinks in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Sets `mode` on `path`; a spool we may use but not chmod (another owner) is only warned
/// about.
pub(crate) fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        tracing::warn!(path = %path.display(), error = %e, "spool: cannot restrict permissions to {mode:o}");
    }
}

/// Creates the layout if needed (fsyncing every directory entry it creates); mail is
/// private, so directories are `0700`.
pub(crate) fn ensure_layout(dir: &Path) -> Result<(), SpoolError> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(write_err(dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).map_err(write_err(parent))?;
        }
    }
    let mut created = false;
    for sub in [LOG_DIR, CORRUPT_DIR] {
        let path = dir.join(sub);
        match fs::create_dir(&path) {
            Ok(()) => created = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(write_err(&path)(e)),
        }
    }
    if created {
        sync_dir(dir).map_err(write_err(dir))?;
    }
    for path in [dir.to_path_buf(), dir.join(LOG_DIR), dir.join(CORRUPT_DIR)] {
        restrict(&path, 0o700);
    }
    Ok(())
}

pub(crate) fn open_lock(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err(path))
}

/// The segment being appended to. Only the committer thread has one.
pub(crate) struct Active {
    pub seq: u64,
    pub nonce: u64,
    pub file: File,
    pub path: PathBuf,
    /// Bytes written so far (the next record's offset).
    pub len: u64,
}

impl Active {
    /// Creates segment `seq` with its header; the caller fsyncs the directory before any
    /// record in it is acknowledged.
    pub(crate) fn create(log: &Path, seq: u64) -> Result<Active, SpoolError> {
        let path = seg_path(log, seq);
        let nonce: u64 = rand::random();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(write_err(&path))?;
        let header = record::segment_header(nonce);
        if let Err(e) = file.write_all_at(&header, 0) {
            let _ = fs::remove_file(&path);
            return Err(write_err(&path)(e));
        }
        Ok(Active {
            seq,
            nonce,
            file,
            path,
            len: header.len() as u64,
        })
    }

    /// Reopens an existing segment (recovered, intact) to append after its last record.
    pub(crate) fn reopen(log: &Path, seq: u64, nonce: u64, len: u64) -> Result<Active, SpoolError> {
        let path = seg_path(log, seq);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(write_err(&path))?;
        Ok(Active {
            seq,
            nonce,
            file,
            path,
            len,
        })
    }

    /// Appends `parts` as one record at the end. On failure the partial record is cut off
    /// again; `Err((error, intact))` says whether that worked (if not, the segment must not
    /// be appended to any more).
    pub(crate) fn append(&mut self, parts: &[&[u8]]) -> Result<u64, (SpoolError, bool)> {
        let start = self.len;
        let mut at = start;
        for part in parts {
            if let Err(e) = self.file.write_all_at(part, at) {
                let intact = self.file.set_len(start).is_ok();
                return Err((write_err(&self.path)(e), intact));
            }
            at += part.len() as u64;
        }
        self.len = at;
        Ok(start)
    }
}

/// Bytes the file system holding `file` still has for us (`statvfs` `f_bavail`).
pub(crate) fn free_space(file: &File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs fills the struct it is given a pointer to for a valid descriptor.
    let rc = unsafe { libc::fstatvfs(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: rc == 0, so the struct was filled.
    let st = unsafe { st.assume_init() };
    // The field types differ between platforms (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let p = seg_path(Path::new("/s/log"), 0x2a);
        assert_eq!(p, Path::new("/s/log/000000000000002a.seg"));
        assert_eq!(seg_seq("000000000000002a.seg"), Some(0x2a));
        for bad in [
            "2a.seg",
            "000000000000002a.tmp",
            "00000000000000zz.seg",
            "README",
        ] {
            assert_eq!(seg_seq(bad), None, "{bad}");
        }
    }
}
