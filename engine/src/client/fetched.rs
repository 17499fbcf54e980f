//! The records of one partition's Fetch answer, as a consumer shows them:
//! the complete v2 batches decoded, records before the fetch position left
//! out (a batch is returned whole), control records never shown, and under
//! read_committed the batches of aborted transactions dropped.
//!
//! Dropping aborted batches is the consumer's half of KIP-98 (Kafka's
//! `CompletedFetch`): a read_committed Fetch answer lists the aborted
//! transactions among its batches as (producer id, first offset). Walking
//! the batches in offset order, a producer joins the "aborted" set once a
//! batch reaches the first offset of one of its aborted transactions;
//! its transactional batches are then skipped until its abort marker (a
//! control batch) takes it out of the set again. A producer's commit
//! marker changes nothing, and non-transactional batches are always kept.
//! The broker never returns anything past the last stable offset to such
//! a fetch, so an open transaction is never seen at all.

use std::collections::HashSet;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::log::batch::{BatchError, BatchHeader, LOG_OVERHEAD_BYTES};

/// Control record type of an abort marker (the key is `version i16 |
/// type i16`; 0 abort, 1 commit).
const ABORT_MARKER_TYPE: i16 = 0;

/// What one partition's answer yields.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Records to show, in offset order.
    pub(crate) records: Vec<Record>,
    /// Where the next fetch starts: past the last complete batch, so
    /// batches with nothing to show (markers, aborted data) are not
    /// fetched again.
    pub(crate) next_offset: i64,
}

/// Decodes the complete batches of `raw` from offset `from`. `aborted` is
/// `None` when reading uncommitted (everything but control records is
/// shown), else the answer's aborted transactions (see the module header).
pub(crate) fn decode_batches(
    mut raw: Bytes,
    from: i64,
    aborted: Option<&[AbortedTransaction]>,
) -> Result<Fetched> {
    let mut filter = aborted.map(AbortFilter::new);
    let mut records = Vec::new();
    let mut next_offset = from;
    let mut complete = 0;
    let had_bytes = !raw.is_empty();
    while raw.len() >= LOG_OVERHEAD_BYTES {
        let header = match BatchHeader::parse(&raw) {
            Ok(header) if raw.len() >= header.total_bytes() => header,
            // The broker cut the last batch short at the size limit.
            Ok(_) | Err(BatchError::Truncated { .. }) => break,
            Err(error) => {
                let base_offset = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
                bail!("record batch at offset {base_offset}: {error}");
            }
        };
        let base_offset = header.base_offset;
        let mut batch = raw.split_to(header.total_bytes());
        complete += 1;
        next_offset = next_offset.max(header.next_offset());
        let decode = |batch: &mut Bytes| {
            RecordBatchDecoder::decode(batch)
                .with_context(|| format!("decoding the record batch at offset {base_offset}"))
        };
        if let Some(filter) = filter.as_mut() {
            if !filter.keeps(&header, || decode(&mut batch.clone()))? {
                continue;
            }
        }
        if header.is_control() {
            continue;
        }
        let set = decode(&mut batch)?;
        records.extend(
            set.records
                .into_iter()
                .filter(|r| !r.control && r.offset >= from),
        );
    }
    if had_bytes && complete == 0 {
        bail!("the record batch at offset {from} is larger than the fetch size per partition");
    }
    Ok(Fetched {
        records,
        next_offset,
    })
}

/// The read_committed walk over one answer's batches.
struct AbortFilter {
    /// Aborted transactions not reached yet, latest first offset first
    /// (so the next one to reach is at the end).
    pending: Vec<(i64, i64)>,
    /// Producers whose aborted transaction the walk is inside.
    aborted_producers: HashSet<i64>,
}

impl AbortFilter {
    fn new(aborted: &[AbortedTransaction]) -> Self {
        let mut pending: Vec<(i64, i64)> = aborted
            .iter()
            .map(|a| (a.first_offset, a.producer_id.0))
            .collect();
        pending.sort_unstable_by(|a, b| b.cmp(a));
        Self {
            pending,
            aborted_producers: HashSet::new(),
        }
    }

    /// Whether the batch with `header` may be shown; `decode` reads a
    /// control batch's marker.
    fn keeps(
        &mut self,
        header: &BatchHeader,
        decode: impl FnOnce() -> Result<kafka_protocol::records::RecordSet>,
    ) -> Result<bool> {
        let producer_id = header.producer_id;
        if producer_id < 0 {
            return Ok(true);
        }
        while let Some(&(first_offset, aborted_producer)) = self.pending.last() {
            if first_offset > header.last_offset() {
                break;
            }
            self.pending.pop();
            self.aborted_producers.insert(aborted_producer);
        }
        if header.is_control() {
            if is_abort_marker(&decode()?) {
                self.aborted_producers.remove(&producer_id);
            }
            return Ok(false);
        }
        Ok(!(header.is_transactional() && self.aborted_producers.contains(&producer_id)))
    }
}

/// Whether a control batch holds an abort marker.
fn is_abort_marker(set: &kafka_protocol::records::RecordSet) -> bool {
    set.records
        .first()
        .and_then(|record| record.key.as_ref())
        .filter(|key| key.len() >= 4)
        .is_some_and(|key| i16::from_be_bytes([key[2], key[3]]) == ABORT_MARKER_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ProducerId;
    use kafka_protocol::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn record(offset: i64, value: &str, control: bool) -> Record {
        Record {
            transactional: false,
            control,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32 - 1,
            timestamp: 1_700_000_000_000 + offset,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from(value.to_string())),
            headers: Default::default(),
        }
    }

    fn encode(raw: &mut bytes::BytesMut, records: &[Record], compression: Compression) {
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(raw, records.iter(), &options).unwrap();
    }

    /// A transactional batch of `producer_id` at `offsets`.
    fn transactional(producer_id: i64, offsets: std::ops::Range<i64>) -> Vec<Record> {
        offsets
            .map(|offset| Record {
                transactional: true,
                producer_id,
                producer_epoch: 0,
                sequence: 0,
                ..record(offset, &format!("p{producer_id}-{offset}"), false)
            })
            .collect()
    }

    /// A marker of `producer_id` at `offset`.
    fn marker(producer_id: i64, offset: i64, commit: bool) -> Vec<Record> {
        let key = [0, 0, 0, u8::from(commit)];
        vec![Record {
            transactional: true,
            control: true,
            producer_id,
            producer_epoch: 0,
            key: Some(Bytes::copy_from_slice(&key)),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
            ..record(offset, "", true)
        }]
    }

    fn aborted(producer_id: i64, first_offset: i64) -> AbortedTransaction {
        AbortedTransaction::default()
            .with_producer_id(ProducerId(producer_id))
            .with_first_offset(first_offset)
    }

    fn values(fetched: &Fetched) -> Vec<String> {
        fetched
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
            .collect()
    }

    #[test]
    fn batches_decode_from_the_position_and_skip_control_records() {
        let mut raw = bytes::BytesMut::new();
        let first: Vec<Record> = (10..13)
            .map(|o| record(o, &format!("v{o}"), false))
            .collect();
        encode(&mut raw, &first, Compression::Lz4);
        encode(&mut raw, &[record(13, "", true)], Compression::Lz4);
        let complete = raw.len();
        encode(&mut raw, &[record(14, "cut", false)], Compression::Lz4);
        raw.truncate(complete + 20);
        let fetched = decode_batches(raw.freeze(), 11, None).unwrap();
        let offsets: Vec<i64> = fetched.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [11, 12]);
        assert_eq!(
            fetched.next_offset, 14,
            "past the control batch, not into the cut one"
        );
    }

    #[test]
    fn a_lone_partial_batch_is_an_error() {
        let mut raw = bytes::BytesMut::new();
        encode(&mut raw, &[record(0, "v", false)], Compression::None);
        raw.truncate(raw.len() - 1);
        assert!(decode_batches(raw.freeze(), 0, None).is_err());
        assert_eq!(
            decode_batches(Bytes::new(), 5, None).unwrap().next_offset,
            5
        );
    }

    /// Two producers interleaved: 7 aborts, 8 commits; a plain record
    /// between them; then 7 again in a later transaction that commits.
    fn interleaved() -> Bytes {
        let mut raw = bytes::BytesMut::new();
        encode(&mut raw, &transactional(7, 0..2), Compression::None);
        encode(&mut raw, &transactional(8, 2..3), Compression::Zstd);
        encode(&mut raw, &[record(3, "plain", false)], Compression::None);
        encode(&mut raw, &transactional(7, 4..5), Compression::None);
        encode(&mut raw, &marker(8, 5, true), Compression::None);
        encode(&mut raw, &marker(7, 6, false), Compression::None);
        encode(&mut raw, &transactional(7, 7..8), Compression::None);
        encode(&mut raw, &marker(7, 8, true), Compression::None);
        raw.freeze()
    }

    #[test]
    fn read_committed_drops_aborted_transactions_until_their_marker() {
        let fetched = decode_batches(interleaved(), 0, Some(&[aborted(7, 0)])).unwrap();
        assert_eq!(values(&fetched), ["p8-2", "plain", "p7-7"]);
        assert_eq!(fetched.next_offset, 9);
        let everything = decode_batches(interleaved(), 0, None).unwrap();
        assert_eq!(
            values(&everything),
            ["p7-0", "p7-1", "p8-2", "plain", "p7-4", "p7-7"]
        );
    }

    #[test]
    fn an_aborted_transaction_counts_only_from_its_first_offset() {
        // Producer 7 commits 0..2, then aborts 3..5: only the second is listed.
        let mut raw = bytes::BytesMut::new();
        encode(&mut raw, &transactional(7, 0..2), Compression::None);
        encode(&mut raw, &marker(7, 2, true), Compression::None);
        encode(&mut raw, &transactional(7, 3..5), Compression::Gzip);
        encode(&mut raw, &marker(7, 5, false), Compression::None);
        let raw = raw.freeze();
        let fetched = decode_batches(raw.clone(), 0, Some(&[aborted(7, 3)])).unwrap();
        assert_eq!(values(&fetched), ["p7-0", "p7-1"]);
        assert_eq!(fetched.next_offset, 6);
        // Fetched from the middle of the aborted one: nothing to show.
        let fetched = decode_batches(raw.clone(), 4, Some(&[aborted(7, 3)])).unwrap();
        assert!(fetched.records.is_empty(), "{:?}", values(&fetched));
        // No aborted transactions listed: everything but markers.
        let fetched = decode_batches(raw, 0, Some(&[])).unwrap();
        assert_eq!(fetched.records.len(), 4);
    }
}
