//! OffsetCommit (key 8): durable committed offsets, fenced by generation
//! for group members; simple (generation -1) commits for groups without
//! members.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::blocking;
use crate::group::OffsetCommit;
use crate::protocol::errors::group_result_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (2, 9);

/// Handles an OffsetCommit request.
pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    request: OffsetCommitRequest,
    _version: i16,
) -> OffsetCommitResponse {
    let context = context.clone();
    blocking(move || {
        // Partitions of unknown topics get their own error; the rest are
        // committed together (one fsync).
        let mut commits = Vec::new();
        let mut slots = Vec::new();
        for topic in &request.topics {
            let known = context.store.topic(&topic.name);
            for partition in &topic.partitions {
                let exists = known
                    .as_ref()
                    .is_some_and(|t| (0..t.partition_count()).contains(&partition.partition_index));
                if exists {
                    slots.push(None);
                    commits.push(OffsetCommit {
                        topic: topic.name.to_string(),
                        partition: partition.partition_index,
                        offset: partition.committed_offset,
                        leader_epoch: partition.committed_leader_epoch,
                        metadata: partition
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    });
                } else {
                    slots.push(Some(ResponseError::UnknownTopicOrPartition.code()));
                }
            }
        }
        let mut results = context
            .groups
            .commit(
                &request.group_id,
                request.generation_id_or_member_epoch,
                &request.member_id,
                commits,
            )
            .into_iter();
        let mut slots = slots.into_iter();
        let topics = request
            .topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let code = slots
                            .next()
                            .flatten()
                            .unwrap_or_else(|| results.next().map_or(0, |r| group_result_code(&r)));
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    })
    .await
}
