//! AddPartitionsToTxn (key 24): a transactional producer names each
//! partition before its first write there, so the coordinator knows where
//! to write the markers. v0–3 (one transaction per request, from clients);
//! v4's batched, broker-to-broker form (KIP-890) is not offered.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::{blocking, topic_allowed, transactional_id_allowed};
use crate::acl::{Caller, Operation};
use crate::protocol::errors::transaction_error_code;
use crate::server::BrokerContext;
use crate::transaction::TransactionError;

pub(crate) const VERSIONS: (i16, i16) = (0, 3);

/// First version that knows PRODUCER_FENCED (KIP-588).
const FENCED_CODE_VERSION: i16 = 2;

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    // WRITE on the transactional id, and on each topic: otherwise nothing
    // is added, the refused partitions say why, the rest
    // OPERATION_NOT_ATTEMPTED (as Kafka answers).
    let id_allowed = transactional_id_allowed(
        context,
        caller,
        Operation::Write,
        &request.v3_and_below_transactional_id,
    );
    let refused_topics: Vec<&str> = (request.v3_and_below_topics.iter())
        .map(|topic| topic.name.as_str())
        .filter(|topic| !topic_allowed(context, caller, Operation::Write, topic))
        .collect();
    if !id_allowed || !refused_topics.is_empty() {
        let code_for = |topic: &str, _: i32| match (id_allowed, refused_topics.contains(&topic)) {
            (false, _) => ResponseError::TransactionalIdAuthorizationFailed.code(),
            (true, true) => ResponseError::TopicAuthorizationFailed.code(),
            (true, false) => ResponseError::OperationNotAttempted.code(),
        };
        let topics = results(&request.v3_and_below_topics, code_for);
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics);
    }
    let partitions: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|topic| {
            let name = topic.name.to_string();
            topic.partitions.iter().map(move |p| (name.clone(), *p))
        })
        .collect();
    let coordinator = context.transactions.clone();
    let id = request.v3_and_below_transactional_id.to_string();
    let (producer_id, epoch) = (
        request.v3_and_below_producer_id.0,
        request.v3_and_below_producer_epoch,
    );
    let added = partitions.clone();
    let result =
        blocking(move || coordinator.add_partitions(&id, producer_id, epoch, &added)).await;
    // One code for every partition, as Kafka answers: the refusal, or
    // UNKNOWN_TOPIC_OR_PARTITION for each unknown partition and
    // OPERATION_NOT_ATTEMPTED for the rest.
    let code_for = |topic: &str, partition: i32| match &result {
        Ok(()) => 0,
        Err(TransactionError::UnknownPartitions(unknown)) => {
            if unknown.iter().any(|(t, p)| t == topic && *p == partition) {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                ResponseError::OperationNotAttempted.code()
            }
        }
        Err(error) => transaction_error_code(error, version >= FENCED_CODE_VERSION),
    };
    if let Err(error) = &result {
        tracing::debug!(%error, "AddPartitionsToTxn refused");
    }
    let topics = results(&request.v3_and_below_topics, code_for);
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

/// Each requested partition with its code.
fn results(
    topics: &[AddPartitionsToTxnTopic],
    code_for: impl Fn(&str, i32) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|topic| {
            let results = topic
                .partitions
                .iter()
                .map(|p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(code_for(&topic.name, *p))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(results)
        })
        .collect()
}
