//! A partition's side of Kafka transactions: the markers that end them,
//! which producers have a transaction open here, the last stable offset
//! (LSO) and the aborted transactions a read_committed consumer must drop.
//!
//! A transaction is open in a partition from its producer's first
//! transactional batch until the coordinator writes a marker (a control
//! batch) for that producer. The LSO is the first offset of the oldest
//! open transaction, or the high watermark when none is open:
//! read_committed consumers read below it only. An abort marker adds the
//! transaction's range (first offset, marker offset) to the aborted list,
//! which Fetch hands to read_committed clients so they drop those records,
//! as Kafka's `.txnindex` does.
//!
//! All of it is rebuilt on open from the log itself (markers included), in
//! the same walk over the batch headers that rebuilds idempotent producers'
//! state, so there is no separate index file to keep consistent. Memory: one
//! entry per producer with an open transaction here (transactional batches
//! are written only through the transaction coordinator, so at most one
//! per transactional id, `transactions.transactional_ids_max`) and one 24-byte
//! entry per aborted transaction still in the log (each costs a marker batch
//! of at least 78 bytes on disk, so the list is bounded by the log and
//! shrinks with retention).
//!
//! A marker is Kafka's `EndTransactionMarker`: a control batch (attributes
//! transactional | control) with the producer's id and epoch, base sequence
//! −1 and one record whose key is `version i16 = 0, type i16` (0 abort,
//! 1 commit) and whose value is `version i16 = 0, coordinator_epoch i32`.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::batch::BatchHeader;

/// Marker record key type of an abort.
const ABORT: i16 = 0;
/// Marker record key type of a commit.
const COMMIT: i16 = 1;

/// What ends a producer's transaction in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    /// Commit, or abort.
    pub(crate) commit: bool,
    /// The coordinator's epoch (always 0: one node, never moves).
    pub(crate) coordinator_epoch: i32,
}

impl Marker {
    /// The control batch (base offset 0, assigned on append).
    pub(crate) fn encode(&self, timestamp_ms: i64) -> BytesMut {
        let kind = if self.commit { COMMIT } else { ABORT };
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&kind.to_be_bytes());
        let mut value = Vec::with_capacity(6);
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&self.coordinator_epoch.to_be_bytes());
        let record = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: timestamp_ms,
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(value)),
            headers: IndexMap::new(),
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            std::iter::once(&record),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encoding a marker into memory cannot fail");
        buf
    }
}

/// Whether the control batch `batch` is a commit marker (`Some(true)`),
/// an abort marker (`Some(false)`), or not a marker Sluice knows (`None`:
/// other control types are passed through and ignored, as Kafka ignores
/// unknown control records).
pub(crate) fn marker_kind(batch: &Bytes) -> Option<bool> {
    let records = super::records::decode(batch, batch.len()).ok()?;
    let key = records.first()?.key.as_ref()?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        ABORT => Some(false),
        COMMIT => Some(true),
        _ => None,
    }
}

/// An aborted transaction's range in a partition, as Fetch lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedTransaction {
    pub(crate) producer_id: i64,
    /// Offset of its first batch here.
    pub(crate) first_offset: i64,
    /// Offset of its abort marker.
    pub(crate) last_offset: i64,
}

/// Aborted transactions by producer, to ask of a batch whether it belongs
/// to one in O(log n): compaction asks it of every batch of a partition
/// that may hold many aborted transactions.
#[derive(Debug, Default)]
pub(crate) struct AbortedIndex {
    /// Producer id → (first offset, marker offset), by marker offset.
    by_producer: HashMap<i64, Vec<(i64, i64)>>,
}

impl AbortedIndex {
    /// The index of `aborted` (in marker offset order, as reads return it).
    pub(crate) fn new(aborted: &[AbortedTransaction]) -> Self {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for a in aborted {
            by_producer
                .entry(a.producer_id)
                .or_default()
                .push((a.first_offset, a.last_offset));
        }
        Self { by_producer }
    }

    /// Whether the data batch with `header` belongs to an aborted
    /// transaction: it is transactional, from that transaction's producer,
    /// and lies between the transaction's first offset and its abort
    /// marker. A producer has one transaction open at a time in a
    /// partition, so that range holds no other transaction of its.
    pub(crate) fn contains(&self, header: &BatchHeader) -> bool {
        if !header.is_transactional() || header.is_control() {
            return false;
        }
        let Some(ranges) = self.by_producer.get(&header.producer_id) else {
            return false;
        };
        // The first range whose marker is after the batch.
        let at = ranges.partition_point(|(_, last)| *last <= header.base_offset);
        ranges
            .get(at)
            .is_some_and(|(first, _)| *first <= header.base_offset)
    }
}

/// Open and aborted transactions of one partition (see the module header).
#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionTransactions {
    /// Producer id → first offset of its open transaction here.
    open: HashMap<i64, i64>,
    /// Aborted transactions by ascending marker offset.
    aborted: VecDeque<AbortedTransaction>,
}

impl PartitionTransactions {
    /// Takes note of a batch appended (or found on recovery) with its
    /// assigned offsets; `marker` is the marker kind of a control batch.
    pub(crate) fn on_batch(&mut self, header: &BatchHeader, marker: Option<bool>) {
        if header.producer_id < 0 || !header.is_transactional() {
            return;
        }
        if !header.is_control() {
            self.open
                .entry(header.producer_id)
                .or_insert(header.base_offset);
            return;
        }
        let Some(commit) = marker else { return };
        let Some(first_offset) = self.open.remove(&header.producer_id) else {
            return;
        };
        if !commit {
            self.aborted.push_back(AbortedTransaction {
                producer_id: header.producer_id,
                first_offset,
                last_offset: header.base_offset,
            });
        }
    }

    /// First offset of the oldest open transaction.
    pub(crate) fn first_open_offset(&self) -> Option<i64> {
        self.open.values().copied().min()
    }

    /// Whether `producer_id` has a transaction open here.
    pub(crate) fn is_open(&self, producer_id: i64) -> bool {
        self.open.contains_key(&producer_id)
    }

    /// The first offset of `producer_id`'s open transaction here.
    pub(crate) fn first_offset_of(&self, producer_id: i64) -> Option<i64> {
        self.open.get(&producer_id).copied()
    }

    /// Producers with a transaction open here.
    pub(crate) fn open_producers(&self) -> impl Iterator<Item = i64> + '_ {
        self.open.keys().copied()
    }

    /// Aborted transactions that overlap `[from, to)`.
    pub(crate) fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTransaction> {
        // Markers come in offset order: skip those before `from`.
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        // In marker order, as Kafka lists them (its transaction index is
        // appended at each abort). Clients sort the list themselves, except
        // kafkajs, which walks it beside the records one entry per record:
        // overlapping aborted transactions of several producers can then
        // let records through or hide some in either order (README,
        // Kafka compatibility).
        self.aborted
            .range(start..)
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below `log_start_offset`
    /// (retention or DeleteRecords removed them).
    pub(crate) fn forget_before(&mut self, log_start_offset: i64) {
        while self
            .aborted
            .front()
            .is_some_and(|a| a.last_offset < log_start_offset)
        {
            self.aborted.pop_front();
        }
    }

    /// Aborted transactions remembered.
    #[cfg(test)]
    fn aborted_count(&self) -> usize {
        self.aborted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch;

    fn header_of(bytes: &[u8], base_offset: i64) -> BatchHeader {
        let mut header = batch::verify(bytes).unwrap();
        header.base_offset = base_offset;
        header
    }

    #[test]
    fn markers_round_trip_and_are_control_batches() {
        for commit in [true, false] {
            let marker = Marker {
                producer_id: 7,
                producer_epoch: 3,
                commit,
                coordinator_epoch: 0,
            };
            let bytes = marker.encode(1_000).freeze();
            let header = batch::verify(&bytes).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (7, 3));
            assert_eq!(header.base_sequence, -1);
            assert_eq!(marker_kind(&bytes), Some(commit));
        }
    }

    #[test]
    fn open_aborted_and_stable_offsets() {
        let data = |producer_id: i64| {
            let mut header = header_of(
                &Marker {
                    producer_id,
                    producer_epoch: 0,
                    commit: true,
                    coordinator_epoch: 0,
                }
                .encode(0),
                0,
            );
            header.attributes &= !(1 << 5); // a transactional data batch
            header
        };
        let marker = |producer_id: i64, commit: bool, offset: i64| {
            header_of(
                &Marker {
                    producer_id,
                    producer_epoch: 0,
                    commit,
                    coordinator_epoch: 0,
                }
                .encode(0),
                offset,
            )
        };
        let mut state = PartitionTransactions::default();
        let at = |producer: i64, offset: i64| {
            let mut header = data(producer);
            header.base_offset = offset;
            header
        };
        state.on_batch(&at(1, 10), None);
        state.on_batch(&at(2, 12), None);
        state.on_batch(&at(1, 13), None);
        assert_eq!(state.first_open_offset(), Some(10));
        state.on_batch(&marker(1, false, 14), Some(false));
        assert_eq!(state.first_open_offset(), Some(12));
        state.on_batch(&marker(2, true, 15), Some(true));
        assert_eq!(state.first_open_offset(), None);
        assert_eq!(
            state.aborted_between(0, 100),
            vec![AbortedTransaction {
                producer_id: 1,
                first_offset: 10,
                last_offset: 14
            }]
        );
        assert!(state.aborted_between(15, 100).is_empty());
        assert!(state.aborted_between(0, 10).is_empty());
        state.forget_before(15);
        assert_eq!(state.aborted_count(), 0);
    }
}
