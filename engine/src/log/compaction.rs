//! Log compaction for `cleanup.policy=compact`: keep the latest record per
//! key.
//!
//! Two passes, both reading without blocking appends. The first maps every
//! key in the partition (closed segments and the active one, up to the high
//! watermark) to its latest offset. The second rewrites each closed segment
//! keeping a record only if it is the latest for its key; records without a
//! key and control batches are kept. Tombstones (null values) are dropped
//! once the segment holding them is older than `delete.retention.ms`.
//! Offsets never change: a rewritten batch keeps its last offset, gaps are
//! left where records went, as in Kafka.
//!
//! Swapping is atomic per file: the new segment is written to
//! `<base>.log.cleaned`, fsynced, then renamed over `<base>.log` (then the
//! indexes the same way). A crash before the rename leaves the old segment
//! and a `.cleaned` leftover that recovery deletes; a crash between the log
//! and index renames leaves a stale index that recovery rebuilds.
//!
//! The key map holds every distinct key (bytes plus an offset); it is built
//! per run and bounded by the partition's key cardinality.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};

use super::batch::{self, BatchHeader};
use super::index::{IndexBuilder, SegmentIndex};
use super::io::OpenMode;
use super::partition::{Partition, ReadPlan};
use super::segment::{
    self, SegmentMeta, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
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
}

fn compression_of(header: &BatchHeader) -> Result<Compression, String> {
    Ok(match header.compression() {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        other => return Err(format!("unknown compression codec {other}")),
    })
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
        let now_ms = self.context().clock.now_ms();
        let high_watermark = self.high_watermark();
        let metas = self.segment_metas();
        let Some((_active, closed)) = metas.split_last() else {
            return Ok(stats);
        };
        if closed.is_empty() {
            return Ok(stats);
        }
        let bytes_max = self.context().decompressed_batch_bytes_max;
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for meta in &metas {
            self.for_each_batch(meta, high_watermark, |_, header, bytes| {
                if header.is_control() {
                    return Ok(());
                }
                for record in decode(&bytes, bytes_max)?.records {
                    if let Some(key) = record.key {
                        latest.insert(key, record.offset);
                    }
                }
                Ok(())
            })?;
        }
        for meta in closed {
            let drop_tombstones = now_ms - meta.max_timestamp > config.delete_retention_ms;
            self.clean_segment(meta, &latest, drop_tombstones, &mut stats)?;
        }
        if stats.segments_rewritten > 0 {
            tracing::info!(topic = %self.topic(), partition = self.id(), segments = stats.segments_rewritten,
                records_removed = stats.records_removed, bytes_before = stats.bytes_before,
                bytes_after = stats.bytes_after, "compacted");
        }
        Ok(stats)
    }

    /// Calls `visit(position, header, bytes)` for each whole batch of a
    /// segment below `high_watermark`.
    fn for_each_batch(
        &self,
        meta: &SegmentMeta,
        high_watermark: i64,
        mut visit: impl FnMut(u64, &BatchHeader, Bytes) -> Result<(), String>,
    ) -> Result<(), LogError> {
        let base = meta.base_offset;
        let Some(plan) = self.plan_read(|m| m.base_offset == base, false, |_, _| 0)? else {
            return Ok(());
        };
        let ReadPlan {
            path, log, size, ..
        } = plan;
        let corrupt = |position, reason| LogError::Corrupt {
            path: path.clone(),
            position,
            reason,
        };
        let mut position = 0;
        while let Some((at, header)) = segment::seek(log.as_ref(), position, size, i64::MIN)
            .map_err(|source| LogError::io(&path, source))?
        {
            if header.base_offset >= high_watermark {
                break;
            }
            let mut bytes = BytesMut::zeroed(header.total_bytes());
            log.read_exact_at(&mut bytes, at)
                .map_err(|source| LogError::io(&path, source))?;
            batch::verify(&bytes).map_err(|error| corrupt(at, error.to_string()))?;
            visit(at, &header, bytes.freeze()).map_err(|reason| corrupt(at, reason))?;
            position = at + header.total_bytes() as u64;
        }
        Ok(())
    }

    /// Rewrites one closed segment without superseded records; swaps it in
    /// only if something was removed.
    fn clean_segment(
        &self,
        meta: &SegmentMeta,
        latest: &HashMap<Bytes, i64>,
        drop_tombstones: bool,
        stats: &mut CompactionStats,
    ) -> Result<(), LogError> {
        let bytes_max = self.context().decompressed_batch_bytes_max;
        let mut output = Vec::with_capacity(meta.size as usize);
        let mut removed = 0u64;
        let mut headers = Vec::new();
        self.for_each_batch(meta, i64::MAX, |_, header, bytes| {
            if header.is_control() {
                output.extend_from_slice(&bytes);
                headers.push(*header);
                return Ok(());
            }
            let records = decode(&bytes, bytes_max)?.records;
            let total = records.len();
            let kept: Vec<_> = records
                .into_iter()
                .filter(|record| {
                    let latest_for_key = record
                        .key
                        .as_ref()
                        .is_none_or(|key| latest.get(key) == Some(&record.offset));
                    latest_for_key && !(record.value.is_none() && drop_tombstones)
                })
                .collect();
            removed += (total - kept.len()) as u64;
            if kept.len() == total {
                output.extend_from_slice(&bytes);
                headers.push(*header);
            } else if !kept.is_empty() {
                let mut encoded = BytesMut::new();
                let options = RecordEncodeOptions {
                    version: 2,
                    compression: compression_of(header)?,
                };
                RecordBatchEncoder::encode(&mut encoded, kept.iter(), &options)
                    .map_err(|error| format!("re-encoding kept records failed: {error}"))?;
                batch::restore_after_filter(&mut encoded, header);
                let new_header = batch::verify(&encoded).map_err(|error| error.to_string())?;
                if new_header.total_bytes() != encoded.len() {
                    return Err("re-encoded records did not fit one batch".into());
                }
                output.extend_from_slice(&encoded);
                headers.push(new_header);
            }
            Ok(())
        })?;
        if removed == 0 {
            return Ok(());
        }
        self.swap_segment(meta, &output, &headers)?;
        stats.segments_rewritten += 1;
        stats.records_removed += removed;
        stats.bytes_before += meta.size;
        stats.bytes_after += output.len() as u64;
        Ok(())
    }

    /// Atomically replaces a closed segment's files with `log` (batches
    /// described by `headers`) and its rebuilt indexes.
    fn swap_segment(
        &self,
        meta: &SegmentMeta,
        log: &[u8],
        headers: &[BatchHeader],
    ) -> Result<(), LogError> {
        let context = self.context().clone();
        let io = context.io.as_ref();
        let dir = self.dir();
        let base = meta.base_offset;
        let mut builder = IndexBuilder::new(context.index_interval_bytes);
        let mut index = SegmentIndex::default();
        let mut position = 0u64;
        for header in headers {
            let relative = (header.base_offset - base) as u32;
            let (offset_entry, time_entry) = builder.on_batch(
                relative,
                position as u32,
                header.total_bytes() as u64,
                header.max_timestamp,
            );
            index.offsets.extend(offset_entry);
            index.times.extend(time_entry);
            position += header.total_bytes() as u64;
        }
        let cleaned =
            |suffix: &str| segment::segment_path(dir, base, &format!("{suffix}.{CLEANED_SUFFIX}"));
        let files = [
            (LOG_SUFFIX, log.to_vec()),
            (INDEX_SUFFIX, index.encode_offsets()),
            (TIME_INDEX_SUFFIX, index.encode_times()),
        ];
        for (suffix, bytes) in &files {
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
        for (suffix, _) in &files {
            let target = segment::segment_path(dir, base, suffix);
            io.rename(&cleaned(suffix), &target)
                .map_err(|source| LogError::io(&target, source))?;
        }
        io.sync_dir(dir)
            .map_err(|source| LogError::io(dir, source))?;
        context
            .handles
            .evict(&segment::segment_path(dir, base, LOG_SUFFIX));
        if let Some(current) = inner.closed.iter_mut().find(|m| m.base_offset == base) {
            current.size = log.len() as u64;
        }
        Ok(())
    }
}

/// Decodes a stored batch within `bytes_max` decompressed bytes.
fn decode(bytes: &[u8], bytes_max: usize) -> Result<kafka_protocol::records::RecordSet, String> {
    super::records::decode(bytes, bytes_max).map_err(|error| error.to_string())
}
