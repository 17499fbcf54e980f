//! The producer side of Kafka transactions (KIP-98), spoken with the
//! kafka-protocol codecs over the CLI's `Connection`, so the benchmark's
//! load generator pays no client library's cost: FindCoordinator (key type
//! 1), InitProducerId with or without a transactional id, AddPartitionsToTxn,
//! transactional or idempotent Produce, EndTxn.
//!
//! Batches are built once per partition (1 KiB records carrying the
//! producer id and epoch, and the transactional flag) and reused: before
//! each send only the base sequence changes, so [`Batches::next`] patches
//! those 4 bytes and recomputes the CRC-32C that covers them instead of
//! encoding the records again. The idempotent baseline pays the same.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest, ProduceRequest,
    ProduceResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice::client::Connection;

use crate::kafka::{address, bootstrap, name};

/// Errors worth a retry: UNKNOWN_TOPIC_OR_PARTITION (3) while a new
/// topic's leaders settle, COORDINATOR_LOAD_IN_PROGRESS (14), and
/// CONCURRENT_TRANSACTIONS (51), which a broker that writes its markers
/// after answering EndTxn (Kafka) gives the next AddPartitionsToTxn until
/// they are written.
const RETRIABLE: [i16; 3] = [3, 14, 51];

/// Retries of one request, [`RETRY_BACKOFF`] apart, before giving up.
const RETRIES_MAX: u32 = 3000;
const RETRY_BACKOFF: Duration = Duration::from_millis(1);

/// Transaction timeout asked for in InitProducerId: long enough that the
/// broker never aborts a benchmark transaction on its own.
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;

/// A producer as InitProducerId made it.
#[derive(Debug, Clone)]
pub(crate) struct Producer {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    /// Set for a transactional producer, `None` for an idempotent one.
    pub(crate) transactional_id: Option<String>,
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// The address of `transactional_id`'s transaction coordinator.
pub(crate) async fn coordinator(brokers: &str, transactional_id: &str) -> anyhow::Result<String> {
    let mut connection = bootstrap(brokers).await?;
    for _ in 0..RETRIES_MAX {
        let request = FindCoordinatorRequest::default()
            .with_key(text(transactional_id))
            .with_key_type(1);
        let response = connection.call(request).await?;
        match response.error_code {
            0 => return Ok(address(&response.host, response.port)),
            // COORDINATOR_NOT_AVAILABLE while a cluster elects one.
            15 | 14 => tokio::time::sleep(RETRY_BACKOFF).await,
            code => bail!("FindCoordinator for {transactional_id}: error {code}"),
        }
    }
    bail!("FindCoordinator for {transactional_id}: still unavailable after retries")
}

/// InitProducerId: a transactional producer with `transactional_id`, an
/// idempotent one without.
pub(crate) async fn init_producer(
    connection: &mut Connection,
    transactional_id: Option<&str>,
) -> anyhow::Result<Producer> {
    for _ in 0..RETRIES_MAX {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(transactional_id.map(|id| TransactionalId(text(id))))
            .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = connection.call(request).await?;
        match response.error_code {
            0 => {
                return Ok(Producer {
                    producer_id: response.producer_id.0,
                    producer_epoch: response.producer_epoch,
                    transactional_id: transactional_id.map(str::to_string),
                })
            }
            code if RETRIABLE.contains(&code) => tokio::time::sleep(RETRY_BACKOFF).await,
            code => bail!("InitProducerId ({transactional_id:?}): error {code}"),
        }
    }
    bail!("InitProducerId ({transactional_id:?}): still refused after retries")
}

fn transactional_id(producer: &Producer) -> anyhow::Result<TransactionalId> {
    let id = producer
        .transactional_id
        .as_deref()
        .context("not a transactional producer")?;
    Ok(TransactionalId(text(id)))
}

/// AddPartitionsToTxn: begins the transaction if none is open.
pub(crate) async fn add_partitions(
    connection: &mut Connection,
    producer: &Producer,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<()> {
    for _ in 0..RETRIES_MAX {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(transactional_id(producer)?)
            .with_v3_and_below_producer_id(ProducerId(producer.producer_id))
            .with_v3_and_below_producer_epoch(producer.producer_epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(name(topic))
                .with_partitions(partitions.to_vec())]);
        let response = connection.call(request).await?;
        let code = response
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|topic| &topic.results_by_partition)
            .map(|result| result.partition_error_code)
            .find(|code| *code != 0)
            .unwrap_or(0);
        match code {
            0 => return Ok(()),
            code if RETRIABLE.contains(&code) => tokio::time::sleep(RETRY_BACKOFF).await,
            code => bail!("AddPartitionsToTxn {topic}: error {code}"),
        }
    }
    bail!("AddPartitionsToTxn {topic}: still refused after retries")
}

/// EndTxn: commits (or aborts) the open transaction; returns once the
/// broker answers, which for Sluice is once the markers are durable.
pub(crate) async fn end_transaction(
    connection: &mut Connection,
    producer: &Producer,
    commit: bool,
) -> anyhow::Result<()> {
    let request = EndTxnRequest::default()
        .with_transactional_id(transactional_id(producer)?)
        .with_producer_id(ProducerId(producer.producer_id))
        .with_producer_epoch(producer.producer_epoch)
        .with_committed(commit);
    let response = connection.call(request).await?;
    if response.error_code != 0 {
        bail!("EndTxn (commit: {commit}): error {}", response.error_code);
    }
    Ok(())
}

/// A Produce request (acks=all) of `batches` (partition, batch) to
/// `topic`, with the producer's transactional id if it has one.
pub(crate) fn produce_request(
    producer: &Producer,
    topic: &str,
    batches: Vec<(i32, Bytes)>,
) -> ProduceRequest {
    let transactional_id = producer
        .transactional_id
        .as_deref()
        .map(|id| TransactionalId(text(id)));
    let partitions = batches
        .into_iter()
        .map(|(index, batch)| {
            PartitionProduceData::default()
                .with_index(index)
                .with_records(Some(batch))
        })
        .collect();
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_transactional_id(transactional_id)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(partitions)])
}

/// The first error code in a Produce response, 0 when every partition
/// succeeded.
pub(crate) fn produce_error(response: &ProduceResponse) -> i16 {
    response
        .responses
        .iter()
        .flat_map(|topic| &topic.partition_responses)
        .map(|partition| partition.error_code)
        .find(|code| *code != 0)
        .unwrap_or(0)
}

/// Byte positions in a v2 record batch header.
const CRC_AT: usize = 17;
/// The CRC covers everything from the attributes on.
const ATTRIBUTES_AT: usize = 21;
const BASE_SEQUENCE_AT: usize = 53;

/// One partition's batches of one producer (see the module header).
pub(crate) struct Batches {
    /// The batch, kept between sends; `None` while a send holds it.
    buffer: Option<BytesMut>,
    /// Records per batch.
    records: i32,
    /// Base sequence of the next batch.
    next_sequence: i32,
}

impl Batches {
    /// Batches of `records` records of `record_bytes` bytes each, stamped
    /// `timestamp_ms`, from `producer`.
    pub(crate) fn new(
        producer: &Producer,
        records: usize,
        record_bytes: usize,
        timestamp_ms: i64,
    ) -> Self {
        let value = Bytes::from(vec![b'x'; record_bytes]);
        let records: Vec<Record> = (0..records)
            .map(|index| Record {
                transactional: producer.transactional_id.is_some(),
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: producer.producer_id,
                producer_epoch: producer.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: index as i64,
                // Base sequence 0: the encoder takes sequence − offset.
                sequence: index as i32,
                timestamp: timestamp_ms,
                key: None,
                value: Some(value.clone()),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buffer = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buffer,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encoding records into memory cannot fail");
        Self {
            buffer: Some(buffer),
            records: records.len() as i32,
            next_sequence: 0,
        }
    }

    /// Records per batch.
    pub(crate) fn records(&self) -> u64 {
        self.records as u64
    }

    /// The next batch, with its base sequence; hand it back with
    /// [`Batches::reuse`] once the request that sent it is gone. The
    /// sequence wraps after `i32::MAX`, as Kafka's does.
    pub(crate) fn next(&mut self) -> Bytes {
        let mut buffer = self.buffer.take().expect("the batch was handed back");
        set_base_sequence(&mut buffer, self.next_sequence);
        self.next_sequence =
            ((self.next_sequence as i64 + self.records as i64) % (i32::MAX as i64 + 1)) as i32;
        buffer.freeze()
    }

    /// Takes back the batch [`Batches::next`] gave, copying it only if a
    /// request still holds it.
    pub(crate) fn reuse(&mut self, batch: Bytes) {
        let buffer = batch
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        self.buffer = Some(buffer);
    }

    /// Forgets the sequence of a batch the broker refused (nothing was
    /// written, so the next send must reuse it).
    pub(crate) fn unsend(&mut self) {
        self.next_sequence = ((self.next_sequence as i64 - self.records as i64)
            .rem_euclid(i32::MAX as i64 + 1)) as i32;
    }
}

/// Sets a v2 batch's base sequence and its CRC-32C.
fn set_base_sequence(batch: &mut [u8], sequence: i32) {
    batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::log::batch;

    fn producer(transactional: bool) -> Producer {
        Producer {
            producer_id: 42,
            producer_epoch: 3,
            transactional_id: transactional.then(|| "t".to_string()),
        }
    }

    #[test]
    fn batches_carry_the_producer_and_consecutive_sequences_with_valid_crcs() {
        for transactional in [false, true] {
            let mut batches = Batches::new(&producer(transactional), 10, 100, 1_000);
            for expected in [0, 10, 20] {
                let bytes = batches.next();
                let header = batch::verify(&bytes).expect("a valid batch");
                assert_eq!(header.base_sequence, expected);
                assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
                assert_eq!(header.records_count, 10);
                assert_eq!(header.attributes & 0x10 != 0, transactional);
                batches.reuse(bytes);
            }
            batches.unsend();
            let bytes = batches.next();
            assert_eq!(batch::verify(&bytes).unwrap().base_sequence, 20);
        }
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        let mut batches = Batches::new(&producer(true), 10, 1, 0);
        batches.next_sequence = i32::MAX - 9;
        let bytes = batches.next();
        assert_eq!(batch::verify(&bytes).unwrap().base_sequence, i32::MAX - 9);
        batches.reuse(bytes);
        assert_eq!(batches.next_sequence, 0);
    }
}
