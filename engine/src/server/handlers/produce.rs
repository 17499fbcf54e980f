//! Produce (key 0): append each partition's record batches, as sent, to its
//! log. acks=0 gets no response; acks=1 and acks=-1 are answered once the
//! append is durable under the flush policy (one node: "all" is this one).
//!
//! A request with a transactional id writes through the transaction
//! coordinator: every batch must be transactional and from the id's current
//! producer and epoch, and the partition must have been added to the open
//! transaction (else INVALID_TXN_STATE, as Kafka's transaction verification
//! answers), checked and written under the id's lock so no write can land
//! after the transaction's marker. A request without a transactional id
//! that carries a transactional batch anywhere is refused whole, every
//! partition TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka answers it
//! (with or without an authorizer): such a batch would open a transaction
//! no coordinator knows of, holding the partition's last stable offset
//! (and every read_committed consumer) forever.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use tokio::sync::oneshot;

use super::{blocking, message, topic_allowed, topic_or_create, transactional_id_allowed};
use crate::acl::{Caller, Operation};
use crate::log::{batch, AppendInfo, BatchError, LogError, Partition, Topic};
use crate::protocol::errors::{log_error_code, transaction_error_code};
use crate::server::BrokerContext;
use crate::transaction::{TransactionCoordinator, TransactionError};

pub(crate) const VERSIONS: (i16, i16) = (3, 11);

fn failed(index: i32, code: i16, text: Option<String>) -> PartitionProduceResponse {
    crate::metrics::REQUESTS.failed(ApiKey::Produce as i16, code);
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(text.and_then(message))
}

/// A partition's write: done (with the partition to acknowledge on) or
/// refused with a response.
type Written = (
    i32,
    Result<(Arc<Partition>, AppendInfo), PartitionProduceResponse>,
);

/// Handles a Produce request; `None` for acks=0. Writes happen in request
/// order (then `ordered` is released so the connection's next produce may
/// write); the wait for durability happens after, per partition in
/// parallel, so pipelined requests share fsyncs.
pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: ProduceRequest,
    _version: i16,
    ordered: &mut Option<oneshot::Sender<()>>,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let refusal = if !matches!(acks, -1..=1) {
        Some((
            ResponseError::InvalidRequiredAcks.code(),
            format!("acks must be -1, 0 or 1, not {acks}"),
        ))
    } else if request.transactional_id.is_none() && carries_transactional(&request) {
        Some((
            ResponseError::TransactionalIdAuthorizationFailed.code(),
            "transactional batches need the producer's transactional id".to_string(),
        ))
    } else if request.transactional_id.as_ref().is_some_and(|id| {
        !transactional_id_allowed(context, caller, Operation::Write, id)
    }) {
        Some((
            ResponseError::TransactionalIdAuthorizationFailed.code(),
            "not authorized to write with this transactional id".to_string(),
        ))
    } else {
        None
    };
    let transactional_id = request.transactional_id.map(|id| id.to_string());
    let mut written: Vec<(TopicName, Vec<Written>)> = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let topic = match &refusal {
            Some((code, _)) => Err(*code),
            None if !topic_allowed(context, caller, Operation::Write, &topic_data.name) => {
                Err(ResponseError::TopicAuthorizationFailed.code())
            }
            None => topic_or_create(context, caller, &topic_data.name, true).await,
        };
        let partitions = match topic {
            Ok(topic) => {
                let writer = Writer {
                    transactions: context.transactions.clone(),
                    transactional_id: transactional_id.clone(),
                };
                write_all(topic, topic_data.partition_data, writer).await
            }
            Err(code) => topic_data
                .partition_data
                .iter()
                .map(|data| {
                    let text = refusal.as_ref().map(|(_, text)| text.clone());
                    (data.index, Err(failed(data.index, code, text)))
                })
                .collect(),
        };
        written.push((topic_data.name, partitions));
    }
    if let Some(ordered) = ordered.take() {
        let _ = ordered.send(());
    }
    let mut responses = Vec::with_capacity(written.len());
    for (name, partitions) in written {
        let acknowledged = partitions.into_iter().map(|(index, result)| async move {
            match result {
                Err(response) => response,
                Ok((partition, info)) => acknowledge(partition, index, info).await,
            }
        });
        let partitions = futures_util::future::join_all(acknowledged).await;
        responses.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partitions),
        );
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

async fn acknowledge(
    partition: Arc<Partition>,
    index: i32,
    info: AppendInfo,
) -> PartitionProduceResponse {
    // Only an fsync wait needs a blocking thread; otherwise acknowledging
    // is publishing the new high watermark, done here without a hop.
    let acknowledged = if partition.acknowledge_blocks() {
        let waited = partition.clone();
        blocking(move || waited.acknowledge(&info)).await
    } else {
        partition.acknowledge(&info)
    };
    match acknowledged {
        Ok(()) => PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(info.base_offset)
            .with_log_append_time_ms(info.log_append_time_ms)
            .with_log_start_offset(info.log_start_offset),
        Err(error) => {
            log_append_error(partition.topic(), index, &error);
            failed(index, log_error_code(&error), Some(error.to_string()))
        }
    }
}

/// Whether any partition of `request` holds a transactional batch.
fn carries_transactional(request: &ProduceRequest) -> bool {
    request
        .topic_data
        .iter()
        .flat_map(|topic| &topic.partition_data)
        .filter_map(|data| data.records.as_deref())
        .any(batch::any_transactional)
}

/// How a request's batches are written: straight to the log, or through
/// the transaction coordinator when the request has a transactional id.
struct Writer {
    transactions: Arc<TransactionCoordinator>,
    transactional_id: Option<String>,
}

/// Why a partition's write was refused.
enum WriteError {
    Log(LogError),
    Transaction(TransactionError),
}

impl WriteError {
    fn code(&self) -> i16 {
        match self {
            Self::Log(error) => log_error_code(error),
            // Fencing is INVALID_PRODUCER_EPOCH on Produce.
            Self::Transaction(error) => transaction_error_code(error, false),
        }
    }
    fn text(&self) -> String {
        match self {
            Self::Log(error) => error.to_string(),
            Self::Transaction(error) => error.to_string(),
        }
    }
}

fn invalid(reason: &str) -> WriteError {
    WriteError::Log(LogError::Batch(BatchError::Invalid(reason.into())))
}

impl Writer {
    /// Writes one partition's batches.
    fn write(&self, partition: &Partition, records: &[u8]) -> Result<AppendInfo, WriteError> {
        // Without a transactional id, `handle` has refused any request
        // with a transactional batch.
        let Some(id) = &self.transactional_id else {
            return partition.write_produced(records).map_err(WriteError::Log);
        };
        let Some((producer_id, epoch, true)) = batch::producer_of(records) else {
            return Err(invalid(
                "a transactional producer's batches must all be transactional, from one producer id and epoch",
            ));
        };
        // Checked before the id's lock, which is held only for the write.
        let checked = partition.check_produced(records).map_err(WriteError::Log)?;
        self.transactions
            .write_transactional(id, partition, (producer_id, epoch), || {
                partition.write_verified(records, checked)
            })
            .map_err(|error| match error {
                TransactionError::Log(error) => WriteError::Log(error),
                other => WriteError::Transaction(other),
            })
    }
}

async fn write_all(
    topic: Arc<Topic>,
    partitions: Vec<PartitionProduceData>,
    writer: Writer,
) -> Vec<Written> {
    blocking(move || {
        partitions
            .into_iter()
            .map(|data| {
                let index = data.index;
                let Some(records) = data.records else {
                    let response = failed(
                        index,
                        ResponseError::InvalidRecord.code(),
                        Some("no records".into()),
                    );
                    return (index, Err(response));
                };
                let result = topic
                    .partition(index)
                    .map_err(WriteError::Log)
                    .and_then(|partition| {
                        // Straight from the request buffer to the file: the
                        // new base offsets go out as separate parts (writev).
                        // The log checks sizes, records and (compacted
                        // topics) keys first, in one walk.
                        let info = writer.write(&partition, &records)?;
                        Ok((partition, info))
                    });
                (
                    index,
                    result.map_err(|error| {
                        let response = failed(index, error.code(), Some(error.text()));
                        match &error {
                            WriteError::Log(error) => {
                                log_append_error(topic.name(), index, error);
                                with_record_errors(response, error)
                            }
                            WriteError::Transaction(error) => {
                                tracing::debug!(topic = topic.name(), partition = index, %error,
                                    "transactional produce refused");
                                response
                            }
                        }
                    }),
                )
            })
            .collect()
    })
    .await
}

/// Names the bad record, as Kafka does for `INVALID_RECORD` (v8+; older
/// versions do not carry `record_errors` and the encoder leaves it out).
fn with_record_errors(response: PartitionProduceResponse, error: &LogError) -> PartitionProduceResponse {
    let LogError::Batch(BatchError::Record { index, reason }) = error else {
        return response;
    };
    response.with_record_errors(vec![BatchIndexAndErrorMessage::default()
        .with_batch_index(*index)
        .with_batch_index_error_message(message(reason.clone()))])
}

fn log_append_error(topic: &str, partition: i32, error: &LogError) {
    match error {
        LogError::Batch(_) | LogError::TooLarge { .. } | LogError::UnknownPartition { .. } => {
            tracing::debug!(topic, partition, %error, "produce refused");
        }
        _ => tracing::error!(topic, partition, %error, "produce failed"),
    }
}
