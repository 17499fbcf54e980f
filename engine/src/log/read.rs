//! The read path of a partition: Fetch reads whole batches from the segment
//! holding an offset, ListOffsets finds the first record at or after a
//! timestamp. Kept apart from the write path in `partition.rs` because reads
//! never write and take the partition lock only to choose a segment.

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader};
use super::index::SegmentIndex;
use super::io::IoFile;
use super::partition::{Inner, Isolation, Partition, ReadPlan, ReadResult};
use super::segment::{self, SegmentFiles, SegmentMeta, LOG_SUFFIX};
use super::LogError;

/// Rounds of choosing a segment and loading its files without the
/// partition lock before a read loads them under it instead; each round
/// lost means a compaction or retention changed files meanwhile.
const PLAN_ROUNDS_MAX: usize = 3;

/// The segment `pick` chooses: the last matching one when `last`, else the
/// first.
fn choose<'a>(
    inner: &'a Inner,
    pick: &impl Fn(&SegmentMeta) -> bool,
    last: bool,
) -> Option<&'a SegmentMeta> {
    let mut metas = inner
        .closed
        .iter()
        .chain(std::iter::once(&inner.active.meta));
    if last {
        metas.take_while(|meta| pick(meta)).last()
    } else {
        metas.find(|meta| pick(meta))
    }
}

impl Partition {
    /// Reads whole batches starting with the one that holds `offset`, about
    /// `max_bytes` of them but always at least one whole batch, never past
    /// the high watermark. Every batch's CRC is checked before it is served.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, LogError> {
        self.read_isolated(offset, max_bytes, Isolation::ReadUncommitted)
    }

    /// [`Partition::read`] at an isolation level: `ReadCommitted` stops at
    /// the last stable offset and lists the aborted transactions among
    /// the batches read (their records are for the reader to drop).
    pub(crate) fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        isolation: Isolation,
    ) -> Result<ReadResult, LogError> {
        let (high_watermark, last_stable_offset, log_start_offset) = self.offsets();
        if offset < log_start_offset || offset > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark,
            });
        }
        let upper = match isolation {
            Isolation::ReadUncommitted => high_watermark,
            Isolation::ReadCommitted => last_stable_offset,
        };
        let records = self.read_below(offset, max_bytes, upper)?;
        let aborted = match isolation {
            Isolation::ReadCommitted if !records.is_empty() => {
                let end = batch::end_offset(&records).unwrap_or(offset);
                self.lock().transactions.aborted_between(offset, end)
            }
            _ => Vec::new(),
        };
        Ok(ReadResult {
            records,
            high_watermark,
            last_stable_offset,
            log_start_offset,
            aborted,
        })
    }

    /// Whole batches from the one holding `offset`, none starting at or
    /// past `upper`.
    fn read_below(&self, offset: i64, max_bytes: usize, upper: i64) -> Result<Bytes, LogError> {
        let relative = |index: &SegmentIndex, base: i64| {
            index.position_for((offset - base).clamp(0, u32::MAX as i64) as u32)
        };
        // The segment holding `offset`; compaction may have emptied its end,
        // in which case the data continues in the next one.
        let mut plan = self.plan_read(|meta| meta.base_offset <= offset, true, relative)?;
        while let Some(current) = plan {
            if offset >= upper {
                break;
            }
            let found = segment::seek(
                current.log.as_ref(),
                current.start_position,
                current.size,
                offset,
            )
            .map_err(|source| LogError::io(&current.path, source))?;
            if let Some((position, first)) = found {
                if first.base_offset >= upper {
                    break;
                }
                return read_batches(&current, position, &first, max_bytes, upper);
            }
            plan = self.plan_read(
                |meta| meta.base_offset > current.base_offset,
                false,
                relative,
            )?;
        }
        Ok(Bytes::new())
    }

    /// Plans a read of a segment chosen by `pick`: the last one matching when
    /// `last`, else the first. `locate` finds the start position in its index.
    pub(super) fn plan_read(
        &self,
        pick: impl Fn(&SegmentMeta) -> bool,
        last: bool,
        locate: impl Fn(&SegmentIndex, i64) -> u32,
    ) -> Result<Option<ReadPlan>, LogError> {
        let handles = &self.context().handles;
        // Files loaded without the lock on the previous round: the segment's
        // base offset and the cache's eviction count before loading.
        let mut loaded: Option<(i64, u64, Arc<SegmentFiles>)> = None;
        for round in 1.. {
            let inner = self.lock();
            let Some(meta) = choose(&inner, &pick, last) else {
                return Ok(None);
            };
            let base_offset = meta.base_offset;
            let path = segment::segment_path(self.dir(), base_offset, LOG_SUFFIX);
            let plan = |log: Arc<dyn IoFile>, index: &SegmentIndex| ReadPlan {
                path: path.clone(),
                log,
                base_offset,
                size: meta.size,
                start_position: locate(index, base_offset) as u64,
            };
            if base_offset == inner.active.meta.base_offset {
                return Ok(Some(plan(inner.active.log.clone(), &inner.active.index)));
            }
            let evictions = match handles.get(&path) {
                Ok(files) => return Ok(Some(plan(files.log.clone(), &files.index))),
                Err(evictions) => evictions,
            };
            if let Some((base, seen, files)) = loaded.take() {
                if base == base_offset {
                    if let Some(files) = handles.install(&path, files, seen) {
                        return Ok(Some(plan(files.log.clone(), &files.index)));
                    }
                }
            }
            if round > PLAN_ROUNDS_MAX {
                // Files keep changing under us: load under the lock.
                let files = handles.get_or_load(&path, || {
                    segment::load_files(self.context().io.as_ref(), self.dir(), base_offset)
                })?;
                return Ok(Some(plan(files.log.clone(), &files.index)));
            }
            drop(inner);
            // A failure may be retention or compaction removing the file
            // after we chose it: choose again, and the last round loads
            // under the lock, where a failure is real.
            let files = segment::load_files(self.context().io.as_ref(), self.dir(), base_offset);
            loaded = files
                .ok()
                .map(|files| (base_offset, evictions, Arc::new(files)));
        }
        unreachable!("the loop returns")
    }

    /// The first record at or after `timestamp`: its offset and timestamp.
    pub(crate) fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let high_watermark = self.high_watermark();
        let locate = |index: &SegmentIndex, _base: i64| {
            index.position_for(index.relative_offset_for_time(timestamp))
        };
        let mut plan = self.plan_read(|meta| meta.max_timestamp >= timestamp, false, locate)?;
        while let Some(current) = plan {
            let found = segment::seek_time(
                current.log.as_ref(),
                current.start_position,
                current.size,
                timestamp,
            )
            .map_err(|source| LogError::io(&current.path, source))?;
            if let Some((position, header)) = found {
                if header.base_offset >= high_watermark {
                    return Ok(None);
                }
                let mut bytes = vec![0u8; header.total_bytes()];
                current
                    .log
                    .read_exact_at(&mut bytes, position)
                    .map_err(|source| LogError::io(&current.path, source))?;
                return first_record_at_or_after(
                    &current.path,
                    position,
                    bytes,
                    timestamp,
                    self.context().decompressed_batch_bytes_max,
                )
                .map(Some);
            }
            let base = current.base_offset;
            plan = self.plan_read(
                |meta| meta.base_offset > base && meta.max_timestamp >= timestamp,
                false,
                locate,
            )?;
        }
        Ok(None)
    }
}

/// Reads whole batches from `position` (where `first` starts): at least
/// `first`, then more while they fit in `max_bytes` and lie below the high
/// watermark. Verifies each batch's CRC.
fn read_batches(
    plan: &ReadPlan,
    position: u64,
    first: &BatchHeader,
    max_bytes: usize,
    high_watermark: i64,
) -> Result<Bytes, LogError> {
    let want = (max_bytes.max(first.total_bytes()) as u64).min(plan.size - position);
    let mut buf = BytesMut::zeroed(want as usize);
    plan.log
        .read_exact_at(&mut buf, position)
        .map_err(|source| LogError::io(&plan.path, source))?;
    let mut end = 0;
    while end < buf.len() {
        let rest = &buf[end..];
        match BatchHeader::parse(rest) {
            Ok(header)
                if header.total_bytes() <= rest.len() && header.base_offset < high_watermark =>
            {
                batch::verify(rest).map_err(|error| LogError::Corrupt {
                    path: plan.path.clone(),
                    position: position + end as u64,
                    reason: error.to_string(),
                })?;
                end += header.total_bytes();
            }
            // A partial last batch (cut by max_bytes) or the high watermark.
            _ => break,
        }
    }
    if end == 0 {
        return Err(LogError::Corrupt {
            path: plan.path.clone(),
            position,
            reason: "batch header could not be read back".into(),
        });
    }
    buf.truncate(end);
    Ok(buf.freeze())
}

/// The first record in `batch` with a timestamp at or after `timestamp`.
fn first_record_at_or_after(
    path: &Path,
    position: u64,
    batch: Vec<u8>,
    timestamp: i64,
    decompressed_bytes_max: usize,
) -> Result<(i64, i64), LogError> {
    let corrupt = |reason: String| LogError::Corrupt {
        path: path.to_path_buf(),
        position,
        reason,
    };
    let header = batch::verify(&batch).map_err(|error| corrupt(error.to_string()))?;
    if batch::is_log_append_time(&header) {
        // LogAppendTime: every record carries the batch's max timestamp.
        return Ok((header.base_offset, header.max_timestamp));
    }
    let records = super::records::decode(&Bytes::from(batch), decompressed_bytes_max)
        .map_err(|error| corrupt(error.to_string()))?;
    records
        .iter()
        .find(|record| record.timestamp >= timestamp)
        .map(|record| (record.offset, record.timestamp))
        .ok_or_else(|| corrupt("max timestamp is not carried by any record".into()))
}

/// Why walking a read_committed read failed: a batch header that does not
/// parse, or a batch that does not decode (with its base offset).
#[derive(Debug)]
pub(crate) enum CommittedReadError {
    Header(batch::BatchError),
    Decode {
        base_offset: i64,
        error: batch::BatchError,
    },
}

impl std::fmt::Display for CommittedReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header(error) => write!(f, "{error}"),
            Self::Decode { base_offset, error } => {
                write!(f, "decoding the batch at offset {base_offset}: {error}")
            }
        }
    }
}

impl Partition {
    /// Walks `read` (a read_committed [`Partition::read_isolated`]) from
    /// offset `from`, as a Kafka consumer does: control batches and the
    /// batches of its aborted transactions skipped, each other batch
    /// decoded (within the decompression bound) and its records at or after
    /// `from` handed to `on_record`. Returns the offset after the last batch.
    pub(crate) fn committed_records(
        &self,
        read: ReadResult,
        from: i64,
        mut on_record: impl FnMut(super::records::StoredRecord),
    ) -> Result<i64, CommittedReadError> {
        let aborted = super::transactions::AbortedIndex::new(&read.aborted);
        let mut batches = read.records;
        let mut next = from;
        while !batches.is_empty() {
            let header = BatchHeader::parse(&batches).map_err(CommittedReadError::Header)?;
            let one = batches.split_to(header.total_bytes().min(batches.len()));
            if header.next_offset() <= from {
                continue;
            }
            if !header.is_control() && !aborted.contains(&header) {
                let records =
                    self.decode_batch(&one)
                        .map_err(|error| CommittedReadError::Decode {
                            base_offset: header.base_offset,
                            error,
                        })?;
                records
                    .into_iter()
                    .filter(|record| record.offset >= from)
                    .for_each(&mut on_record);
            }
            next = header.next_offset();
        }
        Ok(next)
    }
}
