//! TxnOffsetCommit (key 28): consumer offsets committed with the
//! transaction (sendOffsetsToTransaction). v3 carries the consumer's
//! generation and member id (KIP-447), which must match the group's.

use std::sync::Arc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::blocking;
use super::offset_commit::{known_partitions, metadata};
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
    // own, the others go on (`slots` keeps the request's order).
    let requested = request.topics.iter().flat_map(|topic| {
        topic.partitions.iter().map(|p| OffsetCommit {
            topic: topic.name.to_string(),
            partition: p.partition_index,
            offset: p.committed_offset,
            leader_epoch: p.committed_leader_epoch,
            metadata: metadata(p.committed_metadata.as_ref()),
        })
    });
    let (offsets, slots) = known_partitions(context, requested);
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
            vec![transaction_error_code(error, false); slots.len()]
        }
    }
    .into_iter();
    let mut codes = slots
        .into_iter()
        .map(|refused| refused.unwrap_or_else(|| results.next().unwrap_or(0)));
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
