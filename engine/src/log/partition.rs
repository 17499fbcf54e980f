//! One partition: an ordered list of segments, the last one active.
//!
//! Appends take the partition lock only to assign offsets and write; waiting
//! for durability happens outside it, with group commit: whoever finds no
//! fsync in flight becomes the flusher and fsyncs for everyone who wrote
//! before it started, so concurrent producers share fsyncs. A failed fsync
//! poisons the partition until restart, because after a failed fsync the
//! kernel may have dropped the dirty pages and a retry can falsely succeed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};

use bytes::Bytes;
use tokio::sync::watch;

use super::batch::{self, BatchError, BatchHeader};
use super::handles::HandleCache;
use super::producers::{check_sequences, ProducerStates};
use super::recovery::{list_segments, open_segments, Opened};
use super::segment::{ActiveSegment, SegmentMeta};
use super::topic_config::{TimestampType, TopicConfig};
use super::transactions::{AbortedTransaction, Marker, PartitionTransactions};
use super::{Clock, FlushPolicy, Io, LogError};

/// What the partition needs from its store.
#[derive(Clone)]
pub(crate) struct PartitionContext {
    /// File access.
    pub(crate) io: Arc<dyn Io>,
    /// Time source (injectable for retention tests).
    pub(crate) clock: Arc<dyn Clock>,
    /// Shared cache of opened closed segments.
    pub(crate) handles: Arc<HandleCache>,
    /// When appends are fsynced.
    pub(crate) flush: FlushPolicy,
    /// Bytes of log between sparse index entries.
    pub(crate) index_interval_bytes: u64,
    /// Idempotent producers remembered per partition.
    pub(crate) producers_max: usize,
    /// Bytes one batch's records may decompress to.
    pub(crate) decompressed_batch_bytes_max: usize,
    /// Bytes a compaction pass's key map may take.
    pub(crate) compaction_memory_bytes_max: usize,
    /// Set when the topic is deleted (one flag per topic incarnation).
    pub(crate) retired: Arc<std::sync::atomic::AtomicBool>,
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub(crate) base_offset: i64,
    /// Offset of the last record.
    pub(crate) last_offset: i64,
    /// The broker's timestamp for `LogAppendTime` topics, else -1.
    pub(crate) log_append_time_ms: i64,
    /// Log start offset after the append.
    pub(crate) log_start_offset: i64,
}

/// A produced buffer that passed every check, ready to write.
pub(crate) struct Checked {
    headers: Vec<BatchHeader>,
}

/// Which records a read returns (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// Everything below the high watermark, open transactions included.
    ReadUncommitted,
    /// Only below the last stable offset, with the aborted transactions
    /// listed so the reader can drop their records.
    ReadCommitted,
}

/// Result of a read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches, exactly as stored, starting with the batch that holds
    /// the requested offset. Empty when there is nothing at or after it.
    pub records: Bytes,
    /// Offset up to which records are visible to consumers.
    pub(crate) high_watermark: i64,
    /// Offset below which every transaction is decided.
    pub(crate) last_stable_offset: i64,
    /// First offset still in the log.
    pub(crate) log_start_offset: i64,
    /// Under read_committed: the aborted transactions among `records`.
    pub(crate) aborted: Vec<AbortedTransaction>,
}

pub(super) struct Inner {
    pub(super) closed: Vec<SegmentMeta>,
    pub(super) active: ActiveSegment,
    producers: ProducerStates,
    pub(super) transactions: PartitionTransactions,
    /// Log start set by DeleteRecords (persisted in `log-start-offset`);
    /// the effective start is the larger of this and the first segment.
    pub(super) start_override: i64,
}

impl Inner {
    /// First offset in the log.
    pub(super) fn log_start_offset(&self) -> i64 {
        let first = self
            .closed
            .first()
            .map_or(self.active.meta.base_offset, |s| s.base_offset);
        first.max(self.start_override)
    }
}

/// File holding the DeleteRecords log start, in the partition directory.
pub(super) const LOG_START_FILE: &str = "log-start-offset";

#[derive(Default)]
struct SyncState {
    durable_offset: i64,
    flushing: bool,
}

/// Where a read goes: one segment's file from a position found in its index.
pub(super) struct ReadPlan {
    pub(super) path: PathBuf,
    pub(super) log: Arc<dyn super::IoFile>,
    pub(super) base_offset: i64,
    pub(super) size: u64,
    pub(super) start_position: u64,
}

/// A partition's log.
pub struct Partition {
    topic: String,
    id: i32,
    dir: PathBuf,
    context: PartitionContext,
    config: RwLock<Arc<TopicConfig>>,
    inner: Mutex<Inner>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    poison: OnceLock<String>,
    /// Serialises retention, compaction and truncation of one partition.
    pub(super) maintenance: Mutex<()>,
    high_watermark: watch::Sender<i64>,
    /// Records and bytes written (by clients and processors; markers and
    /// retried duplicates not counted) and fetched by clients (`/metrics`).
    traffic: crate::metrics::Traffic,
}

impl Partition {
    /// Opens (recovering) or creates the partition in `dir`.
    pub(crate) fn open(
        topic: &str,
        id: i32,
        dir: &Path,
        context: PartitionContext,
        config: Arc<TopicConfig>,
    ) -> Result<Self, LogError> {
        let io = context.io.as_ref();
        io.create_dir_all(dir)
            .map_err(|source| LogError::io(dir, source))?;
        let bases = list_segments(io, dir)?;
        let now_ms = context.clock.now_ms();
        let Opened {
            closed,
            mut active,
            producers,
            transactions,
        } = open_segments(&context, dir, &bases, now_ms)?;
        // Whatever survived recovery is made durable before it is served.
        active
            .sync_all()
            .map_err(|source| LogError::io(dir, source))?;
        let end = active.meta.next_offset;
        let start_path = dir.join(LOG_START_FILE);
        let start_override = match super::io::read_file(io, &start_path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes)
                .trim()
                .parse::<i64>()
                .map_err(|error| LogError::BadMetadata {
                    path: start_path.clone(),
                    reason: error.to_string(),
                })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => -1,
            Err(source) => return Err(LogError::io(&start_path, source)),
        };
        Ok(Self {
            topic: topic.to_string(),
            id,
            dir: dir.to_path_buf(),
            context,
            config: RwLock::new(config),
            inner: Mutex::new(Inner {
                closed,
                active,
                producers,
                transactions,
                start_override,
            }),
            sync: Mutex::new(SyncState {
                durable_offset: end,
                flushing: false,
            }),
            synced: Condvar::new(),
            poison: OnceLock::new(),
            maintenance: Mutex::new(()),
            high_watermark: watch::Sender::new(end),
            traffic: Default::default(),
        })
    }

    /// What was written to and fetched from this partition.
    pub(crate) fn traffic(&self) -> &crate::metrics::Traffic {
        &self.traffic
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }
    /// Partition number.
    pub(crate) fn id(&self) -> i32 {
        self.id
    }
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
    /// The topic config in force.
    pub(crate) fn config(&self) -> Arc<TopicConfig> {
        self.config.read().expect("config lock").clone()
    }
    /// Replaces the topic config (AlterConfigs).
    pub(crate) fn set_config(&self, config: Arc<TopicConfig>) {
        *self.config.write().expect("config lock") = config;
    }
    pub(super) fn context(&self) -> &PartitionContext {
        &self.context
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("partition lock")
    }

    /// Offset up to which records are visible: with `flush = always` only
    /// what is fsynced, otherwise everything written.
    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }
    /// The high watermark and the last stable offset (the first offset of
    /// the oldest open transaction, or the high watermark).
    pub(crate) fn watermarks(&self) -> (i64, i64) {
        let (high_watermark, last_stable_offset, _) = self.offsets();
        (high_watermark, last_stable_offset)
    }
    /// The high watermark, the last stable offset and the log start offset.
    pub(super) fn offsets(&self) -> (i64, i64, i64) {
        // The high watermark first: a transactional write acknowledged
        // between the two reads is then seen as open (an LSO too low for
        // a moment), never as below the high watermark with no open
        // transaction (an LSO too high, exposing uncommitted records).
        let high_watermark = self.high_watermark();
        let inner = self.lock();
        let first_open = inner.transactions.first_open_offset();
        // Retention or DeleteRecords may have removed an open
        // transaction's first batches: never below the log start (Kafka's
        // `max(firstUnstableOffset, logStartOffset)`).
        let log_start_offset = inner.log_start_offset();
        drop(inner);
        let stable = first_open.map_or(high_watermark, |first| {
            first.max(log_start_offset).min(high_watermark)
        });
        (high_watermark, stable, log_start_offset)
    }
    /// The last stable offset: read_committed consumers read below it.
    pub(crate) fn last_stable_offset(&self) -> i64 {
        self.watermarks().1
    }
    /// Whether `producer_id` has a transaction open here.
    pub(crate) fn has_open_transaction(&self, producer_id: i64) -> bool {
        self.lock().transactions.is_open(producer_id)
    }
    /// `producer_id`'s open transaction here: its first offset and the
    /// epoch the producer last wrote with.
    pub(crate) fn open_transaction(&self, producer_id: i64) -> Option<(i64, i16)> {
        let inner = self.lock();
        let first = inner.transactions.first_offset_of(producer_id)?;
        Some((first, inner.producers.epoch(producer_id).unwrap_or(0)))
    }
    /// Producers with a transaction open here, each with the epoch it last
    /// wrote with (0 if it is no longer remembered).
    pub(crate) fn open_transactions(&self) -> Vec<(i64, i16)> {
        let inner = self.lock();
        inner
            .transactions
            .open_producers()
            .map(|producer_id| (producer_id, inner.producers.epoch(producer_id).unwrap_or(0)))
            .collect()
    }
    /// The producers that wrote here and are still remembered.
    pub(crate) fn producer_ids(&self) -> Vec<i64> {
        self.lock().producers.ids().collect()
    }

    /// A receiver woken whenever the high watermark moves (for long polls;
    /// the last stable offset moves only with a marker, which moves the
    /// high watermark too).
    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }
    /// First offset in the log.
    pub(crate) fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset()
    }
    /// Offset the next append gets.
    pub fn log_end_offset(&self) -> i64 {
        self.lock().active.meta.next_offset
    }
    /// Offset below which everything is fsynced.
    #[cfg(test)]
    pub(crate) fn durable_offset(&self) -> i64 {
        self.sync.lock().expect("sync lock").durable_offset
    }
    /// Bytes on disk in log files.
    pub(crate) fn size_bytes(&self) -> u64 {
        let inner = self.lock();
        inner.closed.iter().map(|meta| meta.size).sum::<u64>() + inner.active.meta.size
    }
    /// Number of segments, the active one included.
    pub(crate) fn segment_count(&self) -> usize {
        self.lock().closed.len() + 1
    }
    /// Why the partition refuses writes, if it does.
    /// Decodes one whole batch read from this partition into records,
    /// decompressing within `decompressed_batch_bytes_max` and validating
    /// every record (see `log::records`).
    pub(crate) fn decode_batch(
        &self,
        batch: &Bytes,
    ) -> Result<Vec<super::records::StoredRecord>, BatchError> {
        super::records::decode(batch, self.context.decompressed_batch_bytes_max)
    }

    pub(crate) fn poisoned(&self) -> Option<&str> {
        self.poison.get().map(String::as_str)
    }

    pub(super) fn poison_with(&self, reason: String) -> LogError {
        tracing::error!(topic = %self.topic, partition = self.id, %reason,
            "partition poisoned: refusing writes until restart");
        let _ = self.poison.set(reason);
        self.poisoned_error()
    }

    fn poisoned_error(&self) -> LogError {
        LogError::Poisoned {
            topic: self.topic.clone(),
            partition: self.id,
            reason: self.poison.get().cloned().unwrap_or_default(),
        }
    }

    /// Appends one or more batches as a producer sent them. Verifies every
    /// batch (CRC, structure, size) first; on any error nothing is written.
    /// Returns once the batches are durable per the flush policy.
    pub fn append(&self, records: &[u8]) -> Result<AppendInfo, LogError> {
        let info = self.write_batches(records)?;
        self.acknowledge(&info)?;
        Ok(info)
    }

    /// The first half of [`Partition::append`]: verifies and writes, so the
    /// batches have their offsets, but does not wait for durability. Lets a
    /// connection order its writes while their fsyncs overlap.
    pub(crate) fn write_batches(&self, records: &[u8]) -> Result<AppendInfo, LogError> {
        self.write_checked(records, false)
    }

    /// [`Partition::write_batches`] for batches the broker encoded itself
    /// (a processor's outputs): their headers and sizes are checked, but
    /// neither their CRCs nor their records again, which the encoder has
    /// just built (a tenth of the time of a processor's forwarding loop).
    /// Debug builds, and so every test, still check everything.
    pub(crate) fn write_encoded(&self, records: &[u8]) -> Result<AppendInfo, LogError> {
        if cfg!(debug_assertions) {
            return self.write_batches(records);
        }
        let config = self.config();
        let headers = batch::encoded_headers(records).map_err(LogError::Batch)?;
        check_sizes(&headers, &config)?;
        self.write(records, headers, &config, None)
    }

    /// [`Partition::write_batches`] for a Kafka Produce: on a compacted
    /// topic every record must also have a key (Kafka's rule), checked in
    /// the same walk over the records, so a batch is decompressed once.
    pub(crate) fn write_produced(&self, records: &[u8]) -> Result<AppendInfo, LogError> {
        self.write_checked(records, true)
    }

    /// Checks and writes with one read of the topic config; with
    /// `produced`, a compacted topic's records must have keys.
    fn write_checked(&self, records: &[u8], produced: bool) -> Result<AppendInfo, LogError> {
        let config = self.config();
        let headers = self.check(records, &config, produced)?;
        self.write(records, headers, &config, None)
    }

    /// The first half of [`Partition::write_produced`]: every check of a
    /// produced buffer (CRCs, sizes, records, keys on a compacted topic),
    /// without the partition lock. Lets a caller hold another lock (a
    /// transactional id's) only around the write itself.
    pub(crate) fn check_produced(&self, records: &[u8]) -> Result<Checked, LogError> {
        let headers = self.check(records, &self.config(), true)?;
        Ok(Checked { headers })
    }

    fn check(
        &self,
        records: &[u8],
        config: &TopicConfig,
        produced: bool,
    ) -> Result<Vec<BatchHeader>, LogError> {
        let headers = batch::verify_produced(records).map_err(LogError::Batch)?;
        check_sizes(&headers, config)?;
        // After the size check: only batches of an accepted size are
        // decompressed (and within a bound even then).
        batch::validate_records(
            records,
            &headers,
            self.context.decompressed_batch_bytes_max,
            produced && config.cleanup_policy.compacts(),
        )
        .map_err(LogError::Batch)?;
        Ok(headers)
    }

    /// The second half: writes `records` that [`Partition::check_produced`]
    /// accepted (`checked`).
    pub(crate) fn write_verified(
        &self,
        records: &[u8],
        checked: Checked,
    ) -> Result<AppendInfo, LogError> {
        // The config may have changed while the caller waited for its lock:
        // the size limit is checked again against the one in force (cheap:
        // headers only). A switch to compaction needs nothing more, as
        // compaction keeps records without a key.
        let config = self.config();
        check_sizes(&checked.headers, &config)?;
        self.write(records, checked.headers, &config, None)
    }

    /// Writes a transaction marker (a control batch from the transaction
    /// coordinator) for `marker`'s producer, ending its transaction here.
    /// Never refused for its epoch (the coordinator is the authority on
    /// it; see `producers.rs`). Like [`Partition::write_batches`], it does
    /// not wait for durability.
    pub(crate) fn write_marker(&self, marker: &Marker) -> Result<AppendInfo, LogError> {
        let config = self.config();
        let records = marker.encode(self.context.clock.now_ms());
        let header = batch::verify(&records).map_err(LogError::Batch)?;
        self.write(&records, vec![header], &config, Some(marker.commit))
    }

    /// Whether [`Partition::acknowledge`] may block (waits for an fsync).
    pub(crate) fn acknowledge_blocks(&self) -> bool {
        self.context.flush == FlushPolicy::Always
    }

    /// The second half of [`Partition::append`]: returns once the written
    /// batches are durable under the flush policy, and makes them visible.
    pub(crate) fn acknowledge(&self, info: &AppendInfo) -> Result<(), LogError> {
        match self.context.flush {
            FlushPolicy::Always => self.wait_durable(info.last_offset + 1),
            FlushPolicy::Interval { .. } | FlushPolicy::Never => {
                self.high_watermark.send_if_modified(|hw| {
                    let moved = *hw < info.last_offset + 1;
                    *hw = (*hw).max(info.last_offset + 1);
                    moved
                });
                Ok(())
            }
        }
    }

    /// Like [`Partition::acknowledge`], but fsyncs whatever the flush policy
    /// (group commit with other waiters): for writes that something durable
    /// will depend on, such as a processor's outputs before its input
    /// offset is committed.
    pub(crate) fn acknowledge_durable(&self, info: &AppendInfo) -> Result<(), LogError> {
        self.wait_durable(info.last_offset + 1)?;
        // Under `interval` and `never` the fsync does not make them visible.
        self.acknowledge(info)
    }

    /// Assigns offsets and writes, all under the partition lock; a retry of
    /// a batch already written answers with its original offsets.
    fn write(
        &self,
        records: &[u8],
        mut headers: Vec<BatchHeader>,
        config: &TopicConfig,
        marker: Option<bool>,
    ) -> Result<AppendInfo, LogError> {
        let now_ms = self.context.clock.now_ms();
        let mut inner = self.lock();
        if self.poison.get().is_some() {
            return Err(self.poisoned_error());
        }
        self.check_live()?;
        if let Some(open) = headers.iter().find(|h| {
            h.producer_id >= 0 && !h.is_transactional() && inner.transactions.is_open(h.producer_id)
        }) {
            return Err(LogError::TransactionOpen {
                producer_id: open.producer_id,
            });
        }
        if let Some(duplicate) = check_sequences(&inner.producers, &headers)? {
            return Ok(AppendInfo {
                base_offset: duplicate.0,
                last_offset: duplicate.1,
                log_append_time_ms: -1,
                log_start_offset: inner.log_start_offset(),
            });
        }
        let count: i64 = headers.iter().map(|h| h.last_offset_delta as i64 + 1).sum();
        if self.should_roll(
            &inner.active.meta,
            records.len() as u64,
            count,
            config,
            now_ms,
        ) {
            self.roll(&mut inner, now_ms)?;
        }
        let base_offset = inner.active.meta.next_offset;
        let append_time = config.message_timestamp_type == TimestampType::LogAppendTime;
        let next_offset = assign_offsets(&mut headers, base_offset, append_time.then_some(now_ms));
        self.write_to_active(&mut inner, records, &headers, append_time, now_ms)?;
        if marker.is_none() {
            self.traffic
                .produced(count.max(0) as u64, records.len() as u64);
        }
        for header in &headers {
            inner.producers.record(header, now_ms);
            inner.transactions.on_batch(header, marker);
        }
        if marker == Some(false) {
            // Aborts are remembered until retention removes them.
            let log_start_offset = inner.log_start_offset();
            inner.transactions.forget_before(log_start_offset);
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            log_append_time_ms: if append_time { now_ms } else { -1 },
            log_start_offset: inner.log_start_offset(),
        })
    }

    /// Writes batches that carry their assigned offsets (`headers`) to the
    /// active segment; the caller holds the partition lock (`inner`).
    fn write_to_active(
        &self,
        inner: &mut Inner,
        records: &[u8],
        headers: &[BatchHeader],
        append_time: bool,
        now_ms: i64,
    ) -> Result<(), LogError> {
        // The broker's changes to a batch: its base offset, which precedes
        // the CRC'd bytes and so goes out as a separate 8-byte part (no copy
        // of the batch); for LogAppendTime also the timestamp and CRC, which
        // need a rewritten copy.
        let offsets: Vec<[u8; 8]> = headers
            .iter()
            .map(|h| h.base_offset.to_be_bytes())
            .collect();
        let stamped = append_time.then(|| stamp_append_time(records, headers, now_ms));
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * headers.len());
        match &stamped {
            Some(copy) => parts.push(copy),
            None => {
                let mut position = 0;
                for (header, offset) in headers.iter().zip(&offsets) {
                    parts.push(offset);
                    parts.push(&records[position + 8..position + header.total_bytes()]);
                    position += header.total_bytes();
                }
            }
        }
        let start = inner.active.meta.size;
        match inner.active.append(&parts, headers, now_ms) {
            Ok(()) => Ok(()),
            Err(error) => Err(self.undo_partial_write(inner, start, error)),
        }
    }

    /// After a failed append to the active segment, which was `start` bytes
    /// long before it: the error to return.
    fn undo_partial_write(&self, inner: &mut Inner, start: u64, error: std::io::Error) -> LogError {
        // A failed append counts nothing (the segment updates its size
        // and indexes only after the write), but part of the bytes may
        // be on disk: cut them off so the log stays a sequence of whole
        // batches; if even that fails, stop writing to this partition.
        debug_assert_eq!(
            inner.active.meta.size, start,
            "a failed append counted bytes"
        );
        match inner.active.log.set_len(start) {
            Ok(()) => LogError::io(&self.dir, error),
            Err(_) => self.poison_with(format!("write failed and could not be undone: {error}")),
        }
    }

    fn should_roll(
        &self,
        active: &SegmentMeta,
        bytes: u64,
        records: i64,
        config: &TopicConfig,
        now_ms: i64,
    ) -> bool {
        if active.size == 0 {
            return false;
        }
        active.size + bytes > config.segment_bytes
            || now_ms - active.roll_timestamp >= config.segment_ms
            || active.next_offset + records - active.base_offset > u32::MAX as i64
            || active.size + bytes > u32::MAX as u64
    }

    /// Closes the active segment (fsyncing it) and opens a new one.
    pub(super) fn roll(&self, inner: &mut Inner, now_ms: i64) -> Result<(), LogError> {
        self.check_live()?;
        if let Err(error) = inner.active.sync_all() {
            return Err(self.poison_with(format!("fsync of rolled segment failed: {error}")));
        }
        let next_offset = inner.active.meta.next_offset;
        let active = ActiveSegment::create(
            self.context.io.as_ref(),
            &self.dir,
            next_offset,
            self.context.index_interval_bytes,
            now_ms,
        )?;
        let old = std::mem::replace(&mut inner.active, active);
        inner.closed.push(old.meta);
        tracing::debug!(topic = %self.topic, partition = self.id, base_offset = next_offset, "rolled segment");
        self.mark_durable(next_offset);
        Ok(())
    }

    pub(super) fn mark_durable(&self, offset: i64) {
        let mut sync = self.sync.lock().expect("sync lock");
        sync.durable_offset = sync.durable_offset.max(offset);
        drop(sync);
        if self.context.flush == FlushPolicy::Always {
            self.high_watermark.send_if_modified(|hw| {
                let moved = *hw < offset;
                *hw = (*hw).max(offset);
                moved
            });
        }
        self.synced.notify_all();
    }

    /// After a truncation: everything up to `end` is durable and visible,
    /// nothing after it exists.
    #[cfg(test)]
    pub(super) fn reset_end(&self, end: i64) {
        self.sync.lock().expect("sync lock").durable_offset = end;
        self.high_watermark.send_replace(end);
        self.synced.notify_all();
    }

    /// Makes everything below `offset` (at most the log end) durable,
    /// whatever the flush policy: for a reader whose own commit must not
    /// outlive what it read (a stateful processor's input).
    pub(crate) fn make_durable(&self, offset: i64) -> Result<(), LogError> {
        self.wait_durable(offset.min(self.log_end_offset()))
    }

    /// Blocks until everything below `offset` is fsynced (group commit).
    fn wait_durable(&self, offset: i64) -> Result<(), LogError> {
        let mut sync = self.sync.lock().expect("sync lock");
        loop {
            if self.poison.get().is_some() {
                return Err(self.poisoned_error());
            }
            if sync.durable_offset >= offset {
                return Ok(());
            }
            if sync.flushing {
                sync = self.synced.wait(sync).expect("sync lock");
                continue;
            }
            sync.flushing = true;
            drop(sync);
            let result = self.flush();
            sync = self.sync.lock().expect("sync lock");
            sync.flushing = false;
            // Waiters woken by this flush while it was still marked in flight
            // went back to sleep; those it did not cover must take over.
            self.synced.notify_all();
            result?;
        }
    }

    /// Fsyncs everything written so far; for the interval flusher and
    /// shutdown. A failure poisons the partition.
    pub(crate) fn flush(&self) -> Result<(), LogError> {
        let (log, end) = {
            let inner = self.lock();
            (inner.active.log.clone(), inner.active.meta.next_offset)
        };
        if let Err(error) = log.sync() {
            return Err(self.poison_with(format!("fsync failed: {error}")));
        }
        self.mark_durable(end);
        Ok(())
    }

    /// Fsyncs the active segment's log and indexes (clean shutdown).
    pub(crate) fn close(&self) -> Result<(), LogError> {
        let mut inner = self.lock();
        inner
            .active
            .sync_all()
            .map_err(|source| LogError::io(&self.dir, source))
    }

    /// Metadata of every segment, oldest first, the active one last.
    pub(crate) fn segment_metas(&self) -> Vec<SegmentMeta> {
        let inner = self.lock();
        inner
            .closed
            .iter()
            .cloned()
            .chain(std::iter::once(inner.active.meta.clone()))
            .collect()
    }
}

/// Refuses a batch larger than the topic's `max.message.bytes`.
fn check_sizes(headers: &[BatchHeader], config: &TopicConfig) -> Result<(), LogError> {
    match headers
        .iter()
        .find(|h| h.total_bytes() as u64 > config.max_message_bytes)
    {
        Some(large) => Err(LogError::TooLarge {
            bytes: large.total_bytes() as u64,
            max_bytes: config.max_message_bytes,
        }),
        None => Ok(()),
    }
}

/// Gives the batches consecutive offsets from `base_offset` and, with
/// `append_time_ms` (LogAppendTime), the broker's timestamp. Returns the
/// offset after the last record.
fn assign_offsets(
    headers: &mut [BatchHeader],
    base_offset: i64,
    append_time_ms: Option<i64>,
) -> i64 {
    let mut next_offset = base_offset;
    for header in headers {
        header.base_offset = next_offset;
        if let Some(now_ms) = append_time_ms {
            header.max_timestamp = now_ms;
        }
        next_offset = header.next_offset();
    }
    next_offset
}

/// A copy of `records` with each batch's offset set and stamped with the
/// broker's append time (`headers` already carry the assigned offsets).
fn stamp_append_time(records: &[u8], headers: &[BatchHeader], now_ms: i64) -> Vec<u8> {
    let mut copy = records.to_vec();
    let mut position = 0;
    for header in headers {
        let bytes = &mut copy[position..position + header.total_bytes()];
        batch::set_base_offset(bytes, header.base_offset);
        batch::set_log_append_time(bytes, now_ms);
        position += header.total_bytes();
    }
    copy
}
