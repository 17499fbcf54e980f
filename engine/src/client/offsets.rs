//! Positions: committed offsets of a group (OffsetFetch, OffsetCommit) and
//! start offsets of partitions for a [`StartPosition`] (ListOffsets).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest};

use super::{
    check, text, topic_name, Client, Connection, IsolationLevel, TopicInfo, EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
};
use crate::start_position::StartPosition;

/// `(topic, partition)` → committed offset.
pub(crate) type Offsets = BTreeMap<(String, i32), i64>;

/// OffsetFetch: committed offsets of `group` for `topics` (topic →
/// partitions), or for every partition it has committed when `None`.
/// Partitions without a committed offset are left out.
pub(crate) async fn fetch_committed(
    coordinator: &mut Connection,
    group: &str,
    topics: Option<&BTreeMap<String, Vec<i32>>>,
) -> Result<Offsets> {
    let version = coordinator.version::<OffsetFetchRequest>()?;
    if topics.is_none() && version < 2 {
        bail!(
            "listing all offsets of a group needs OffsetFetch v2+ (the broker offers v{version})"
        );
    }
    let topics = topics.map(|topics| {
        topics
            .iter()
            .map(|(topic, partitions)| {
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(partitions.clone())
            })
            .collect()
    });
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_topics(topics);
    let response = coordinator.call(request).await?;
    check(response.error_code, None, || {
        format!("OffsetFetch for group '{group}'")
    })?;
    let mut offsets = Offsets::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            check(partition.error_code, None, || {
                format!(
                    "OffsetFetch for group '{group}', partition {} of '{}'",
                    partition.partition_index,
                    topic.name.as_str()
                )
            })?;
            if partition.committed_offset >= 0 {
                offsets.insert(
                    (topic.name.to_string(), partition.partition_index),
                    partition.committed_offset,
                );
            }
        }
    }
    Ok(offsets)
}

/// OffsetCommit of `offsets` as member `member_id` of `generation` (-1
/// and "" for an administrative commit to a group without members).
pub(crate) async fn commit(
    coordinator: &mut Connection,
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &Offsets,
) -> Result<()> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, partition), offset) in offsets {
        topics.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset),
        );
    }
    let topics = topics
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(member_id))
        .with_topics(topics);
    let response = coordinator.call(request).await?;
    for topic in &response.topics {
        for partition in &topic.partitions {
            check(partition.error_code, None, || {
                format!(
                    "OffsetCommit for group '{group}', partition {} of '{}'",
                    partition.partition_index,
                    topic.name.as_str()
                )
            })?;
        }
    }
    Ok(())
}

/// Start offsets of `partitions` of `topic` for `from`; `latest` (and the
/// bound an offset is clamped to) is the end of the log at `isolation`.
pub(crate) async fn resolve_positions(
    client: &mut Client,
    topic: &TopicInfo,
    partitions: &[i32],
    from: StartPosition,
    isolation: IsolationLevel,
) -> Result<BTreeMap<i32, i64>> {
    let query = |timestamp: i64| {
        partitions
            .iter()
            .map(|p| (*p, timestamp))
            .collect::<Vec<_>>()
    };
    let earliest = query(EARLIEST_TIMESTAMP);
    let latest = query(LATEST_TIMESTAMP);
    match from {
        StartPosition::Earliest => client.list_offsets(topic, &earliest, isolation).await,
        StartPosition::Latest => client.list_offsets(topic, &latest, isolation).await,
        StartPosition::Offset(offset) => {
            let starts = client.list_offsets(topic, &earliest, isolation).await?;
            let ends = client.list_offsets(topic, &latest, isolation).await?;
            Ok(starts
                .into_iter()
                .map(|(p, start)| (p, offset.clamp(start, ends[&p].max(start))))
                .collect())
        }
        StartPosition::Timestamp(ms) => {
            let found = client.list_offsets(topic, &query(ms), isolation).await?;
            let ends = client.list_offsets(topic, &latest, isolation).await?;
            // -1: no record that new yet; start at the end.
            Ok(found
                .into_iter()
                .map(|(p, offset)| (p, if offset < 0 { ends[&p] } else { offset }))
                .collect())
        }
    }
}
