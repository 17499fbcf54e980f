//! One segment: a `.log` file of whole record batches plus its sparse
//! `.index` and `.timeindex` (see `index.rs`).
//!
//! Files are named by the segment's base offset, zero-padded to 20 digits as
//! Kafka does (`00000000000000000000.log`). Batches in a segment have strictly
//! increasing offsets, all at or above the base offset; compaction may leave
//! gaps. Only the last segment of a partition (the active one) is written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, BatchHeader, HEADER_BYTES};
use super::index::{self, IndexBuilder, SegmentIndex};
use super::io::{self, Io, IoFile, OpenMode};
use super::LogError;

/// File name extension of the log file.
pub(crate) const LOG_SUFFIX: &str = "log";
/// File name extension of the offset index.
pub(crate) const INDEX_SUFFIX: &str = "index";
/// File name extension of the time index.
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Index entries an active segment holds in memory before writing them.
const INDEX_ENTRIES_PENDING_MAX: usize = 64;
/// Suffix of files a compaction is writing; deleted on recovery.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";

/// Path of a segment file: `<dir>/<base:020>.<suffix>`.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// The opened files of a closed segment, shared through the handle cache.
pub(crate) struct SegmentFiles {
    /// The log file, read only.
    pub(crate) log: Arc<dyn IoFile>,
    pub(crate) index: SegmentIndex,
}

/// What the partition knows about a segment without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    /// Offset the segment starts at (its file name).
    pub(crate) base_offset: i64,
    /// Bytes in the log file.
    pub(crate) size: u64,
    /// One past the last offset stored (the base offset when empty).
    pub(crate) next_offset: i64,
    /// Largest batch timestamp, or -1 when empty.
    pub(crate) max_timestamp: i64,
    /// What `segment.ms` counts from: the wall-clock time of the first
    /// append (after a restart, the first batch's timestamp, capped at now).
    /// Not the producer's timestamp alone, so that records with old
    /// timestamps do not roll a segment per append.
    pub(crate) roll_timestamp: i64,
    /// The broker's clock at the last append (after a restart, the log
    /// file's modification time). Retention ages a segment by this when its
    /// `max_timestamp` lies in the future, so that one record with a broken
    /// clock does not keep the segment, and all after it, forever.
    pub(crate) last_append_ms: i64,
}

/// The segment being appended to: open files and its index in memory.
pub(crate) struct ActiveSegment {
    /// Metadata, kept current by appends.
    pub(crate) meta: SegmentMeta,
    pub(crate) log: Arc<dyn IoFile>,
    index_file: Arc<dyn IoFile>,
    time_index_file: Arc<dyn IoFile>,
    /// Entries of `index` already written to the files.
    offsets_persisted: usize,
    times_persisted: usize,
    /// Index entries so far.
    pub(crate) index: SegmentIndex,
    builder: IndexBuilder,
}

/// Reads a batch header at `position` of a file `size` bytes long. `None`
/// when no whole header fits (a torn tail).
pub(crate) fn read_header(
    file: &dyn IoFile,
    position: u64,
    size: u64,
) -> Result<Option<BatchHeader>, std::io::Error> {
    if position + HEADER_BYTES as u64 > size {
        return Ok(None);
    }
    let mut buf = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut buf, position)?;
    Ok(BatchHeader::parse(&buf).ok())
}

/// How a scan ended.
struct Scan {
    /// Metadata of what was scanned (size = end of last good batch).
    meta: SegmentMeta,
    /// Index of what was scanned.
    index: SegmentIndex,
    builder: IndexBuilder,
    /// Why the scan stopped before the end of the file, with the position.
    stopped: Option<(u64, String)>,
}

struct ScanStart {
    position: u64,
    index: SegmentIndex,
    builder: IndexBuilder,
    max_timestamp: i64,
    previous_next_offset: i64,
}

/// Walks the batches of a log file from `start`, checking structure and, with
/// `verify_crc`, every CRC, and hands each good batch's header to `visit`.
/// Stops at the first bad batch.
fn scan(
    file: &dyn IoFile,
    base_offset: i64,
    size: u64,
    start: ScanStart,
    verify_crc: bool,
    visit: &mut dyn FnMut(&BatchHeader, Option<bool>),
) -> Result<Scan, std::io::Error> {
    let ScanStart {
        mut position,
        mut index,
        mut builder,
        mut max_timestamp,
        previous_next_offset,
    } = start;
    let mut next_offset = previous_next_offset;
    let mut roll_timestamp = None;
    let mut stopped = None;
    while position < size {
        let Some(header) = read_header(file, position, size)? else {
            stopped = Some((position, "incomplete or invalid batch header".to_string()));
            break;
        };
        let problem = batch_problem(
            file,
            &header,
            position,
            size,
            base_offset,
            next_offset,
            verify_crc,
        )?;
        if let Some(reason) = problem {
            stopped = Some((position, reason));
            break;
        }
        visit(&header, control_marker(file, &header, position)?);
        let end = position + header.total_bytes() as u64;
        index_batch(&mut builder, &mut index, &header, position, base_offset);
        roll_timestamp.get_or_insert(header.max_timestamp);
        max_timestamp = max_timestamp.max(header.max_timestamp);
        next_offset = header.next_offset();
        position = end;
    }
    Ok(Scan {
        meta: SegmentMeta {
            base_offset,
            size: position,
            next_offset: next_offset.max(base_offset),
            max_timestamp,
            roll_timestamp: roll_timestamp.unwrap_or(max_timestamp),
            // Set by the caller, which knows the file.
            last_append_ms: -1,
        },
        index,
        builder,
        stopped,
    })
}

/// Why the batch with `header` at `position` (of a file `size` bytes long)
/// ends the scan of the segment at `base_offset`, if it does: it runs past
/// the end, starts below `next_offset` or beyond the segment's 32-bit
/// relative range, or (with `verify_crc`) fails its checks.
fn batch_problem(
    file: &dyn IoFile,
    header: &BatchHeader,
    position: u64,
    size: u64,
    base_offset: i64,
    next_offset: i64,
    verify_crc: bool,
) -> Result<Option<String>, std::io::Error> {
    let end = position + header.total_bytes() as u64;
    if end > size {
        return Ok(Some(format!(
            "batch of {} bytes runs past the end",
            header.total_bytes()
        )));
    }
    if header.base_offset < next_offset || header.base_offset - base_offset > u32::MAX as i64 {
        return Ok(Some(format!(
            "offset {} out of order (expected at least {next_offset})",
            header.base_offset
        )));
    }
    if verify_crc {
        let mut bytes = vec![0u8; header.total_bytes()];
        file.read_exact_at(&mut bytes, position)?;
        if let Err(error) = batch::verify(&bytes) {
            return Ok(Some(error.to_string()));
        }
    }
    Ok(None)
}

/// Adds the batch with `header` at `position` to a segment's index.
fn index_batch(
    builder: &mut IndexBuilder,
    index: &mut SegmentIndex,
    header: &BatchHeader,
    position: u64,
    base_offset: i64,
) {
    let relative = (header.base_offset - base_offset) as u32;
    let (offset_entry, time_entry) = builder.on_batch(
        relative,
        position as u32,
        header.total_bytes() as u64,
        header.max_timestamp,
    );
    index.offsets.extend(offset_entry);
    index.times.extend(time_entry);
}

fn load_index(io: &dyn Io, dir: &Path, base_offset: i64) -> Option<SegmentIndex> {
    let offsets = io::read_file(io, &segment_path(dir, base_offset, INDEX_SUFFIX)).ok()?;
    let times = io::read_file(io, &segment_path(dir, base_offset, TIME_INDEX_SUFFIX)).ok()?;
    SegmentIndex::decode(&offsets, &times)
}

fn write_index(
    io: &dyn Io,
    dir: &Path,
    base_offset: i64,
    index: &SegmentIndex,
) -> Result<(), LogError> {
    for (suffix, bytes) in [
        (INDEX_SUFFIX, index.encode_offsets()),
        (TIME_INDEX_SUFFIX, index.encode_times()),
    ] {
        let path = segment_path(dir, base_offset, suffix);
        io::write_atomic(io, &path, &bytes).map_err(|source| LogError::io(&path, source))?;
    }
    Ok(())
}

/// Opens a closed segment: walks every batch header (structure, offsets,
/// lengths) and rebuilds the indexes when they are missing or differ from
/// the log. Any damage refuses the segment: closed segments were complete
/// when they were closed, so damage there is not a torn write to repair.
/// `visit` sees every batch header, so that nothing else needs to read them
/// again (idempotent producer state is rebuilt from them).
pub(crate) fn open_closed(
    io: &dyn Io,
    dir: &Path,
    base_offset: i64,
    index_interval_bytes: u64,
    visit: &mut dyn FnMut(&BatchHeader, Option<bool>),
) -> Result<SegmentMeta, LogError> {
    let path = segment_path(dir, base_offset, LOG_SUFFIX);
    let file = io
        .open(&path, OpenMode::Read)
        .map_err(|source| LogError::io(&path, source))?;
    let size = file.len().map_err(|source| LogError::io(&path, source))?;
    let start = ScanStart {
        position: 0,
        index: SegmentIndex::default(),
        builder: IndexBuilder::new(index_interval_bytes),
        max_timestamp: -1,
        previous_next_offset: base_offset,
    };
    let scan = scan(file.as_ref(), base_offset, size, start, false, visit)
        .map_err(|source| LogError::io(&path, source))?;
    if let Some((position, reason)) = scan.stopped {
        return Err(LogError::Corrupt {
            path,
            position,
            reason,
        });
    }
    if load_index(io, dir, base_offset).as_ref() != Some(&scan.index) {
        tracing::warn!(file = %path.display(), "index missing or inconsistent with the log; rebuilt");
        write_index(io, dir, base_offset, &scan.index)?;
    }
    let mut meta = scan.meta;
    meta.last_append_ms = io
        .modified_ms(&path)
        .map_err(|source| LogError::io(&path, source))?;
    Ok(meta)
}

/// Loads a closed segment's files for reading (through the handle cache).
pub(crate) fn load_files(
    io: &dyn Io,
    dir: &Path,
    base_offset: i64,
) -> Result<SegmentFiles, LogError> {
    let path = segment_path(dir, base_offset, LOG_SUFFIX);
    let log = io
        .open(&path, OpenMode::Read)
        .map_err(|source| LogError::io(&path, source))?;
    // open_closed verified or rebuilt the index, so a failure here means it
    // changed under us; an empty index is still correct, only slower.
    let index = load_index(io, dir, base_offset).unwrap_or_default();
    Ok(SegmentFiles { log, index })
}

impl ActiveSegment {
    /// Creates a new empty active segment.
    pub(crate) fn create(
        io: &dyn Io,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        let meta = SegmentMeta {
            base_offset,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            roll_timestamp: now_ms,
            last_append_ms: now_ms,
        };
        let active = Self::open_files(
            io,
            dir,
            meta,
            SegmentIndex::default(),
            IndexBuilder::new(index_interval_bytes),
            OpenMode::Truncate,
        )?;
        io.sync_dir(dir)
            .map_err(|source| LogError::io(dir, source))?;
        Ok(active)
    }

    fn open_files(
        io: &dyn Io,
        dir: &Path,
        meta: SegmentMeta,
        index: SegmentIndex,
        builder: IndexBuilder,
        mode: OpenMode,
    ) -> Result<Self, LogError> {
        let open = |suffix: &str, mode: OpenMode| {
            let path = segment_path(dir, meta.base_offset, suffix);
            io.open(&path, mode)
                .map_err(|source| LogError::io(&path, source))
        };
        let log = open(
            LOG_SUFFIX,
            if mode == OpenMode::Truncate {
                OpenMode::Truncate
            } else {
                OpenMode::ReadWrite
            },
        )?;
        let index_file = open(INDEX_SUFFIX, OpenMode::Truncate)?;
        let time_index_file = open(TIME_INDEX_SUFFIX, OpenMode::Truncate)?;
        let write = |file: &Arc<dyn IoFile>, suffix: &str, bytes: Vec<u8>| {
            file.write_all_at(&bytes, 0).map_err(|source| {
                LogError::io(&segment_path(dir, meta.base_offset, suffix), source)
            })
        };
        write(&index_file, INDEX_SUFFIX, index.encode_offsets())?;
        write(&time_index_file, TIME_INDEX_SUFFIX, index.encode_times())?;
        Ok(Self {
            meta,
            log,
            offsets_persisted: index.offsets.len(),
            times_persisted: index.times.len(),
            index_file,
            time_index_file,
            index,
            builder,
        })
    }

    /// Recovers the active segment after any shutdown: the batches after the
    /// last usable index entry are read and CRC-checked, and a torn or
    /// corrupt tail is truncated to the last whole batch.
    pub(crate) fn recover(
        io: &dyn Io,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        let path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = io
            .open(&path, OpenMode::ReadWrite)
            .map_err(|source| LogError::io(&path, source))?;
        let size = file.len().map_err(|source| LogError::io(&path, source))?;
        let start = resume_point(
            file.as_ref(),
            io,
            dir,
            base_offset,
            size,
            index_interval_bytes,
        )
        .map_err(|source| LogError::io(&path, source))?;
        let scan = scan(
            file.as_ref(),
            base_offset,
            size,
            start,
            true,
            &mut |_, _| {},
        )
        .map_err(|source| LogError::io(&path, source))?;
        let mut meta = scan.meta;
        let mut index = scan.index;
        if meta.size != size {
            let reason = scan.stopped.map(|(_, reason)| reason).unwrap_or_default();
            tracing::warn!(file = %path.display(), position = meta.size, dropped_bytes = size - meta.size, %reason,
                "truncating torn or corrupt tail of the active segment to the last whole batch");
            file.set_len(meta.size)
                .map_err(|source| LogError::io(&path, source))?;
            file.sync().map_err(|source| LogError::io(&path, source))?;
            // Entries of the scan's first batch survive only if it was good.
            let kept_offsets = (meta.next_offset - base_offset) as u32;
            index
                .offsets
                .retain(|entry| (entry.position as u64) < meta.size);
            index
                .times
                .retain(|entry| entry.relative_offset < kept_offsets);
        }
        // segment.ms counts from the segment's first batch, which a scan
        // that resumed mid-file has not seen.
        meta.roll_timestamp = match read_header(file.as_ref(), 0, meta.size) {
            Ok(Some(first)) => first.max_timestamp.min(now_ms),
            _ => now_ms,
        };
        meta.last_append_ms = io
            .modified_ms(&path)
            .map_err(|source| LogError::io(&path, source))?
            .min(now_ms);
        drop(file);
        Self::open_files(io, dir, meta, index, scan.builder, OpenMode::ReadWrite)
    }

    /// Appends already-verified batches, given as byte ranges written back
    /// to back; `headers` describe the batches in order.
    /// On error nothing in memory has changed (the caller undoes a partial
    /// log write), so the log end never counts a batch that is not there.
    pub(crate) fn append(
        &mut self,
        parts: &[&[u8]],
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<(), std::io::Error> {
        // Pending index entries are written before the batch rather than
        // after it is counted, so that their failure fails the append cleanly.
        if self.index.offsets.len() - self.offsets_persisted >= INDEX_ENTRIES_PENDING_MAX {
            self.persist_index()?;
        }
        let start = self.meta.size;
        self.log.write_parts_at(parts, start)?;
        let mut position = start;
        for header in headers {
            let relative = (header.base_offset - self.meta.base_offset) as u32;
            let (offset_entry, time_entry) = self.builder.on_batch(
                relative,
                position as u32,
                header.total_bytes() as u64,
                header.max_timestamp,
            );
            self.index.offsets.extend(offset_entry);
            self.index.times.extend(time_entry);
            if self.meta.size == 0 && position == start {
                self.meta.roll_timestamp = now_ms;
            }
            self.meta.max_timestamp = self.meta.max_timestamp.max(header.max_timestamp);
            position += header.total_bytes() as u64;
        }
        self.meta.last_append_ms = now_ms;
        self.meta.size = position;
        self.meta.next_offset = headers
            .last()
            .map_or(self.meta.next_offset, BatchHeader::next_offset);
        Ok(())
    }

    /// Writes index entries not yet in the index files. Entries are written
    /// in groups rather than one syscall per batch: the indexes are derived
    /// data, and recovery re-reads the log from the last persisted entry.
    pub(crate) fn persist_index(&mut self) -> Result<(), std::io::Error> {
        let offsets = &self.index.offsets[self.offsets_persisted..];
        if !offsets.is_empty() {
            let bytes: Vec<u8> = offsets
                .iter()
                .flat_map(index::encode_offset_entry)
                .collect();
            let at = (self.offsets_persisted * index::OFFSET_ENTRY_BYTES) as u64;
            self.index_file.write_all_at(&bytes, at)?;
            self.offsets_persisted = self.index.offsets.len();
        }
        let times = &self.index.times[self.times_persisted..];
        if !times.is_empty() {
            let bytes: Vec<u8> = times.iter().flat_map(index::encode_time_entry).collect();
            let at = (self.times_persisted * index::TIME_ENTRY_BYTES) as u64;
            self.time_index_file.write_all_at(&bytes, at)?;
            self.times_persisted = self.index.times.len();
        }
        Ok(())
    }

    /// Writes pending index entries and fsyncs log and indexes; done when
    /// the segment is closed and at shutdown.
    pub(crate) fn sync_all(&mut self) -> Result<(), std::io::Error> {
        self.persist_index()?;
        self.log.sync()?;
        self.index_file.sync()?;
        self.time_index_file.sync()
    }
}

/// Where recovery of an active segment starts: the last offset index entry
/// that points at a real batch header with the expected offset, else 0.
fn resume_point(
    file: &dyn IoFile,
    io: &dyn Io,
    dir: &Path,
    base_offset: i64,
    size: u64,
    index_interval_bytes: u64,
) -> Result<ScanStart, std::io::Error> {
    let from_zero = ScanStart {
        position: 0,
        index: SegmentIndex::default(),
        builder: IndexBuilder::new(index_interval_bytes),
        max_timestamp: -1,
        previous_next_offset: base_offset,
    };
    let Some(mut index) = load_index(io, dir, base_offset) else {
        return Ok(from_zero);
    };
    // At every offset entry the builder's running max timestamp equals the
    // last time entry at or before it, so resuming at the last entry that
    // points at a real batch restores the builder exactly.
    while let Some(last) = index.offsets.last().copied() {
        let header = read_header(file, last.position as u64, size)?;
        if header
            .is_some_and(|header| header.base_offset == base_offset + last.relative_offset as i64)
        {
            index
                .times
                .retain(|entry| entry.relative_offset <= last.relative_offset);
            let max_timestamp = index.times.last().map_or(-1, |entry| entry.timestamp);
            return Ok(ScanStart {
                position: last.position as u64,
                builder: IndexBuilder::resume(index_interval_bytes, max_timestamp, last.position),
                index,
                max_timestamp,
                previous_next_offset: base_offset + last.relative_offset as i64,
            });
        }
        index.offsets.pop();
    }
    Ok(from_zero)
}

/// Finds the first batch whose last offset is at or after `offset`, scanning
/// headers from `position` (an index entry at or before it). `None` if the segment holds no
/// such batch below `size`.
pub(crate) fn seek(
    file: &dyn IoFile,
    mut position: u64,
    size: u64,
    offset: i64,
) -> Result<Option<(u64, BatchHeader)>, std::io::Error> {
    while let Some(header) = read_header(file, position, size)? {
        if header.last_offset() >= offset {
            return Ok(Some((position, header)));
        }
        position += header.total_bytes() as u64;
    }
    Ok(None)
}

/// Like [`seek`] but by time: the first batch whose max timestamp is at or
/// after `timestamp`.
pub(crate) fn seek_time(
    file: &dyn IoFile,
    mut position: u64,
    size: u64,
    timestamp: i64,
) -> Result<Option<(u64, BatchHeader)>, std::io::Error> {
    while let Some(header) = read_header(file, position, size)? {
        if header.max_timestamp >= timestamp {
            return Ok(Some((position, header)));
        }
        position += header.total_bytes() as u64;
    }
    Ok(None)
}

/// The kind of the transaction marker in the control batch with `header`
/// at `position` (commit `Some(true)`, abort `Some(false)`); `None` for a
/// data batch. Reads the (small) batch only when it is a control batch.
fn control_marker(
    file: &dyn IoFile,
    header: &BatchHeader,
    position: u64,
) -> Result<Option<bool>, std::io::Error> {
    if !header.is_control() {
        return Ok(None);
    }
    let mut bytes = vec![0u8; header.total_bytes()];
    file.read_exact_at(&mut bytes, position)?;
    Ok(super::transactions::marker_kind(&bytes::Bytes::from(bytes)))
}

/// Calls `visit` with every batch header of a log file, in order, and
/// the marker kind of control batches.
pub(crate) fn walk_headers(
    file: &dyn IoFile,
    size: u64,
    visit: &mut impl FnMut(&BatchHeader, Option<bool>),
) -> Result<(), std::io::Error> {
    let mut position = 0;
    while let Some(header) = read_header(file, position, size)? {
        visit(&header, control_marker(file, &header, position)?);
        position += header.total_bytes() as u64;
    }
    Ok(())
}
