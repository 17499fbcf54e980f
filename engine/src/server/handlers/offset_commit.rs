//! OffsetCommit (key 8): durable committed offsets, fenced by generation
//! for group members; simple (generation -1) commits for groups without
//! members.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{blocking, counted, group_refusal, topic_allowed};
use kafka_protocol::messages::ApiKey;
use crate::acl::{Caller, Operation};
use crate::group::{GroupError, OffsetCommit};
use crate::protocol::errors::group_result_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (2, 9);

/// Handles an OffsetCommit request.
pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: OffsetCommitRequest,
    _version: i16,
) -> OffsetCommitResponse {
    if let Some(code) = group_refusal(context, caller, Operation::Read, &request.group_id) {
        let slots = vec![Some(code); request.topics.iter().map(|t| t.partitions.len()).sum()];
        let topics = response_topics(request.topics, slots, Vec::new());
        return OffsetCommitResponse::default().with_topics(topics);
    }
    let (context, caller) = (context.clone(), caller.clone());
    blocking(move || {
        let (commits, slots) = commits_and_refusals(&context, &caller, &request.topics);
        let results = context.groups.commit(
            &request.group_id,
            request.generation_id_or_member_epoch,
            &request.member_id,
            commits,
        );
        OffsetCommitResponse::default().with_topics(response_topics(request.topics, slots, results))
    })
    .await
}

/// Partitions of unknown topics get their own error; the rest are
/// committed together (one fsync). Returns those commits, and per
/// requested partition in order its error or `None` (in the commits).
fn commits_and_refusals(
    context: &BrokerContext,
    caller: &Caller,
    topics: &[OffsetCommitRequestTopic],
) -> (Vec<OffsetCommit>, Vec<Option<i16>>) {
    let requested = topics.iter().flat_map(|topic| {
        topic.partitions.iter().map(|p| OffsetCommit {
            topic: topic.name.to_string(),
            partition: p.partition_index,
            offset: p.committed_offset,
            leader_epoch: p.committed_leader_epoch,
            metadata: metadata(p.committed_metadata.as_ref()),
        })
    });
    known_partitions(context, caller, requested)
}

/// A commit's metadata string (null is empty).
pub(super) fn metadata(value: Option<&kafka_protocol::protocol::StrBytes>) -> String {
    value.map(|m| m.to_string()).unwrap_or_default()
}

/// Splits `requested` commits (in request order) into those of partitions
/// that exist and `caller` may READ and, per requested partition,
/// TOPIC_AUTHORIZATION_FAILED, UNKNOWN_TOPIC_OR_PARTITION or `None` (among
/// the kept commits). OffsetCommit and TxnOffsetCommit both refuse such a
/// partition on its own and go on with the rest.
pub(super) fn known_partitions(
    context: &BrokerContext,
    caller: &Caller,
    requested: impl Iterator<Item = OffsetCommit>,
) -> (Vec<OffsetCommit>, Vec<Option<i16>>) {
    let mut commits = Vec::new();
    let mut slots = Vec::new();
    // A request lists a topic's partitions together: its partition count
    // is looked up once per topic, not once per partition.
    let mut known: Option<(String, Result<i32, i16>)> = None;
    for commit in requested {
        if known.as_ref().is_none_or(|(topic, _)| *topic != commit.topic) {
            let count = if topic_allowed(context, caller, Operation::Read, &commit.topic) {
                Ok(context.store.topic(&commit.topic).map_or(0, |t| t.partition_count()))
            } else {
                Err(ResponseError::TopicAuthorizationFailed.code())
            };
            known = Some((commit.topic.clone(), count));
        }
        match known.as_ref().map_or(Ok(0), |(_, count)| *count) {
            Ok(count) if (0..count).contains(&commit.partition) => {
                slots.push(None);
                commits.push(commit);
            }
            Ok(_) => slots.push(Some(ResponseError::UnknownTopicOrPartition.code())),
            Err(code) => slots.push(Some(code)),
        }
    }
    (commits, slots)
}

/// The response: each partition's error from `slots`, else the result of
/// its commit, in request order.
fn response_topics(
    topics: Vec<OffsetCommitRequestTopic>,
    slots: Vec<Option<i16>>,
    results: Vec<Result<(), GroupError>>,
) -> Vec<OffsetCommitResponseTopic> {
    let mut results = results.into_iter();
    let mut slots = slots.into_iter();
    topics
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
                        .with_error_code(counted(ApiKey::OffsetCommit, code))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect()
}
