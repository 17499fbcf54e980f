//! DescribeTransactions (key 65, KIP-664): each transactional id's state,
//! producer, timeout, start time and partitions; an unknown id is
//! TRANSACTIONAL_ID_NOT_FOUND.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{blocking, transactional_id_allowed};
use crate::acl::{Caller, Operation};
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 0);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let coordinator = context.transactions.clone();
    // DESCRIBE on each transactional id, asked before the blocking work.
    let allowed: Vec<bool> = (request.transactional_ids.iter())
        .map(|id| transactional_id_allowed(context, caller, Operation::Describe, id))
        .collect();
    let states = blocking(move || {
        request
            .transactional_ids
            .into_iter()
            .zip(allowed)
            .map(|(id, allowed)| match allowed.then(|| coordinator.describe(&id)) {
                None => TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1),
                Some(None) => TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(ResponseError::TransactionalIdNotFound.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1),
                Some(Some(meta)) => {
                    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                    for (topic, partition) in &meta.partitions {
                        topics.entry(topic).or_default().push(*partition);
                    }
                    let topics = topics
                        .into_iter()
                        .map(|(topic, partitions)| {
                            TopicData::default()
                                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                                .with_partitions(partitions)
                        })
                        .collect();
                    TransactionState::default()
                        .with_transactional_id(id)
                        .with_transaction_state(StrBytes::from_static_str(meta.state.kafka_name()))
                        .with_transaction_timeout_ms(meta.timeout_ms)
                        .with_transaction_start_time_ms(meta.start_ms)
                        .with_producer_id(ProducerId(meta.producer_id))
                        .with_producer_epoch(meta.producer_epoch)
                        .with_topics(topics)
                }
            })
            .collect()
    })
    .await;
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
