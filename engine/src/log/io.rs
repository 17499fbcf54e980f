//! The one narrow layer every byte of the log goes through.
//!
//! All file access of the log store is behind [`Io`] and [`IoFile`] so that
//! tests can swap the real file system for [`FaultIo`], which injects torn
//! writes, failed fsyncs and a full disk at chosen points. Nothing above this
//! module touches `std::fs` directly.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; created empty if missing, never truncated.
    ReadWrite,
    /// Read and write; created or truncated to zero length.
    Truncate,
}

/// An open file addressed by absolute position (pread/pwrite), shareable
/// between threads.
// `len` is a file's length as in `std::fs::Metadata::len`, fallible; an
// `is_empty` beside it would add nothing.
#[allow(clippy::len_without_is_empty)]
pub trait IoFile: Send + Sync {
    /// Fills `buf` from `position`; a short file is an `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()>;
    /// Writes all of `data` at `position`.
    fn write_all_at(&self, data: &[u8], position: u64) -> io::Result<()>;
    /// Writes `parts` back to back at `position`, as one logical write.
    /// The default concatenates them; the real file uses `writev`.
    fn write_parts_at(&self, parts: &[&[u8]], position: u64) -> io::Result<()> {
        self.write_all_at(&parts.concat(), position)
    }
    /// Makes everything written so far durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// File-system operations the log store needs.
pub trait Io: Send + Sync {
    /// Opens `path` with `mode`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn IoFile>>;
    /// Creates `path` and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Lists the entries of a directory (full paths, unsorted).
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file; a missing file is not an error.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory tree; a missing directory is not an error.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Fsyncs a directory so that renames and creations in it are durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// When `path` was last modified, in milliseconds since the epoch.
    /// The default asks the real file system, which is what every test
    /// layer wraps.
    fn modified_ms(&self, path: &Path) -> io::Result<i64> {
        let modified = std::fs::metadata(path)?.modified()?;
        let since_epoch = modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        Ok(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdIo;

struct StdFile(File);

impl IoFile for StdFile {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, position)
    }
    fn write_all_at(&self, data: &[u8], position: u64) -> io::Result<()> {
        self.0.write_all_at(data, position)
    }
    fn write_parts_at(&self, parts: &[&[u8]], position: u64) -> io::Result<()> {
        // writev at the file cursor: only the owner of the active segment
        // (under the partition lock) writes through it; readers use pread,
        // which ignores the cursor.
        use std::io::{IoSlice, Seek, SeekFrom, Write};
        let mut file = &self.0;
        file.seek(SeekFrom::Start(position))?;
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
        let mut remaining: &mut [IoSlice<'_>] = &mut slices;
        while !remaining.is_empty() {
            let written = match file.write_vectored(remaining) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(written) => written,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            IoSlice::advance_slices(&mut remaining, written);
        }
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        if !crate::metrics::enabled() {
            return self.0.sync_data();
        }
        let started = std::time::Instant::now();
        let synced = self.0.sync_data();
        crate::metrics::FSYNC.observe(started.elapsed());
        synced
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl Io for StdIo {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn IoFile>> {
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                options.write(true).create(true).truncate(false);
            }
            OpenMode::Truncate => {
                options.write(true).create(true).truncate(true);
            }
        }
        Ok(Arc::new(StdFile(options.open(path)?)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect()
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        ignore_not_found(std::fs::remove_file(path))
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        ignore_not_found(std::fs::remove_dir_all(path))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Reads a whole file through `io`.
pub(crate) fn read_file(io: &dyn Io, path: &Path) -> io::Result<Vec<u8>> {
    let file = io.open(path, OpenMode::Read)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Replaces `path` with `data` atomically: write a temporary file, fsync it,
/// rename it over `path`, fsync the directory. A crash leaves either the old
/// or the new contents, never a mix.
pub(crate) fn write_atomic(io: &dyn Io, path: &Path, data: &[u8]) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let file = io.open(&temporary, OpenMode::Truncate)?;
    file.write_all_at(data, 0)?;
    file.sync()?;
    drop(file);
    io.rename(&temporary, path)?;
    io.sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Removes `path` durably: a crash after this returns cannot bring the file
/// back. A missing file is not an error.
pub(crate) fn remove_durably(io: &dyn Io, path: &Path) -> io::Result<()> {
    io.remove_file(path)?;
    // The removal is an entry in the directory, durable only once the
    // directory is; a missing file still syncs, since an earlier attempt
    // may have removed it and failed before its sync.
    io.sync_dir(path.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{FaultIo, Faults};

    #[test]
    fn torn_write_writes_only_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let io = FaultIo::new(faults.clone());
        let file = io.open(&dir.path().join("f"), OpenMode::ReadWrite).unwrap();
        faults.tear_writes_after(3);
        assert!(file.write_all_at(b"hello", 0).is_err());
        assert_eq!(file.len().unwrap(), 3);
        assert!(file.write_all_at(b"x", 3).is_err());
        assert_eq!(file.len().unwrap(), 3);
    }

    #[test]
    fn remove_durably_fsyncs_the_parent_directory_after_the_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.json");
        write_atomic(&StdIo, &path, b"{}").unwrap();
        let faults = Faults::new();
        let io = FaultIo::new(faults.clone());
        remove_durably(&io, &path).unwrap();
        assert!(!path.exists());
        assert_eq!(faults.dir_syncs(), 1, "the directory was not fsynced");
        // Removing what is already gone still makes the directory durable:
        // the earlier attempt may have failed between the two steps.
        remove_durably(&io, &path).unwrap();
        assert_eq!(faults.dir_syncs(), 2);
    }

    #[test]
    fn write_atomic_replaces_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.json");
        write_atomic(&StdIo, &path, b"one").unwrap();
        write_atomic(&StdIo, &path, b"two").unwrap();
        assert_eq!(read_file(&StdIo, &path).unwrap(), b"two");
        assert!(!dir.path().join("meta.json.tmp").exists());
    }
}
