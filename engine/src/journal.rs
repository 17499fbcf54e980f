//! A small durable journal: an append-only file of CRC'd JSON records,
//! replayed into memory on open and compacted into a snapshot now and
//! then. The committed-offsets log (`group/offsets`) and the transaction
//! log (`transaction/store.rs`) are both one; each owns its file header,
//! record magic and payload bound ([`Framing`]) and documents its bytes,
//! and this module holds everything they share, so a fix to recovery or
//! compaction lands in both. It is a leaf: it imports only `log::io`.
//!
//! Every file is an 8-byte file header (magic, then the format version),
//! then records, each:
//! ```text
//!   0   magic    4 bytes   Framing::record_magic: FF, two ASCII bytes, FE
//!   4   length   u32 BE    payload bytes, at most Framing::payload_bytes_max
//!   8   crc32c   u32 BE    of bytes 4..8 (the length) followed by the payload
//!  12   payload  `length`  one record as JSON (UTF-8)
//! ```
//! The record magic holds 0xFF and 0xFE, bytes that never occur in UTF-8,
//! so they never occur in a payload: after a damaged record, replay finds
//! the next record by scanning for the magic and checking its CRC
//! ([`Framing::resync`]). The CRC covers the length too, so a flipped
//! length is caught instead of being followed.
//!
//! Opening ([`Journal::open`]) tells apart:
//! - a *torn tail* (a crash mid-append: no whole, valid record after the
//!   failure point): cut off; that append was never acknowledged;
//! - a *damaged record* with valid records after it (a flipped bit, a bad
//!   sector): skipped, logged at error level with the file position; the
//!   later records are kept, a `.damaged` copy of the original is kept for
//!   a human and the file is rewritten clean;
//! - a damaged file header with records after it: the records are read
//!   in the current format (same repair);
//! - a record whose CRC holds but whose JSON does not decode (written by a
//!   newer Sluice?): refused, the broker does not start rather than guess;
//! - a file in an older format without a header ([`Legacy`]): replayed
//!   with that format's reader and rewritten in the current one.
//!
//! Appends ([`Journal::append`]) write and fsync under one lock, so
//! records land in file order. A failed write or fsync poisons the
//! journal: the page cache may have dropped what the disk refused, so
//! every later append fails until a restart replays what is really on
//! disk.
//!
//! Compaction ([`Journal::compact_if_due`]) runs off the append path, when
//! the file is past [`COMPACTION_BYTES_MIN`] and past twice what a
//! snapshot of the live state takes (an estimate its owner keeps as
//! records apply, so deciding walks nothing). The snapshot goes to a side
//! file without the append lock; then, under it, the records appended
//! since the decision are copied after the snapshot, the side file is
//! renamed over the journal and the directory fsynced. A failed directory
//! fsync poisons the journal: the rename may not survive a power cut, and
//! appends to the new file would vanish with it. Records must be
//! idempotent from any earlier state (set or remove a whole value), since
//! the snapshot may already hold some of the copied records.
//!
//! Locks, in this order: `compaction` (one compaction at a time), `file`
//! (held across write and fsync), then whatever the owner takes in the
//! closures it passes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use serde::Serialize;

use crate::log::io::{self as file_io, Io, IoFile, OpenMode};

/// Bytes before a record's payload: magic, length, CRC.
pub(crate) const RECORD_HEADER_BYTES: usize = 12;

/// A journal is not compacted below this size.
pub(crate) const COMPACTION_BYTES_MIN: u64 = 1 << 20;

/// One journal format: what tells its files and records apart from any
/// other's, and how big a record may be.
#[derive(Debug)]
pub(crate) struct Framing {
    /// First bytes of a file: a magic, then the format version.
    pub(crate) file_header: [u8; 8],
    /// First bytes of every record; must be FF, two ASCII bytes, FE.
    pub(crate) record_magic: [u8; 4],
    /// Largest payload written or read; a bigger record is refused before
    /// anything is written, and a bigger length on disk is damage.
    pub(crate) payload_bytes_max: usize,
    /// What the file is, for messages ("committed-offsets log").
    pub(crate) name: &'static str,
}

/// Reads the record at a position: its payload and end, or why not.
pub(crate) type RecordAt = fn(&[u8], usize) -> Result<(&[u8], usize), String>;
/// Finds the next whole, valid record after a position.
pub(crate) type Resync = fn(&[u8], usize) -> Option<usize>;

/// An older format without a file header, still read and rewritten in
/// the current one on open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Legacy {
    pub(crate) record_at: RecordAt,
    pub(crate) resync: Resync,
}

/// What replaying a file found.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// The end of the last whole record; anything after it is a torn tail.
    pub(crate) valid_bytes: usize,
    /// Why the bytes after `valid_bytes` are a torn tail, if there are any.
    pub(crate) torn: Option<String>,
    /// Damaged stretches skipped (file position, bytes), with valid
    /// records after each.
    pub(crate) skipped: Vec<(usize, usize)>,
}

impl Framing {
    /// Appends one record holding `payload` to `out`; refuses a payload
    /// over `payload_bytes_max`, leaving `out` as it was.
    pub(crate) fn encode(&self, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if payload.len() > self.payload_bytes_max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a {} record of {} bytes exceeds {}",
                    self.name,
                    payload.len(),
                    self.payload_bytes_max
                ),
            ));
        }
        let length = (payload.len() as u32).to_be_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&length), payload);
        out.extend_from_slice(&self.record_magic);
        out.extend_from_slice(&length);
        out.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(payload);
        Ok(())
    }

    /// Appends one record holding `record` as JSON to `out`; returns the
    /// record's bytes.
    pub(crate) fn encode_json<T: Serialize>(
        &self,
        record: &T,
        out: &mut Vec<u8>,
    ) -> io::Result<usize> {
        let payload = serde_json::to_vec(record)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        self.encode(&payload, out)?;
        Ok(RECORD_HEADER_BYTES + payload.len())
    }

    /// The record at `position`: its payload and end, or why not.
    pub(crate) fn record_at<'a>(
        &self,
        bytes: &'a [u8],
        position: usize,
    ) -> Result<(&'a [u8], usize), String> {
        let rest = &bytes[position..];
        if rest.len() < RECORD_HEADER_BYTES {
            return Err("incomplete record header".into());
        }
        if rest[0..4] != self.record_magic {
            return Err("no record magic".into());
        }
        let length = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        if length > self.payload_bytes_max || rest.len() < RECORD_HEADER_BYTES + length {
            return Err(format!("a record of {length} bytes runs past the end"));
        }
        let payload = &rest[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + length];
        let actual = crc32c::crc32c_append(crc32c::crc32c(&rest[4..8]), payload);
        if actual != crc {
            return Err(format!(
                "CRC mismatch (stored {crc:#010x}, computed {actual:#010x})"
            ));
        }
        Ok((payload, position + RECORD_HEADER_BYTES + length))
    }

    /// The next position after `from` where a whole, valid record starts.
    pub(crate) fn resync(&self, bytes: &[u8], from: usize) -> Option<usize> {
        let magic = self.record_magic;
        let mut position = from + 1;
        while position + RECORD_HEADER_BYTES <= bytes.len() {
            let found = bytes[position..]
                .windows(magic.len())
                .position(|window| window == magic)?;
            position += found;
            if self.record_at(bytes, position).is_ok() {
                return Some(position);
            }
            position += 1;
        }
        None
    }

    /// Whether `bytes` hold a record magic anywhere.
    pub(crate) fn has_record_magic(&self, bytes: &[u8]) -> bool {
        bytes
            .windows(self.record_magic.len())
            .any(|window| window == self.record_magic)
    }

    /// Replays a file (`bytes` starts with the file header), handing each
    /// valid record's payload and position to `apply`; an error from
    /// `apply` stops the replay and is returned.
    pub(crate) fn replay(
        &self,
        bytes: &[u8],
        apply: impl FnMut(&[u8], usize) -> Result<(), String>,
    ) -> Result<Replayed, String> {
        replay_with(
            bytes,
            self.file_header.len(),
            |bytes, position| self.record_at(bytes, position),
            |bytes, from| self.resync(bytes, from),
            apply,
        )
    }
}

/// Replays `bytes` from `start` with a format's reader (`record_at`,
/// `resync`): valid records go to `apply`, damaged ones with valid records
/// after them are skipped, and what follows the last valid record is a
/// torn tail.
pub(crate) fn replay_with(
    bytes: &[u8],
    start: usize,
    record_at: impl for<'a> Fn(&'a [u8], usize) -> Result<(&'a [u8], usize), String>,
    resync: impl Fn(&[u8], usize) -> Option<usize>,
    mut apply: impl FnMut(&[u8], usize) -> Result<(), String>,
) -> Result<Replayed, String> {
    let mut replayed = Replayed::default();
    let mut position = start.min(bytes.len());
    while position < bytes.len() {
        match record_at(bytes, position) {
            Ok((payload, end)) => {
                apply(payload, position)?;
                position = end;
            }
            Err(problem) => match resync(bytes, position) {
                Some(next) => {
                    replayed.skipped.push((position, next - position));
                    position = next;
                }
                None => {
                    replayed.torn = Some(problem);
                    break;
                }
            },
        }
    }
    replayed.valid_bytes = position;
    Ok(replayed)
}

/// What a journal's records build, as [`Journal::open`] replays them.
pub(crate) trait JournalState: Default {
    /// Applies one record's payload; an error says why the payload does
    /// not decode.
    fn apply_payload(&mut self, payload: &[u8]) -> Result<(), String>;
    /// A whole file (file header, then records) holding this state.
    fn snapshot(&self) -> io::Result<Vec<u8>>;
}

/// How an existing file starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Empty, or a cut-short file header: a new journal.
    Fresh,
    /// The current file header.
    Current,
    /// Not the file header, but records in the current format follow (or
    /// there is no older format it could be).
    HeaderDamaged,
    /// An older format without a file header.
    Legacy,
}

impl Layout {
    fn of(bytes: &[u8], framing: &Framing, legacy: bool) -> Self {
        let header = &framing.file_header;
        if bytes.len() < header.len() && header.starts_with(bytes) {
            return Self::Fresh;
        }
        if bytes.starts_with(header) {
            return Self::Current;
        }
        // A record magic never occurs in an older format's JSON: with one
        // present, a wrong header is damage to the header, not an old
        // file, and the records are read in the current format.
        let records = &bytes[header.len().min(bytes.len())..];
        if !legacy || framing.has_record_magic(records) {
            Self::HeaderDamaged
        } else {
            Self::Legacy
        }
    }
}

/// The open file.
struct JournalFile {
    file: Arc<dyn IoFile>,
    /// Bytes of whole records (and the file header).
    size: u64,
    /// Size right after the last compaction: the next waits until the file
    /// has doubled from here too, so an estimate that runs low cannot make
    /// compactions back to back.
    compacted_bytes: u64,
    /// Why appends are refused after a failed write or fsync.
    poisoned: Option<String>,
}

/// An open journal; internally synchronised (see the module header).
pub(crate) struct Journal {
    io: Arc<dyn Io>,
    path: PathBuf,
    framing: &'static Framing,
    /// Held for a whole compaction, so two never interleave.
    compaction: Mutex<()>,
    file: Mutex<JournalFile>,
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The compaction side file.
fn compacting_path(path: &Path) -> PathBuf {
    path.with_extension("log.compacting")
}

/// Where the original of a repaired file is kept.
fn damaged_path(path: &Path) -> PathBuf {
    path.with_extension("log.damaged")
}

impl Journal {
    /// Opens (creating it and its directory) the journal at `path` and
    /// replays it into an `S`: cuts a torn tail, skips damaged records with
    /// valid ones after them (logged, original kept), and rewrites a
    /// `legacy` file in the current format. Refuses (an error naming the
    /// file and the position) what it cannot read safely.
    pub(crate) fn open<S: JournalState>(
        io: Arc<dyn Io>,
        path: &Path,
        framing: &'static Framing,
        legacy: Option<Legacy>,
    ) -> io::Result<(Self, S)> {
        io.create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let side = compacting_path(path);
        if io.exists(&side) {
            io.remove_file(&side)?;
        }
        let file = io.open(path, OpenMode::ReadWrite)?;
        let mut bytes = vec![0; file.len()? as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let layout = Layout::of(&bytes, framing, legacy.is_some());
        if layout == Layout::HeaderDamaged {
            tracing::error!(journal = framing.name, file = %path.display(),
                "the file header is damaged; reading its records in the current format");
        }
        let mut state = S::default();
        let replayed =
            replay_layout(&bytes, layout, framing, legacy, &mut state).map_err(|problem| {
                invalid_data(format!(
                    "refusing to start on {}: {problem}",
                    path.display()
                ))
            })?;
        report(framing.name, path, &bytes, &replayed);
        let size = repair(io.as_ref(), path, &file, &bytes, layout, &replayed, &state)?;
        let file = io.open(path, OpenMode::ReadWrite)?;
        let journal = Self {
            io,
            path: path.to_path_buf(),
            framing,
            compaction: Mutex::new(()),
            file: Mutex::new(JournalFile {
                file,
                size,
                compacted_bytes: size,
                poisoned: None,
            }),
        };
        Ok((journal, state))
    }

    fn lock(&self) -> MutexGuard<'_, JournalFile> {
        self.file.lock().expect("journal file lock")
    }

    fn poisoned_error(&self, reason: &str) -> io::Error {
        io::Error::other(format!(
            "the {} is poisoned by an earlier failure ({reason}); restart the broker",
            self.framing.name
        ))
    }

    /// Appends `records` (whole encoded records) and fsyncs them, then runs
    /// `applied` before the next append can start. Refused, with nothing
    /// written, once poisoned.
    pub(crate) fn append(&self, records: &[u8], applied: impl FnOnce()) -> io::Result<()> {
        self.write(records, true, applied)
    }

    /// [`Journal::append`] without the fsync: for a record whose loss in a
    /// crash is harmless (replay ends at the state before it, from which
    /// the work it records is redone). The next synced append, or the
    /// next compaction, makes it durable with everything before it.
    pub(crate) fn append_unsynced(&self, records: &[u8], applied: impl FnOnce()) -> io::Result<()> {
        self.write(records, false, applied)
    }

    fn write(&self, records: &[u8], sync: bool, applied: impl FnOnce()) -> io::Result<()> {
        let mut log = self.lock();
        if let Some(reason) = &log.poisoned {
            return Err(self.poisoned_error(reason));
        }
        let written = log.file.write_all_at(records, log.size).and_then(|()| {
            if sync {
                log.file.sync()
            } else {
                Ok(())
            }
        });
        if let Err(error) = written {
            tracing::error!(journal = self.framing.name, file = %self.path.display(), %error,
                "writing failed; refusing further appends until a restart");
            log.poisoned = Some(error.to_string());
            return Err(error);
        }
        log.size += records.len() as u64;
        applied();
        Ok(())
    }

    /// Compacts the journal if due (see the module header); returns
    /// whether it did. `snapshot_bytes` estimates a snapshot's size (asked
    /// under the append lock, so it must be cheap); `snapshot` builds one
    /// (a whole file, see [`JournalState::snapshot`]) without that lock.
    /// A compaction already under way makes this return false.
    pub(crate) fn compact_if_due(
        &self,
        snapshot_bytes: impl FnOnce() -> u64,
        snapshot: impl FnOnce() -> io::Result<Vec<u8>>,
    ) -> io::Result<bool> {
        let _compacting = match self.compaction.try_lock() {
            Ok(guard) => guard,
            // A compaction that panicked left nothing behind that this one
            // relies on: the side file is truncated on open.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(false),
        };
        let Some(base) = self.compaction_due(snapshot_bytes) else {
            return Ok(false);
        };
        // The snapshot may already hold records appended after `base`;
        // copying them again below is harmless (see the module header).
        let snapshot = snapshot()?;
        let side = compacting_path(&self.path);
        let result = self.write_compacted(&side, &snapshot, base);
        if result.is_err() {
            let _ = self.io.remove_file(&side);
        }
        result.map(|()| true)
    }

    /// Whether the file has grown past twice a snapshot's size; and the
    /// file size now.
    fn compaction_due(&self, snapshot_bytes: impl FnOnce() -> u64) -> Option<u64> {
        let log = self.lock();
        let snapshot_bytes = snapshot_bytes().max(log.compacted_bytes);
        let due = log.poisoned.is_none()
            && log.size >= COMPACTION_BYTES_MIN
            && log.size > 2 * snapshot_bytes;
        due.then_some(log.size)
    }

    /// Writes `snapshot` to `side`, then (under the append lock) the
    /// records appended after `base`, and renames it over the journal.
    fn write_compacted(&self, side: &Path, snapshot: &[u8], base: u64) -> io::Result<()> {
        let file = self.io.open(side, OpenMode::Truncate)?;
        file.write_all_at(snapshot, 0)?;
        file.sync()?;
        let mut log = self.lock();
        if let Some(reason) = &log.poisoned {
            // An append failed meanwhile: leave the file to the restart.
            return Err(self.poisoned_error(reason));
        }
        let mut tail = vec![0; (log.size - base) as usize];
        log.file.read_exact_at(&mut tail, base)?;
        file.write_all_at(&tail, snapshot.len() as u64)?;
        file.sync()?;
        self.io.rename(side, &self.path)?;
        // From the rename on, the journal is the new file: later appends
        // must go to it, never to the unlinked old one.
        let before = log.size;
        log.file = file;
        log.size = (snapshot.len() + tail.len()) as u64;
        log.compacted_bytes = log.size;
        let parent = self.path.parent().unwrap_or(Path::new("."));
        if let Err(error) = self.io.sync_dir(parent) {
            // The rename may not survive a power cut, and records appended
            // to the new file would then be lost with it: refuse them.
            tracing::error!(journal = self.framing.name, file = %self.path.display(), %error,
                "syncing the directory after compacting failed; \
                 refusing further appends until a restart");
            log.poisoned = Some(format!("directory fsync after compaction failed: {error}"));
            return Err(error);
        }
        tracing::info!(
            journal = self.framing.name,
            before,
            after = log.size,
            "compacted"
        );
        Ok(())
    }
}

/// Replays `bytes`, laid out as `layout`, into `state`.
fn replay_layout<S: JournalState>(
    bytes: &[u8],
    layout: Layout,
    framing: &Framing,
    legacy: Option<Legacy>,
    state: &mut S,
) -> Result<Replayed, String> {
    let apply = |payload: &[u8], position: usize| {
        state.apply_payload(payload).map_err(|error| {
            format!(
                "the record at byte {position} has a valid CRC but does not decode ({error}); \
                 was it written by a newer Sluice?"
            )
        })
    };
    match (layout, legacy) {
        (Layout::Fresh, _) => Ok(Replayed::default()),
        (Layout::Legacy, Some(legacy)) => {
            replay_with(bytes, 0, legacy.record_at, legacy.resync, apply)
        }
        _ => framing.replay(bytes, apply),
    }
}

/// Makes the file on disk what replay read: rewrites it (keeping the
/// original beside it if that drops bytes) when it was new, legacy or
/// damaged, else cuts a torn tail. Returns the file's size.
fn repair<S: JournalState>(
    io: &dyn Io,
    path: &Path,
    file: &Arc<dyn IoFile>,
    bytes: &[u8],
    layout: Layout,
    replayed: &Replayed,
    state: &S,
) -> io::Result<u64> {
    let damaged = layout == Layout::HeaderDamaged || !replayed.skipped.is_empty();
    if damaged || (layout == Layout::Legacy && replayed.torn.is_some()) {
        // The rewrite below drops bytes: keep the original for a human.
        let kept = damaged_path(path);
        file_io::write_atomic(io, &kept, bytes)?;
        tracing::error!(file = %kept.display(), "kept a copy of the damaged file");
    }
    if layout != Layout::Current || damaged {
        let snapshot = state.snapshot()?;
        file_io::write_atomic(io, path, &snapshot)?;
        return Ok(snapshot.len() as u64);
    }
    if replayed.torn.is_some() {
        file.set_len(replayed.valid_bytes as u64)?;
        file.sync()?;
    }
    Ok(replayed.valid_bytes as u64)
}

/// Logs what replay cut or skipped.
fn report(name: &str, path: &Path, bytes: &[u8], replayed: &Replayed) {
    for (position, length) in &replayed.skipped {
        tracing::error!(journal = name, file = %path.display(), position, bytes = length,
            "skipped a damaged record; the valid records after it are kept (what the \
             damaged record changed is lost: its key keeps its earlier value)");
    }
    if let Some(problem) = &replayed.torn {
        tracing::warn!(journal = name, file = %path.display(), position = replayed.valid_bytes,
            dropped_bytes = bytes.len() - replayed.valid_bytes, %problem,
            "cutting the torn tail (an unacknowledged append)");
    }
}

#[cfg(test)]
mod tests;
