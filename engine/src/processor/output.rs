//! Where outputs go: Kafka's default partitioner (murmur2 of the key), and
//! record batches built for the output partitions and appended through the
//! same path as Produce (verify, write, then wait until durable under the
//! broker's flush policy).
//!
//! A record with a null key goes to the partition with the input's
//! partition number, modulo the output's partition count, so a 1:1 map
//! between equally partitioned topics keeps records in their partition.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use crate::log::{batch, AppendInfo, LogError, LogStore, Partition};
use crate::protocol::partitioner::partition_for_key;

/// The partition Kafka's default partitioner picks for `key`; a null key
/// keeps the input's partition number (modulo `partitions`).
pub(crate) fn partition_for(key: Option<&[u8]>, input_partition: i32, partitions: i32) -> i32 {
    let partitions = partitions.max(1);
    match key {
        Some(key) => partition_for_key(key, partitions),
        None => input_partition.rem_euclid(partitions),
    }
}

/// One record on its way out.
#[derive(Debug, Clone)]
pub(crate) struct OutRecord {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<(String, Option<Bytes>)>,
    pub(crate) timestamp: i64,
}

impl OutRecord {
    /// Bytes this record counts against `output_bytes_per_batch_max`.
    pub(crate) fn payload_bytes(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }
}

/// Each output partition's last append: (topic, partition) → (partition,
/// what was appended).
pub(crate) type LastAppends = BTreeMap<(String, i32), (Arc<Partition>, AppendInfo)>;

/// Records grouped by output partition, in the order they were routed.
///
/// Routing a record costs no allocation and no lock once its topic has
/// been seen in this `Routed`: each topic's partition count is read from
/// the store once (a topic that gains partitions meanwhile gets them from
/// the next step on), and the records are grouped by topic, then by
/// partition, looked up by `&str`.
#[derive(Default)]
pub(crate) struct Routed {
    topics: BTreeMap<String, RoutedTopic>,
    pub(crate) records: u64,
}

/// One topic's records in a [`Routed`].
#[derive(Default)]
struct RoutedTopic {
    /// The topic's partition count, read on the first [`Routed::push`].
    partition_count: Option<i32>,
    partitions: BTreeMap<i32, Vec<OutRecord>>,
}

impl std::fmt::Debug for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routed")
            .field("records", &self.records)
            .finish()
    }
}

impl Routed {
    /// Adds `record` to its partition of `topic`.
    pub(crate) fn push(
        &mut self,
        store: &LogStore,
        topic: &str,
        input_partition: i32,
        record: OutRecord,
    ) -> Result<(), LogError> {
        let routed = self.topic_mut(topic);
        let partitions = match routed.partition_count {
            Some(count) => count,
            None => {
                let count = store
                    .topic(topic)
                    .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?
                    .partition_count();
                *routed.partition_count.insert(count)
            }
        };
        let partition = partition_for(record.key.as_deref(), input_partition, partitions);
        routed.partitions.entry(partition).or_default().push(record);
        self.records += 1;
        Ok(())
    }

    /// Adds `records` to partition `partition` of `topic`, chosen by the
    /// caller (a task's changelog partition is its own).
    pub(crate) fn push_to(&mut self, topic: &str, partition: i32, records: Vec<OutRecord>) {
        self.records += records.len() as u64;
        let routed = self.topic_mut(topic);
        routed
            .partitions
            .entry(partition)
            .or_default()
            .extend(records);
    }

    /// `topic`'s records, added if new (the name is copied only then).
    fn topic_mut(&mut self, topic: &str) -> &mut RoutedTopic {
        if !self.topics.contains_key(topic) {
            self.topics
                .insert(topic.to_string(), RoutedTopic::default());
        }
        self.topics.get_mut(topic).expect("inserted above")
    }

    /// The records by output partition, in (topic, partition) order, each
    /// partition's in routing order.
    pub(crate) fn into_partitions(self) -> impl Iterator<Item = ((String, i32), Vec<OutRecord>)> {
        self.topics.into_iter().flat_map(|(topic, routed)| {
            routed
                .partitions
                .into_iter()
                .map(move |(partition, records)| ((topic.clone(), partition), records))
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.topics.values().all(|t| t.partitions.is_empty())
    }

    /// Appends every partition's records and waits until they are durable.
    /// Each partition's records are written in order, in batches that stay
    /// under the topic's `max.message.bytes`.
    pub(crate) fn write(self, store: &LogStore) -> Result<(), LogError> {
        // Durable under every flush policy: the input offset committed
        // next is fsynced, so outputs that were only written could be lost
        // by a power cut while their inputs count as processed.
        for (_, (partition, last)) in self.append(store)? {
            partition.acknowledge_durable(&last)?;
        }
        Ok(())
    }

    /// Appends every partition's records (in order, in batches that stay
    /// under the topic's `max.message.bytes`) without waiting for anything;
    /// returns each partition's last append, whose acknowledgement covers
    /// the ones before it.
    pub(crate) fn append(self, store: &LogStore) -> Result<LastAppends, LogError> {
        let mut written = BTreeMap::new();
        for ((topic, id), mut records) in self.into_partitions() {
            let partition = store.partition(&topic, id)?;
            let budget = check_and_budget(&partition, &topic, &records)?;
            for range in chunks(&records, budget) {
                let encoded = encode(&mut records[range]);
                let info = partition.write_encoded(&encoded)?;
                written.insert((topic.clone(), id), (partition.clone(), info));
            }
        }
        Ok(written)
    }

    /// Payload bytes of every record (see [`OutRecord::payload_bytes`]).
    pub(crate) fn payload_bytes(&self) -> usize {
        self.topics
            .values()
            .flat_map(|t| t.partitions.values())
            .flatten()
            .map(OutRecord::payload_bytes)
            .sum()
    }
}

/// Refuses keyless records for a compacted output; returns the payload
/// budget of one batch (half the topic's `max.message.bytes`).
pub(crate) fn check_and_budget(
    partition: &Partition,
    topic: &str,
    records: &[OutRecord],
) -> Result<usize, LogError> {
    let config = partition.config();
    if config.cleanup_policy.compacts() && records.iter().any(|r| r.key.is_none()) {
        return Err(LogError::Batch(batch::BatchError::Invalid(format!(
            "output topic {topic} is compacted and a record has no key"
        ))));
    }
    Ok((config.max_message_bytes as usize)
        .saturating_sub(1024)
        .max(1024)
        / 2)
}

/// Splits `records` into runs of about `budget` payload bytes (at least one
/// record each).
pub(crate) fn chunks(records: &[OutRecord], budget: usize) -> Vec<Range<usize>> {
    let mut result = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, record) in records.iter().enumerate() {
        let size = record.payload_bytes() + 32;
        if index > start && bytes + size > budget {
            result.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        result.push(start..records.len());
    }
    result
}

/// One uncompressed v2 batch with base offset 0 (the log assigns offsets).
/// Takes the records' keys, values and headers (moved into the encoder,
/// not cloned: the first clone of a `Bytes` made from a `Vec` allocates a
/// shared header, one allocation and free more per key and value).
pub(crate) fn encode(records: &mut [OutRecord]) -> BytesMut {
    batch::build::encode(&kafka_records(records, None), Compression::None)
}

/// [`encode`] as a transactional batch of `producer_id` at `epoch`, its
/// records at sequences `base_sequence`, `base_sequence + 1`, ….
pub(crate) fn encode_transactional(
    records: &mut [OutRecord],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> BytesMut {
    let producer = (producer_id, producer_epoch, base_sequence);
    batch::build::encode(&kafka_records(records, Some(producer)), Compression::None)
}

/// The records to encode, plain or (with `(producer id, epoch, base
/// sequence)`) transactional, in one pass.
fn kafka_records(
    records: &mut [OutRecord],
    transactional: Option<(i64, i16, i32)>,
) -> Vec<kafka_protocol::records::Record> {
    records
        .iter_mut()
        .enumerate()
        .map(|(index, record)| {
            let headers = std::mem::take(&mut record.headers)
                .into_iter()
                .map(|(key, value)| (StrBytes::from_string(key), value))
                .collect::<IndexMap<_, _>>();
            let plain = batch::build::record(
                index,
                record.key.take(),
                record.value.take(),
                record.timestamp,
                headers,
            );
            match transactional {
                None => plain,
                Some((producer_id, producer_epoch, base_sequence)) => {
                    kafka_protocol::records::Record {
                        transactional: true,
                        producer_id,
                        producer_epoch,
                        sequence: base_sequence.wrapping_add(index as i32) & i32::MAX,
                        ..plain
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_keys_keep_the_partition_number() {
        assert_eq!(partition_for(None, 5, 3), 2);
        assert_eq!(partition_for(None, 1, 4), 1);
        // murmur2("foobar") = -790332482 (Kafka's UtilsTest).
        let keyed = partition_for(Some(b"foobar"), 0, 7);
        assert_eq!(keyed, (-790_332_482i32 & 0x7fff_ffff) % 7);
    }

    #[test]
    fn chunks_respect_the_budget() {
        let record = |n: usize| OutRecord {
            key: None,
            value: Some(Bytes::from(vec![0; n])),
            headers: vec![],
            timestamp: 0,
        };
        let mut records: Vec<_> = (0..10).map(|_| record(100)).collect();
        let split = chunks(&records, 300);
        assert!(split.len() > 3);
        assert_eq!(split.iter().map(|c| c.len()).sum::<usize>(), 10);
        let huge = vec![record(10_000)];
        assert_eq!(chunks(&huge, 300).len(), 1);
        let encoded = encode(&mut records);
        assert_eq!(batch::verify(&encoded).unwrap().records_count, 10);
    }
}
