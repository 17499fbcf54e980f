//! Retention (`retention.ms`, `retention.bytes`) and truncation.
//!
//! Retention deletes whole segments, oldest first, and never a part of one:
//! the log start offset moves to the first remaining segment. An expired
//! active segment is rolled first so an idle topic still ages out.

use super::partition::Partition;
use super::segment::{self, SegmentMeta, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use super::LogError;

/// How far past the broker's clock a segment's largest timestamp may lie and
/// still be its age for `retention.ms`; a timestamp further ahead is a
/// producer's broken clock, and the segment ages from its last append.
const FUTURE_TIMESTAMP_TOLERANCE_MS: i64 = 60_000;

/// The time `retention.ms` counts from for `meta` at `now_ms`: its largest
/// timestamp (Kafka's rule), unless that lies in the future.
fn retention_timestamp(meta: &SegmentMeta, now_ms: i64) -> i64 {
    if meta.max_timestamp > now_ms.saturating_add(FUTURE_TIMESTAMP_TOLERANCE_MS) {
        meta.last_append_ms
    } else {
        meta.max_timestamp
    }
}

impl Partition {
    /// Deletes segments past `retention.ms` or `retention.bytes`; returns how
    /// many were deleted.
    pub(crate) fn enforce_retention(&self) -> Result<usize, LogError> {
        let config = self.config();
        if !config.cleanup_policy.deletes() {
            return Ok(0);
        }
        let _maintenance = self.maintenance.lock().expect("maintenance lock");
        self.check_live()?;
        let now_ms = self.context().clock.now_ms();
        let expired = |meta: &SegmentMeta, total: u64| {
            (config.retention_ms >= 0
                && now_ms - retention_timestamp(meta, now_ms) > config.retention_ms)
                || (config.retention_bytes >= 0
                    && total - meta.size >= config.retention_bytes as u64)
        };
        let doomed = {
            let mut inner = self.lock();
            let mut total: u64 =
                inner.closed.iter().map(|m| m.size).sum::<u64>() + inner.active.meta.size;
            let mut count = 0;
            for meta in &inner.closed {
                if !expired(meta, total) {
                    break;
                }
                total -= meta.size;
                count += 1;
            }
            let active = &inner.active.meta;
            if count == inner.closed.len() && active.size > 0 && expired(active, total) {
                self.roll(&mut inner, now_ms)?;
                count += 1;
            }
            inner.closed.drain(..count).collect::<Vec<_>>()
        };
        for meta in &doomed {
            tracing::info!(topic = %self.topic(), partition = self.id(), base_offset = meta.base_offset,
                bytes = meta.size, "deleting segment past retention");
            self.delete_segment_files(meta.base_offset)?;
        }
        Ok(doomed.len())
    }

    pub(super) fn delete_segment_files(&self, base_offset: i64) -> Result<(), LogError> {
        let io = self.context().io.as_ref();
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = segment::segment_path(self.dir(), base_offset, suffix);
            if suffix == LOG_SUFFIX {
                self.context().handles.evict(&path);
            }
            io.remove_file(&path)
                .map_err(|source| LogError::io(&path, source))?;
        }
        Ok(())
    }

    /// Removes every record at or after `offset` (a batch that straddles it
    /// goes whole), so the next append gets the removed batch's base offset.
    /// Only the model and retention tests truncate today.
    #[cfg(test)]
    pub(crate) fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        let _maintenance = self.maintenance.lock().expect("maintenance lock");
        let context = self.context().clone();
        let io = context.io.as_ref();
        let now_ms = context.clock.now_ms();
        let mut inner = self.lock();
        if offset >= inner.active.meta.next_offset {
            return Ok(());
        }
        // Whole segments at or above the offset go first.
        while inner.active.meta.base_offset >= offset {
            self.delete_segment_files(inner.active.meta.base_offset)?;
            let Some(previous) = inner.closed.pop() else {
                inner.active = segment::ActiveSegment::create(
                    io,
                    self.dir(),
                    offset.max(0),
                    context.index_interval_bytes,
                    now_ms,
                )?;
                break;
            };
            // The closed segment becomes active and will change; its cached
            // index would send reads to stale positions once it is closed
            // again.
            context.handles.evict(&segment::segment_path(
                self.dir(),
                previous.base_offset,
                LOG_SUFFIX,
            ));
            inner.active = segment::ActiveSegment::recover(
                io,
                self.dir(),
                previous.base_offset,
                context.index_interval_bytes,
                now_ms,
            )?;
        }
        let active = &inner.active;
        let start = active
            .index
            .position_for((offset - active.meta.base_offset).clamp(0, u32::MAX as i64) as u32);
        let path = segment::segment_path(self.dir(), active.meta.base_offset, LOG_SUFFIX);
        let cut = segment::seek(active.log.as_ref(), start as u64, active.meta.size, offset)
            .map_err(|source| LogError::io(&path, source))?;
        if let Some((position, _)) = cut {
            active
                .log
                .set_len(position)
                .map_err(|source| LogError::io(&path, source))?;
            let base = active.meta.base_offset;
            // Reopening rebuilds the in-memory state and indexes from the log.
            inner.active = segment::ActiveSegment::recover(
                io,
                self.dir(),
                base,
                context.index_interval_bytes,
                now_ms,
            )?;
            inner
                .active
                .sync_all()
                .map_err(|source| LogError::io(&path, source))?;
        }
        let end = inner.active.meta.next_offset;
        drop(inner);
        self.reset_end(end);
        tracing::info!(topic = %self.topic(), partition = self.id(), offset, end, "truncated log");
        Ok(())
    }

    /// DeleteRecords: moves the log start to `offset` (at most the high
    /// watermark), durably, and deletes the segments wholly below it.
    /// Returns the new log start.
    pub(crate) fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let _maintenance = self.maintenance.lock().expect("maintenance lock");
        let high_watermark = self.high_watermark();
        let mut inner = self.lock();
        self.check_live()?;
        let start = inner.log_start_offset();
        if offset < 0 || offset > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                high_watermark,
            });
        }
        if offset <= start {
            return Ok(start);
        }
        let path = self.dir().join(super::partition::LOG_START_FILE);
        super::io::write_atomic(
            self.context().io.as_ref(),
            &path,
            offset.to_string().as_bytes(),
        )
        .map_err(|source| LogError::io(&path, source))?;
        inner.start_override = offset;
        // A closed segment whose successor starts at or below the new start
        // holds nothing readable any more.
        let mut doomed = 0;
        while doomed < inner.closed.len() {
            let next_base = inner
                .closed
                .get(doomed + 1)
                .map_or(inner.active.meta.base_offset, |next| next.base_offset);
            if next_base > offset {
                break;
            }
            doomed += 1;
        }
        let doomed: Vec<SegmentMeta> = inner.closed.drain(..doomed).collect();
        drop(inner);
        for meta in &doomed {
            self.delete_segment_files(meta.base_offset)?;
        }
        tracing::info!(topic = %self.topic(), partition = self.id(), log_start_offset = offset,
            segments_deleted = doomed.len(), "deleted records");
        Ok(offset)
    }
}
