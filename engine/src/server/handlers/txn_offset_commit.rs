//! TxnOffsetCommit (key 28): consumer offsets committed with the
//! transaction (sendOffsetsToTransaction). v3 carries the consumer's
//! generation and member id (KIP-447), which must match the group's.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::blocking;
use crate::group::OffsetCommit;
use crate::protocol::errors::transaction_error_code;
use crate::server::BrokerContext;
use crate::transaction::TransactionalCommitter;

pub(crate) const VERSIONS: (i16, i16) = (0, 3);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    request: TxnOffsetCommitRequest,
    _version: i16,
) -> TxnOffsetCommitResponse {
    // As OffsetCommit: a partition that does not exist is refused on its
    // own, the others go on (`known` keeps the request's order).
    let mut known = Vec::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let found = context.store.topic(&topic.name);
        for p in &topic.partitions {
            let exists = found
                .as_ref()
                .is_some_and(|t| (0..t.partition_count()).contains(&p.partition_index));
            known.push(exists);
            if exists {
                offsets.push(OffsetCommit {
                    topic: topic.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                });
            }
        }
    }
    let coordinator = context.transactions.clone();
    let (id, group, member) = (
        request.transactional_id.to_string(),
        request.group_id.to_string(),
        request.member_id.to_string(),
    );
    let (producer_id, epoch, generation) = (
        request.producer_id.0,
        request.producer_epoch,
        request.generation_id,
    );
    let result = blocking(move || {
        let committer = TransactionalCommitter {
            transactional_id: &id,
            producer_id,
            epoch,
            group: &group,
            generation,
            member_id: &member,
        };
        coordinator.commit_offsets(&committer, offsets)
    })
    .await;
    // TxnOffsetCommit has no PRODUCER_FENCED: fencing is INVALID_PRODUCER_EPOCH.
    let mut results = match &result {
        Ok(results) => results
            .iter()
            .map(|r| r.as_ref().err().map_or(0, |e| transaction_error_code(e, false)))
            .collect(),
        Err(error) => {
            tracing::debug!(%error, "TxnOffsetCommit refused");
            vec![transaction_error_code(error, false); known.len()]
        }
    }
    .into_iter();
    let mut codes = known.into_iter().map(|exists| {
        if exists {
            results.next().unwrap_or(0)
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        }
    });
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
