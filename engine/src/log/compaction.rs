//! Log compaction for `cleanup.policy=compact`: keep the latest record per
//! key.
//!
//! Each pass reads without blocking appends. It maps keys to their latest
//! offset from where the last pass stopped (at first the log start) through
//! the closed segments and the active one, up to the high watermark, until
//! the map is full (`offset_map.rs`: a fixed table of key hashes within
//! `log.compaction_memory_bytes_max`, as Kafka's cleaner does). The pass
//! covers the offsets below where mapping stopped (`end`): it rewrites each
//! closed segment holding such offsets, dropping a record below `end` when
//! the map holds a later offset for its key. Records without a key, control
//! batches, and records at or past `end` are kept; the next pass maps from
//! `end` on and rewrites from the log start again, so a key superseded in a
//! later pass still loses its older records. Transactions, as Kafka's
//! cleaner: a pass maps and cleans only below the last stable offset (an
//! open transaction may still abort, and its records must not supersede
//! anything until it commits); the batches of aborted transactions are
//! removed and never map a key; markers are kept. Tombstones (null values) are
//! dropped once the segment holding them is older than
//! `delete.retention.ms`. Offsets never change: a rewritten batch keeps its
//! last offset, gaps are left where records went, as in Kafka.
//!
//! Memory is the map plus one batch at a time: segments are streamed, a
//! batch read, filtered and written to the rewritten file before the next
//! is read; the rewritten file is only started at the first batch that
//! changes (copying the unchanged bytes before it), so a segment with
//! nothing to remove is never written.
//!
//! A batch header that does not parse before the end of a segment is
//! damage, not the end of the data: the pass fails with
//! [`LogError::Corrupt`] naming the file and byte, and leaves the segment as
//! it was (the store logs it and compacts the other partitions).
//!
//! Swapping is atomic per file: the new segment is written to
//! `<base>.log.cleaned`, fsynced, then renamed over `<base>.log` (then the
//! indexes the same way). A crash before the rename leaves the old segment
//! and a `.cleaned` leftover that recovery deletes; a crash between the log
//! and index renames leaves a stale index that recovery rebuilds.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader};
use super::index::{IndexBuilder, SegmentIndex};
use super::io::{Io, IoFile, OpenMode};
use super::offset_map::OffsetMap;
use super::partition::{Partition, ReadPlan};
use super::records::{self, Retained};
use super::segment::{
    self, SegmentMeta, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use super::transactions::{is_aborted, AbortedTransaction};
use super::LogError;

/// What a compaction run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CompactionStats {
    pub(crate) segments_rewritten: usize,
    /// Records dropped (superseded or expired tombstones).
    pub(crate) records_removed: u64,
    /// Log bytes before and after, over the rewritten segments.
    pub(crate) bytes_before: u64,
    /// See `bytes_before`.
    pub(crate) bytes_after: u64,
    /// Passes the key map needed (more than one when the partition has
    /// more distinct keys than the memory budget maps).
    pub(crate) passes: usize,
    /// Bytes of the largest key map a pass allocated.
    pub(crate) key_map_bytes: usize,
}

/// Bytes copied at a time when a rewritten segment starts with an
/// unchanged run of the original.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// What filtering one batch leaves.
enum Filtered {
    /// Every record stays: the batch as stored.
    Unchanged,
    /// Some records went: the rebuilt batch and its header.
    Rewritten(BytesMut, BatchHeader),
    /// Every record went.
    Removed,
}

impl Partition {
    /// Compacts the closed segments if the topic's policy asks for it.
    pub(crate) fn compact(&self) -> Result<CompactionStats, LogError> {
        let config = self.config();
        let mut stats = CompactionStats::default();
        if !config.cleanup_policy.compacts() {
            return Ok(stats);
        }
        let _maintenance = self.maintenance.lock().expect("maintenance lock");
        self.check_live()?;
        let now_ms = self.context().clock.now_ms();
        // Everything below the last stable offset is decided; nothing at
        // or after it is mapped or cleaned.
        let (_, high_watermark) = self.watermarks();
        let aborted = self
            .lock()
            .transactions
            .aborted_between(i64::MIN, high_watermark);
        let metas = self.segment_metas();
        let Some(active) = metas.last() else {
            return Ok(stats);
        };
        // Segments closed when the run started; later rolls wait a run.
        let closed_end = active.base_offset;
        let memory_bytes_max = self.context().compaction_memory_bytes_max;
        let mut from = metas[0].base_offset;
        while from < high_watermark && metas[0].base_offset < closed_end {
            let mut map = OffsetMap::new(memory_bytes_max, (high_watermark - from) as u64);
            let end = self.build_map(from, high_watermark, &aborted, &mut map)?;
            stats.passes += 1;
            stats.key_map_bytes = stats.key_map_bytes.max(map.memory_bytes());
            for meta in self.segment_metas() {
                if meta.base_offset >= closed_end.min(end) {
                    break;
                }
                let drop_tombstones = now_ms - meta.max_timestamp > config.delete_retention_ms;
                let removes = Removes {
                    map: &map,
                    end,
                    aborted: &aborted,
                };
                self.clean_segment(&meta, &removes, drop_tombstones, &mut stats)?;
            }
            from = end;
        }
        if stats.segments_rewritten > 0 {
            tracing::info!(topic = %self.topic(), partition = self.id(), segments = stats.segments_rewritten,
                records_removed = stats.records_removed, bytes_before = stats.bytes_before,
                bytes_after = stats.bytes_after, passes = stats.passes,
                key_map_bytes = stats.key_map_bytes, "compacted");
        }
        Ok(stats)
    }

    /// Maps keys of the records from `from` up to `high_watermark` to their
    /// latest offset until `map` is full; returns the offset mapping stopped
    /// at (`high_watermark` when everything fit). At least one key is
    /// mapped, so every pass makes progress.
    fn build_map(
        &self,
        from: i64,
        high_watermark: i64,
        aborted: &[AbortedTransaction],
        map: &mut OffsetMap,
    ) -> Result<i64, LogError> {
        let bytes_max = self.context().decompressed_batch_bytes_max;
        let mut end = high_watermark;
        for meta in self.segment_metas() {
            if meta.next_offset <= from {
                continue;
            }
            self.for_each_batch(&meta, from, high_watermark, |_, header, bytes| {
                if header.is_control() || is_aborted(header, aborted) {
                    return Ok(true);
                }
                let decoded = records::decode(&bytes, bytes_max).map_err(|e| e.to_string())?;
                for record in decoded {
                    let Some(key) = record.key.filter(|_| record.offset >= from) else {
                        continue;
                    };
                    if !map.put(&key, record.offset) {
                        end = record.offset;
                        return Ok(false);
                    }
                }
                Ok(true)
            })?;
            if end < high_watermark {
                break;
            }
        }
        Ok(end)
    }

    /// Calls `visit(position, header, bytes)` for each whole batch of a
    /// segment that ends at or after `from` and starts below
    /// `high_watermark`, until `visit` returns false. A header that does
    /// not parse, or a batch that runs past the end, before the end of the
    /// segment is [`LogError::Corrupt`], never the end of the data.
    fn for_each_batch(
        &self,
        meta: &SegmentMeta,
        from: i64,
        high_watermark: i64,
        mut visit: impl FnMut(u64, &BatchHeader, Bytes) -> Result<bool, String>,
    ) -> Result<(), LogError> {
        let base = meta.base_offset;
        let Some(plan) = self.plan_read(|m| m.base_offset == base, false, |_, _| 0)? else {
            return Ok(());
        };
        let ReadPlan {
            path, log, size, ..
        } = plan;
        let corrupt = |position, reason: String| LogError::Corrupt {
            path: path.clone(),
            position,
            reason,
        };
        let mut position = 0;
        while position < size {
            let header = segment::read_header(log.as_ref(), position, size)
                .map_err(|source| LogError::io(&path, source))?
                .ok_or_else(|| corrupt(position, "unreadable batch header".into()))?;
            let end = position + header.total_bytes() as u64;
            if header.base_offset >= high_watermark {
                break;
            }
            if end > size {
                return Err(corrupt(
                    position,
                    "batch runs past the end of the segment".into(),
                ));
            }
            if header.last_offset() >= from {
                let mut bytes = BytesMut::zeroed(header.total_bytes());
                log.read_exact_at(&mut bytes, position)
                    .map_err(|source| LogError::io(&path, source))?;
                batch::verify(&bytes).map_err(|error| corrupt(position, error.to_string()))?;
                let more = visit(position, &header, bytes.freeze())
                    .map_err(|reason| corrupt(position, reason))?;
                if !more {
                    break;
                }
            }
            position = end;
        }
        Ok(())
    }

    /// Rewrites one closed segment without the records below `end` that
    /// `map` supersedes (and expired tombstones), streaming batch by batch;
    /// swaps it in only if something was removed.
    fn clean_segment(
        &self,
        meta: &SegmentMeta,
        removes: &Removes<'_>,
        drop_tombstones: bool,
        stats: &mut CompactionStats,
    ) -> Result<(), LogError> {
        let bytes_max = self.context().decompressed_batch_bytes_max;
        let base = meta.base_offset;
        let mut builder = IndexBuilder::new(self.context().index_interval_bytes);
        let mut index = SegmentIndex::default();
        let mut output: Option<CleanedLog> = None;
        let mut written = 0u64;
        let mut removed = 0u64;
        let result = self.for_each_batch(meta, i64::MIN, i64::MAX, |_, header, bytes| {
            let (filtered, gone) =
                filter_batch(header, &bytes, removes, drop_tombstones, bytes_max)?;
            removed += gone;
            let (out, out_header): (&[u8], BatchHeader) = match &filtered {
                Filtered::Unchanged => (&bytes, *header),
                Filtered::Rewritten(encoded, new_header) => (encoded, *new_header),
                Filtered::Removed => (&[], *header),
            };
            if output.is_none() && !matches!(filtered, Filtered::Unchanged) {
                output = Some(
                    self.start_cleaned(base, written)
                        .map_err(|error| error.to_string())?,
                );
            }
            if !out.is_empty() {
                let (offset_entry, time_entry) = builder.on_batch(
                    (out_header.base_offset - base) as u32,
                    written as u32,
                    out.len() as u64,
                    out_header.max_timestamp,
                );
                index.offsets.extend(offset_entry);
                index.times.extend(time_entry);
                if let Some(output) = &output {
                    output
                        .write_at(out, written)
                        .map_err(|error| error.to_string())?;
                }
                written += out.len() as u64;
            }
            Ok(true)
        });
        let Some(output) = output else {
            return result;
        };
        if let Err(error) = result.and_then(|()| output.sync()) {
            output.discard();
            return Err(error);
        }
        self.swap_segment(meta, written, &index)?;
        stats.segments_rewritten += 1;
        stats.records_removed += removed;
        stats.bytes_before += meta.size;
        stats.bytes_after += written;
        Ok(())
    }

    /// Starts the rewritten log of the segment at `base`, copying the first
    /// `unchanged_bytes` of the original (the batches before the first one
    /// that changes).
    fn start_cleaned(&self, base: i64, unchanged_bytes: u64) -> Result<CleanedLog, LogError> {
        let io = self.context().io.clone();
        let original = segment::segment_path(self.dir(), base, LOG_SUFFIX);
        let path =
            segment::segment_path(self.dir(), base, &format!("{LOG_SUFFIX}.{CLEANED_SUFFIX}"));
        let file = io
            .open(&path, OpenMode::Truncate)
            .map_err(|source| LogError::io(&path, source))?;
        let cleaned = CleanedLog { io, path, file };
        if unchanged_bytes > 0 {
            let source = cleaned
                .io
                .open(&original, OpenMode::Read)
                .map_err(|source| LogError::io(&original, source))?;
            let mut chunk = vec![0u8; COPY_CHUNK_BYTES.min(unchanged_bytes as usize)];
            let mut position = 0u64;
            while position < unchanged_bytes {
                let len = chunk.len().min((unchanged_bytes - position) as usize);
                source
                    .read_exact_at(&mut chunk[..len], position)
                    .map_err(|source| LogError::io(&original, source))?;
                cleaned.write_at(&chunk[..len], position)?;
                position += len as u64;
            }
        }
        Ok(cleaned)
    }

    /// Atomically replaces a closed segment's files with its rewritten log
    /// (`log_bytes` long, already written and fsynced as
    /// `<base>.log.cleaned`) and `index`.
    fn swap_segment(
        &self,
        meta: &SegmentMeta,
        log_bytes: u64,
        index: &SegmentIndex,
    ) -> Result<(), LogError> {
        let context = self.context().clone();
        let io = context.io.as_ref();
        let dir = self.dir();
        let base = meta.base_offset;
        let cleaned =
            |suffix: &str| segment::segment_path(dir, base, &format!("{suffix}.{CLEANED_SUFFIX}"));
        let indexes = [
            (INDEX_SUFFIX, index.encode_offsets()),
            (TIME_INDEX_SUFFIX, index.encode_times()),
        ];
        for (suffix, bytes) in &indexes {
            let path = cleaned(suffix);
            let file = io
                .open(&path, OpenMode::Truncate)
                .map_err(|source| LogError::io(&path, source))?;
            file.write_all_at(bytes, 0)
                .map_err(|source| LogError::io(&path, source))?;
            file.sync().map_err(|source| LogError::io(&path, source))?;
        }
        // The swap happens under the partition lock so that no reader loads
        // the new log with the old index into the handle cache.
        let mut inner = self.lock();
        // Checked under the lock a topic deletion takes after retiring it.
        self.check_live()?;
        for (index, suffix) in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX]
            .iter()
            .enumerate()
        {
            let target = segment::segment_path(dir, base, suffix);
            if let Err(source) = io.rename(&cleaned(suffix), &target) {
                if index == 0 {
                    return Err(LogError::io(&target, source));
                }
                // The new log is in place with an old index: readers would
                // pair them and seek to wrong positions. Remove the stale
                // indexes (a read then scans from the segment's start, which
                // is correct, only slower), refuse writes until a restart,
                // whose recovery rebuilds the indexes from the log.
                for stale in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                    let _ = io.remove_file(&segment::segment_path(dir, base, stale));
                }
                context
                    .handles
                    .evict(&segment::segment_path(dir, base, LOG_SUFFIX));
                return Err(self.poison_with(format!(
                    "compaction swapped segment {base}'s log but not its index ({}: {source})",
                    target.display()
                )));
            }
        }
        context
            .handles
            .evict(&segment::segment_path(dir, base, LOG_SUFFIX));
        if let Some(current) = inner.closed.iter_mut().find(|m| m.base_offset == base) {
            current.size = log_bytes;
        }
        io.sync_dir(dir)
            .map_err(|source| LogError::io(dir, source))?;
        Ok(())
    }
}

/// The rewritten log of a segment being compacted (`<base>.log.cleaned`).
struct CleanedLog {
    io: Arc<dyn Io>,
    path: PathBuf,
    file: Arc<dyn IoFile>,
}

impl CleanedLog {
    fn write_at(&self, bytes: &[u8], position: u64) -> Result<(), LogError> {
        self.file
            .write_all_at(bytes, position)
            .map_err(|source| LogError::io(&self.path, source))
    }

    fn sync(&self) -> Result<(), LogError> {
        self.file
            .sync()
            .map_err(|source| LogError::io(&self.path, source))
    }

    /// Removes the file after a failed pass (recovery would too).
    fn discard(self) {
        if let Err(error) = self.io.remove_file(&self.path) {
            tracing::warn!(file = %self.path.display(), %error, "could not remove a compaction leftover");
        }
    }
}

/// What one pass removes below `end`.
struct Removes<'a> {
    /// Keys mapped to their latest offset: older records of a key go.
    map: &'a OffsetMap,
    /// Where the pass's mapping stopped.
    end: i64,
    /// Aborted transactions: their batches go.
    aborted: &'a [AbortedTransaction],
}

/// Filters one stored batch: keeps control batches and records without a
/// key; drops a batch of an aborted transaction, a keyed record below `end`
/// that the map supersedes, and tombstones when `drop_tombstones`. Kept
/// records are copied byte for byte, headers and all (`records::retain`).
/// Returns what is left and how many records went.
fn filter_batch(
    header: &BatchHeader,
    bytes: &[u8],
    removes: &Removes<'_>,
    drop_tombstones: bool,
    bytes_max: usize,
) -> Result<(Filtered, u64), String> {
    let (map, end) = (removes.map, removes.end);
    if header.is_control() {
        return Ok((Filtered::Unchanged, 0));
    }
    if header.last_offset() < end && is_aborted(header, removes.aborted) {
        return Ok((Filtered::Removed, header.records_count.max(0) as u64));
    }
    let keep = |offset: i64, key: Option<&[u8]>, value: Option<&[u8]>| {
        let Some(key) = key else {
            return true;
        };
        let superseded = offset < end && map.get(key).is_some_and(|latest| latest > offset);
        // Only a tombstone this pass has mapped may go: its key's older
        // values are then superseded in this same pass. One beyond `end`
        // waits for the pass that maps it, or a value it deleted could be
        // kept here and outlive it.
        let expired_tombstone = value.is_none() && drop_tombstones && offset < end;
        !(superseded || expired_tombstone)
    };
    let (retained, removed) =
        records::retain(bytes, bytes_max, keep).map_err(|error| error.to_string())?;
    Ok(match retained {
        Retained::All => (Filtered::Unchanged, 0),
        Retained::Nothing => (Filtered::Removed, removed),
        Retained::Some(rebuilt) => {
            let new_header = batch::verify(&rebuilt).map_err(|error| error.to_string())?;
            (Filtered::Rewritten(rebuilt, new_header), removed)
        }
    })
}
