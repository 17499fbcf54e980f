//! Helpers shared by the store-level tests: a data directory with an
//! injected clock and fault switchboard, batch builders with recognisable
//! values, and readers that decode what the store serves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context};
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};

use crate::log::batch::{self, build, BatchHeader};
use crate::log::{
    FaultIo, Faults, FlushPolicy, LogStore, ManualClock, Partition, StdIo, StoreOptions,
};

/// Where every test clock starts: a realistic epoch time in milliseconds.
pub(super) const START_MS: i64 = 1_700_000_000_000;

/// A data directory plus everything a store opened on it is given.
pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
    pub(super) clock: Arc<ManualClock>,
    pub(super) faults: Arc<Faults>,
    pub(super) options: StoreOptions,
}

impl Fixture {
    /// Default options with `flush`.
    pub(super) fn new(flush: FlushPolicy) -> Self {
        Self::with_options(StoreOptions {
            flush,
            ..StoreOptions::default()
        })
    }

    pub(super) fn with_options(options: StoreOptions) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
            clock: Arc::new(ManualClock::new(START_MS)),
            faults: Faults::new(),
            options,
        }
    }

    /// Opens the store through [`FaultIo`] wired to `self.faults`.
    pub(super) fn open(&self) -> anyhow::Result<LogStore> {
        let io = Arc::new(FaultIo::new(self.faults.clone()));
        Ok(LogStore::open(
            self.dir.path(),
            self.options.clone(),
            io,
            self.clock.clone(),
        )?)
    }

    /// Opens the store on the real file system, as after a restart.
    pub(super) fn open_std(&self) -> anyhow::Result<LogStore> {
        Ok(LogStore::open(
            self.dir.path(),
            self.options.clone(),
            Arc::new(StdIo),
            self.clock.clone(),
        )?)
    }

    pub(super) fn now_ms(&self) -> i64 {
        crate::log::Clock::now_ms(self.clock.as_ref())
    }

    /// Directory of one partition (of the topic's current incarnation).
    pub(super) fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        topic_dir(self.dir.path(), topic).join(partition.to_string())
    }
}

/// The directory of `topic` in the data directory `data_dir`: the one whose
/// `topic.json` names it.
pub(super) fn topic_dir(data_dir: &Path, topic: &str) -> PathBuf {
    let topics = data_dir.join("topics");
    std::fs::read_dir(&topics)
        .expect("topics directory")
        .map(|entry| entry.expect("directory entry").path())
        .find(|dir| {
            let meta = std::fs::read(dir.join("topic.json")).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&meta)
                .is_ok_and(|meta| meta["name"] == topic)
        })
        .unwrap_or_else(|| panic!("no directory of topic {topic} in {}", topics.display()))
}

/// Topic config overrides from Kafka names.
pub(super) fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The value of record `index` of a batch tagged `tag`: the tag and index,
/// padded to `value_bytes`, so that every record of a test is recognisable.
pub(super) fn value(tag: &str, index: usize, value_bytes: usize) -> Vec<u8> {
    let mut value = format!("{tag}/{index}").into_bytes();
    if value.len() < value_bytes {
        value.resize(value_bytes, b'.');
    }
    value
}

/// A batch of `count` unkeyed records with recognisable values.
pub(super) fn values_batch(
    tag: &str,
    count: usize,
    value_bytes: usize,
    timestamp: i64,
) -> BytesMut {
    let entries: Vec<build::Entry> = (0..count)
        .map(|index| (None, Some(value(tag, index, value_bytes)), timestamp))
        .collect();
    build::batch(&entries, Compression::None)
}

/// A batch of keyed records: `(key, value)` with `None` value a tombstone.
pub(super) fn keyed_batch(
    records: &[(Option<&str>, Option<&str>)],
    timestamp: i64,
    compression: Compression,
) -> BytesMut {
    let entries: Vec<build::Entry> = records
        .iter()
        .map(|(key, value)| {
            (
                key.map(|key| key.as_bytes().to_vec()),
                value.map(|value| value.as_bytes().to_vec()),
                timestamp,
            )
        })
        .collect();
    build::batch(&entries, compression)
}

/// Splits served bytes into verified batches (CRC included).
pub(super) fn split(records: &[u8]) -> anyhow::Result<Vec<(BatchHeader, Bytes)>> {
    let mut batches = Vec::new();
    let mut position = 0;
    while position < records.len() {
        let header = batch::verify(&records[position..])
            .with_context(|| format!("served batch at byte {position} does not verify"))?;
        let end = position + header.total_bytes();
        batches.push((header, Bytes::copy_from_slice(&records[position..end])));
        position = end;
    }
    Ok(batches)
}

/// Decodes served bytes into records with the kafka-protocol decoder.
pub(super) fn decode(records: &Bytes) -> anyhow::Result<Vec<Record>> {
    let mut buf = records.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).context("served records do not decode")?;
    Ok(sets.into_iter().flat_map(|set| set.records).collect())
}

/// Every record from the log start to the high watermark, read in chunks of
/// about `max_bytes`, checking that each read makes progress.
pub(super) fn read_all(partition: &Partition, max_bytes: usize) -> anyhow::Result<Vec<Record>> {
    let mut records = Vec::new();
    let mut offset = partition.log_start_offset();
    let high_watermark = partition.high_watermark();
    while offset < high_watermark {
        let read = partition.read(offset, max_bytes)?;
        let batches = split(&read.records)?;
        let Some((last, _)) = batches.last() else {
            break;
        };
        ensure!(
            last.next_offset() > offset,
            "read at {offset} made no progress"
        );
        offset = last.next_offset();
        records.extend(decode(&read.records)?);
    }
    Ok(records)
}

/// `(offset, key, value)` of records, for comparisons.
pub(super) fn keyed(records: &[Record]) -> Vec<(i64, Option<String>, Option<String>)> {
    let text = |bytes: &Option<Bytes>| {
        bytes
            .as_ref()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    };
    records
        .iter()
        .map(|record| (record.offset, text(&record.key), text(&record.value)))
        .collect()
}

/// Files in `dir` with extension `suffix`, sorted by name.
pub(super) fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("partition directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().and_then(|ext| ext.to_str()) == Some(suffix))
        .collect();
    files.sort();
    files
}

/// Every entry of the active segment's in-memory index points at the start
/// of a batch of the log with the offset it names, every time entry
/// belongs to such a batch, and entries strictly increase.
pub(super) fn check_active_index(partition: &Partition) -> anyhow::Result<()> {
    let inner = partition.lock();
    let active = &inner.active;
    let offsets = &active.index.offsets;
    ensure!(
        offsets
            .windows(2)
            .all(|pair| pair[0].relative_offset < pair[1].relative_offset
                && pair[0].position < pair[1].position),
        "active offset index does not strictly increase: {offsets:?}"
    );
    let times = &active.index.times;
    ensure!(
        times
            .windows(2)
            .all(|pair| pair[0].timestamp < pair[1].timestamp
                && pair[0].relative_offset < pair[1].relative_offset),
        "active time index does not strictly increase: {times:?}"
    );
    for entry in times {
        ensure!(
            offsets
                .iter()
                .any(|offset| offset.relative_offset == entry.relative_offset),
            "time index entry {entry:?} has no offset index entry for its batch"
        );
    }
    for entry in offsets {
        ensure!(
            u64::from(entry.position) + batch::HEADER_BYTES as u64 <= active.meta.size,
            "index entry {entry:?} points past the end of the log ({} bytes)",
            active.meta.size
        );
        let mut header = [0u8; batch::HEADER_BYTES];
        active
            .log
            .read_exact_at(&mut header, u64::from(entry.position))?;
        let header = BatchHeader::parse(&header)?;
        ensure!(
            header.base_offset == active.meta.base_offset + i64::from(entry.relative_offset),
            "index entry {entry:?} points at batch {}",
            header.base_offset
        );
    }
    Ok(())
}
