//! One input partition of a task: where the task is in it, what it has
//! read ahead, and (stateful tasks) its partition time.
//!
//! A stateless task reads one partition. A stateful task reads the same
//! partition of each of its processor's inputs (they are co-partitioned:
//! the same key lands in the same partition of each), so its state sees
//! every input record of its keys; it processes the inputs merged by
//! timestamp (`PartitionTask::next_input`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::log::{CommittedReadError, Isolation, LogError, Partition, ReadResult};
use crate::processor::host::{InputHeader, InputRecord};
use crate::processor::spec::Limits;
use crate::processor::status::PartitionStats;

use super::{input_bytes, StepFailure};

/// One input partition of a task.
pub(crate) struct Input {
    pub(crate) stats: Arc<PartitionStats>,
    /// Next offset to process; what gets committed.
    pub(crate) position: i64,
    /// Next offset to read from the log into `pending`.
    pub(crate) fetch_position: i64,
    /// Records read ahead, with their sizes: at most a batch's worth
    /// (`batch_records_max`, `batch_bytes_max` per read).
    pub(crate) pending: VecDeque<(InputRecord, usize)>,
    /// The partition's last stable offset at the last read.
    pub(crate) last_stable_offset: i64,
    /// Stateful tasks: the largest timestamp processed from this input
    /// (its "partition time"; `None` before its first record).
    pub(crate) time: Option<i64>,
    /// When this input last brought a record (or the task started).
    pub(crate) last_record_at: Instant,
}

impl Input {
    pub(crate) fn new(stats: Arc<PartitionStats>, position: i64) -> Self {
        Self {
            stats,
            position,
            fetch_position: position,
            pending: VecDeque::new(),
            last_stable_offset: 0,
            time: None,
            last_record_at: Instant::now(),
        }
    }

    /// Whether records are waiting here, given the partition's `(high
    /// watermark, last stable offset)`. Processors read committed data
    /// only: what lies between the LSO and the high watermark (open
    /// transactions) is not work yet.
    pub(crate) fn has_work(&self, (high_watermark, last_stable_offset): (i64, i64)) -> bool {
        // A position past the high watermark is work too: the step resets
        // it (see `reset_if_past_the_log_end`).
        !self.pending.is_empty()
            || self.position < last_stable_offset
            || self.position > high_watermark
    }

    /// Whether everything committed in the partition has been read and
    /// processed.
    pub(crate) fn caught_up(&self) -> bool {
        self.pending.is_empty() && self.fetch_position >= self.last_stable_offset
    }

    /// Forgets read-ahead: the next read starts at the position.
    pub(crate) fn rewind(&mut self) {
        self.pending.clear();
        self.fetch_position = self.position;
    }

    /// The timestamp of the next record to process, if one is read.
    pub(crate) fn head_timestamp(&self) -> Option<i64> {
        self.pending.front().map(|(record, _)| record.timestamp)
    }

    /// Takes the next batch from `pending`: within `limits`' record and
    /// byte bounds, not at or past `until` (the end of a rebuild: outputs
    /// before it are not written, after it they are), and, when `after` is
    /// given, no record later than it once the batch has one (merging
    /// inputs by timestamp). At least one record when there is one.
    pub(crate) fn take(
        &mut self,
        limits: &Limits,
        until: Option<i64>,
        after: Option<i64>,
    ) -> Vec<InputRecord> {
        let mut records = Vec::new();
        let mut bytes = 0usize;
        while let Some((record, size)) = self.pending.front() {
            if !records.is_empty()
                && (records.len() as u64 >= limits.batch_records_max
                    || (bytes + size) as u64 > limits.batch_bytes_max
                    || until.is_some_and(|until| record.offset >= until)
                    || after.is_some_and(|after| record.timestamp > after))
            {
                break;
            }
            bytes += size;
            let (record, _) = self.pending.pop_front().expect("front exists");
            records.push(record);
        }
        if !records.is_empty() {
            self.last_record_at = Instant::now();
        }
        records
    }

    /// Reads from `partition` until `pending` holds a batch's worth of
    /// records (or the log has no more).
    pub(crate) fn fill(
        &mut self,
        partition: &Partition,
        limits: &Limits,
        processor: &str,
    ) -> Result<(), StepFailure> {
        self.reset_if_past_the_log_end(partition, processor);
        self.last_stable_offset = partition.last_stable_offset();
        while (self.pending.len() as u64) < limits.batch_records_max
            && self.fetch_position < partition.last_stable_offset()
        {
            let read = match partition.read_isolated(
                self.fetch_position,
                limits.batch_bytes_max as usize,
                Isolation::ReadCommitted,
            ) {
                Ok(read) => read,
                Err(LogError::OffsetOutOfRange {
                    log_start_offset, ..
                }) if self.fetch_position < log_start_offset => {
                    // Retention or DeleteRecords removed what was next:
                    // carry on from the log start, like auto.offset.reset.
                    tracing::warn!(%processor, topic = %self.stats.topic,
                        partition = self.stats.partition, from = self.fetch_position,
                        to = log_start_offset, "input records were deleted before processing; skipping ahead");
                    self.fetch_position = log_start_offset;
                    if self.pending.is_empty() {
                        self.position = log_start_offset;
                    }
                    continue;
                }
                Err(error) => {
                    return Err(StepFailure::new(
                        format!("reading input failed: {error}"),
                        None,
                    ))
                }
            };
            if read.records.is_empty() {
                // Nothing lies between here and the LSO (compaction may
                // have removed an aborted transaction below an open one):
                // move past the gap, or the task would find it "work"
                // again and again. Unless retention removed the segment
                // under the read: then the next read is out of range and
                // starts again from the new log start, skipping nothing.
                if partition.log_start_offset() <= self.fetch_position {
                    self.fetch_position = self.fetch_position.max(read.last_stable_offset);
                }
                break;
            }
            self.decode(partition, read)?;
        }
        Ok(())
    }

    /// A committed position past the log end cannot be reached by reading:
    /// the topic was deleted and created again, or recovery cut off an
    /// unsynced tail. Waiting for the log to grow past it would skip every
    /// record in between, so the rule is: start again from the log start
    /// offset (nothing is skipped; records may be processed again, as
    /// at-least-once allows), and say so in the partition's status.
    fn reset_if_past_the_log_end(&mut self, partition: &Partition, processor: &str) {
        // The high watermark, not the log end: a position never passes it
        // in normal operation (only records below it are read).
        let log_end_offset = partition.high_watermark();
        if !self.pending.is_empty() || self.fetch_position <= log_end_offset {
            return;
        }
        let log_start_offset = partition.log_start_offset();
        let message = format!(
            "committed offset {} is past the log end {log_end_offset} (the topic was \
             recreated or its log truncated); restarted from the log start {log_start_offset}",
            self.fetch_position
        );
        tracing::warn!(%processor, topic = %self.stats.topic,
            partition = self.stats.partition, "{message}");
        self.stats
            .record_notice(&message, Some(self.fetch_position));
        self.position = log_start_offset;
        self.fetch_position = log_start_offset;
    }

    /// Appends the records at or after `fetch_position` of `read`,
    /// skipping control batches and the batches of aborted transactions
    /// (read_committed). Decompresses within the log's
    /// `decompressed_batch_bytes_max` and validates each record first: a
    /// batch over the bound or with bad offsets stops the partition with
    /// the reason in its status.
    fn decode(&mut self, partition: &Partition, read: ReadResult) -> Result<(), StepFailure> {
        let pending = &mut self.pending;
        let next = partition
            .committed_records(read, self.fetch_position, |record| {
                let input = InputRecord {
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: record.key,
                    value: record.value,
                    headers: record
                        .headers
                        .into_iter()
                        .map(|(key, value)| InputHeader {
                            // As Kafka's Java client reads header names.
                            key: String::from_utf8_lossy(&key).into_owned(),
                            value,
                        })
                        .collect(),
                };
                // Headers count too: every one crosses into the plugin.
                let size = input_bytes(&input) as usize;
                pending.push_back((input, size));
            })
            .map_err(|error| match error {
                CommittedReadError::Header(error) => {
                    StepFailure::new(format!("reading input failed: {error}"), None)
                }
                CommittedReadError::Decode { base_offset, error } => StepFailure::new(
                    format!("decoding input batch at offset {base_offset} failed: {error}"),
                    None,
                ),
            })?;
        self.fetch_position = self.fetch_position.max(next);
        Ok(())
    }
}
