//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3) or
//! the first offset at or after a timestamp, per partition. Latest is the
//! last stable offset for read_committed (isolation level 1), the high
//! watermark otherwise.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{blocking, topic_allowed};
use crate::acl::{Caller, Operation};
use crate::log::{LogError, Partition};
use crate::protocol::errors::log_error_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (1, 7);

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// `isolation_level` 1: read_committed.
const READ_COMMITTED: i8 = 1;

fn lookup(partition: &Partition, timestamp: i64, committed: bool) -> Result<(i64, i64), LogError> {
    let found = lookup_uncommitted(partition, timestamp, committed)?;
    // A record found by time at or past the LSO is not one a
    // read_committed consumer may read yet: none, as Kafka answers.
    let by_time = timestamp >= 0 || timestamp == MAX_TIMESTAMP;
    if committed && by_time && found.0 >= partition.last_stable_offset() {
        return Ok((-1, -1));
    }
    Ok(found)
}

fn lookup_uncommitted(
    partition: &Partition,
    timestamp: i64,
    committed: bool,
) -> Result<(i64, i64), LogError> {
    Ok(match timestamp {
        // What a consumer at that isolation level can read up to.
        LATEST if committed => (partition.last_stable_offset(), -1),
        LATEST => (partition.high_watermark(), -1),
        EARLIEST => (partition.log_start_offset(), -1),
        MAX_TIMESTAMP => {
            let newest = partition
                .segment_metas()
                .iter()
                .map(|m| m.max_timestamp)
                .max()
                .unwrap_or(-1);
            match partition.offset_for_timestamp(newest)? {
                Some(found) if newest >= 0 => found,
                _ => (-1, -1),
            }
        }
        timestamp => partition
            .offset_for_timestamp(timestamp)?
            .unwrap_or((-1, -1)),
    })
}

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let store = context.store.clone();
    // DESCRIBE on each topic, asked before the blocking read.
    let allowed: Vec<bool> = (request.topics.iter())
        .map(|topic| topic_allowed(context, caller, Operation::Describe, &topic.name))
        .collect();
    let committed = request.isolation_level == READ_COMMITTED;
    let topics = blocking(move || {
        request
            .topics
            .into_iter()
            .zip(allowed)
            .map(|(topic, allowed)| {
                let found = store.topic(&topic.name).ok_or(ResponseError::UnknownTopicOrPartition);
                let found = if allowed {
                    found
                } else {
                    Err(ResponseError::TopicAuthorizationFailed)
                };
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let response = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index);
                        let result = match &found {
                            Err(error) => Err(error.code()),
                            Ok(topic) => topic
                                .partition(p.partition_index)
                                .and_then(|partition| lookup(&partition, p.timestamp, committed))
                                .map_err(|error| log_error_code(&error)),
                        };
                        match result {
                            Ok((offset, timestamp)) => response
                                .with_offset(offset)
                                .with_timestamp(timestamp)
                                .with_leader_epoch(if version >= 4 { 0 } else { -1 }),
                            Err(code) => response
                                .with_error_code(code)
                                .with_offset(-1)
                                .with_timestamp(-1),
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect()
    })
    .await;
    ListOffsetsResponse::default().with_topics(topics)
}
