//! The classic consumer protocol: what JoinGroup and SyncGroup carry for
//! "consumer" groups (each a big-endian i16 version followed by the
//! message), and Kafka's range assignor, which the group leader runs.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::{text, topic_name};

/// Newest ConsumerProtocol version this client reads; newer versions only
/// append fields, so they are read as this one.
const CONSUMER_PROTOCOL_VERSION_MAX: i16 = 3;

/// `version | message`.
pub(crate) fn encode_versioned<T: Encodable>(message: &T, version: i16) -> Result<Bytes> {
    let mut buffer = BytesMut::new();
    buffer.put_i16(version);
    message.encode(&mut buffer, version)?;
    Ok(buffer.freeze())
}

/// Reads `version | message`, a newer version as the newest known.
pub(crate) fn decode_versioned<T: Decodable>(mut bytes: Bytes) -> Result<T> {
    if bytes.remaining() < 2 {
        bail!("consumer protocol data of {} bytes", bytes.remaining());
    }
    let version = bytes.get_i16();
    if version < 0 {
        bail!("consumer protocol version {version}");
    }
    T::decode(&mut bytes, version.min(CONSUMER_PROTOCOL_VERSION_MAX))
}

/// The JoinGroup metadata of a member subscribed to `topics`.
pub(crate) fn subscription(topics: &[String]) -> Result<Bytes> {
    let subscription =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(text).collect());
    encode_versioned(&subscription, 0)
}

/// The SyncGroup assignment of one member: topic → partitions.
pub(crate) fn assignment(partitions: &BTreeMap<String, Vec<i32>>) -> Result<Bytes> {
    let assigned = partitions
        .iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .map(|(topic, partitions)| {
            AssignedPartitions::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions.clone())
        })
        .collect();
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(assigned);
    encode_versioned(&assignment, 0)
}

/// Topic → partitions of an encoded assignment (empty bytes: nothing).
pub(crate) fn decode_assignment(bytes: Bytes) -> Result<BTreeMap<String, Vec<i32>>> {
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    let assignment: ConsumerProtocolAssignment = decode_versioned(bytes)?;
    let mut partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for assigned in assignment.assigned_partitions {
        partitions
            .entry(assigned.topic.to_string())
            .or_default()
            .extend(assigned.partitions);
    }
    Ok(partitions)
}

/// Kafka's RangeAssignor: per topic, the subscribed members sorted by
/// member id each take a consecutive range of partitions; the first
/// `partitions % members` take one extra. Every member gets an entry.
pub(crate) fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut assignments: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
        .keys()
        .map(|member| (member.clone(), BTreeMap::new()))
        .collect();
    for (topic, count) in partition_counts {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() {
            continue;
        }
        let per_member = count / members.len() as i32;
        let extra = count % members.len() as i32;
        for (index, member) in members.into_iter().enumerate() {
            let index = index as i32;
            let start = per_member * index + index.min(extra);
            let length = per_member + i32::from(index < extra);
            assignments
                .get_mut(member)
                .expect("every member has an entry")
                .insert(topic.clone(), (start..start + length).collect());
        }
    }
    assignments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriptions(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        members
            .iter()
            .map(|(m, topics)| {
                (
                    m.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn range_gives_the_first_members_the_extra_partitions() {
        let subs = subscriptions(&[("b", &["t"]), ("a", &["t"]), ("c", &["t", "u"])]);
        let counts = BTreeMap::from([("t".to_string(), 7), ("u".to_string(), 2)]);
        let assigned = range_assign(&subs, &counts);
        assert_eq!(assigned["a"]["t"], [0, 1, 2]);
        assert_eq!(assigned["b"]["t"], [3, 4]);
        assert_eq!(assigned["c"]["t"], [5, 6]);
        assert_eq!(assigned["c"]["u"], [0, 1]);
        assert!(!assigned["a"].contains_key("u"));
    }

    #[test]
    fn more_members_than_partitions_leaves_some_idle() {
        let subs = subscriptions(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let assigned = range_assign(&subs, &BTreeMap::from([("t".to_string(), 2)]));
        assert_eq!(assigned["a"]["t"], [0]);
        assert_eq!(assigned["b"]["t"], [1]);
        assert!(assigned["c"]["t"].is_empty());
    }

    #[test]
    fn consumer_protocol_round_trips() {
        let bytes = subscription(&["orders".to_string()]).unwrap();
        assert_eq!(&bytes[..2], &[0, 0], "version 0 prefix");
        let decoded: ConsumerProtocolSubscription = decode_versioned(bytes).unwrap();
        assert_eq!(decoded.topics, [text("orders")]);
        let partitions = BTreeMap::from([("orders".to_string(), vec![0, 2])]);
        let decoded = decode_assignment(assignment(&partitions).unwrap()).unwrap();
        assert_eq!(decoded, partitions);
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
        assert!(decode_assignment(Bytes::from_static(&[0])).is_err());
    }
}
