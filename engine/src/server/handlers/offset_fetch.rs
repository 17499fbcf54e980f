//! OffsetFetch (key 9): committed offsets of one group (v1–v7) or several
//! (v8+); all partitions when the topic list is null. A partition without
//! a commit answers offset -1. With `require_stable` (v7+), a partition
//! for which an open transaction holds an offset (TxnOffsetCommit) answers
//! UNSTABLE_OFFSET_COMMIT, and the client retries until it commits or
//! aborts (KIP-447).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{group_refusal, topic_allowed};
use crate::acl::{Caller, Operation};
use crate::group::offsets::Committed;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (1, 9);

type Wanted = Option<Vec<(TopicName, Vec<i32>)>>;
/// Per topic, each partition with its committed offset if any, or
/// TOPIC_AUTHORIZATION_FAILED's code for a topic the caller may not
/// describe.
type Found = Vec<(TopicName, Vec<Slot>)>;
/// A partition and its committed offset, or why it is refused.
type Slot = (i32, Result<Option<Committed>, i16>);

/// (topic, [(partition, committed or none)]) for a group ([`answer`]
/// turns each into the partition's reply). All topics: those `caller` may
/// DESCRIBE; named ones it may not are refused.
fn lookup(context: &BrokerContext, caller: &Caller, group: &str, wanted: Wanted) -> Found {
    let committed = context.groups.committed(group);
    let described = |topic: &str| topic_allowed(context, caller, Operation::Describe, topic);
    match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let allowed = described(&name);
                let found = partitions
                    .into_iter()
                    .map(|p| match allowed {
                        true => (p, Ok(committed.get(&(name.to_string(), p)).cloned())),
                        false => (p, Err(ResponseError::TopicAuthorizationFailed.code())),
                    })
                    .collect();
                (name, found)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<Slot>> = BTreeMap::new();
            for ((topic, partition), value) in committed {
                if described(&topic) {
                    by_topic
                        .entry(topic)
                        .or_default()
                        .push((partition, Ok(Some(value))));
                }
            }
            by_topic
                .into_iter()
                .map(|(topic, partitions)| (TopicName(StrBytes::from_string(topic)), partitions))
                .collect()
        }
    }
}

/// The group's partitions with an offset a transaction has not committed
/// yet, under `require_stable`; taken BEFORE the committed offsets are
/// read. A transaction commits its offsets before it stops counting them
/// as pending, so a partition found not pending here either has its
/// offset committed already or gets a newer one only from a transaction
/// that starts later: the offset read after is never one a commit in
/// flight is about to replace (KIP-447's guarantee to a new owner).
fn unstable(
    context: &BrokerContext,
    require_stable: bool,
    group: &str,
) -> std::collections::HashSet<(String, i32)> {
    if require_stable {
        context.transactions.pending_partitions(group)
    } else {
        Default::default()
    }
}

/// A partition's answer: error code, committed offset, leader epoch and
/// metadata. UNSTABLE_OFFSET_COMMIT with no offset for a partition in
/// `unstable`; offset -1 without a commit.
fn answer(
    unstable: &std::collections::HashSet<(String, i32)>,
    topic: &str,
    partition: i32,
    committed: Result<Option<Committed>, i16>,
) -> (i16, i64, i32, StrBytes) {
    let committed = match committed {
        Ok(committed) => committed,
        Err(code) => return (code, -1, -1, StrBytes::default()),
    };
    if unstable.contains(&(topic.to_string(), partition)) {
        return (
            ResponseError::UnstableOffsetCommit.code(),
            -1,
            -1,
            StrBytes::default(),
        );
    }
    match committed {
        Some(c) => (0, c.offset, c.leader_epoch, StrBytes::from_string(c.metadata)),
        None => (0, -1, -1, StrBytes::default()),
    }
}

/// Handles an OffsetFetch request.
pub(crate) fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|group| group_result(context, caller, group, request.require_stable))
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if let Some(code) = group_refusal(context, caller, Operation::Describe, &request.group_id) {
        return OffsetFetchResponse::default().with_error_code(code);
    }
    let wanted = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let pending = unstable(context, request.require_stable, &request.group_id);
    let topics = lookup(context, caller, &request.group_id, wanted)
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, committed)| {
                    let (code, offset, epoch, metadata) =
                        answer(&pending, &name, index, committed);
                    let partition = OffsetFetchResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                        .with_committed_offset(offset)
                        .with_metadata(Some(metadata));
                    if version >= 5 {
                        partition.with_committed_leader_epoch(epoch)
                    } else {
                        partition
                    }
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// One group of a v8+ request, answered.
fn group_result(
    context: &BrokerContext,
    caller: &Caller,
    group: OffsetFetchRequestGroup,
    require_stable: bool,
) -> OffsetFetchResponseGroup {
    if let Some(code) = group_refusal(context, caller, Operation::Describe, &group.group_id) {
        return OffsetFetchResponseGroup::default()
            .with_group_id(group.group_id)
            .with_error_code(code);
    }
    let pending = unstable(context, require_stable, &group.group_id);
    let wanted = group.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let topics = lookup(context, caller, &group.group_id, wanted)
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, committed)| {
                    let (code, offset, epoch, metadata) =
                        answer(&pending, &name, index, committed);
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(metadata))
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponseGroup::default()
        .with_group_id(group.group_id)
        .with_topics(topics)
}
