//! TxnOffsetCommit (key 28): consumer offsets committed with the
//! transaction (sendOffsetsToTransaction). v3 carries the consumer's
//! generation and member id (KIP-447), which must match the group's.

use std::sync::Arc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use kafka_protocol::error::ResponseError;

use super::{blocking, group_refusal, transactional_id_allowed};
use crate::acl::{Caller, Operation};
use super::offset_commit::{known_partitions, metadata};
use crate::group::OffsetCommit;
use crate::protocol::errors::transaction_error_code;
use crate::server::BrokerContext;
use crate::transaction::TransactionalCommitter;

pub(crate) const VERSIONS: (i16, i16) = (0, 3);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: TxnOffsetCommitRequest,
    _version: i16,
) -> TxnOffsetCommitResponse {
    // WRITE on the transactional id and READ on the group, or every
    // partition is refused.
    let refused = if !transactional_id_allowed(
        context,
        caller,
        Operation::Write,
        &request.transactional_id,
    ) {
        Some(ResponseError::TransactionalIdAuthorizationFailed.code())
    } else {
        group_refusal(context, caller, Operation::Read, &request.group_id)
    };
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
    let (offsets, slots) = match refused {
        Some(code) => (Vec::new(), requested.map(|_| Some(code)).collect()),
        None => known_partitions(context, caller, requested),
    };
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
        if refused.is_some() {
            return Ok(Vec::new());
        }
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
