//! DeleteRecords (key 21): moves a partition's log start offset forward
//! (-1 means the high watermark); whole segments below it are deleted.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{blocking, topic_allowed};
use crate::acl::{Caller, Operation};
use crate::protocol::errors::log_error_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 2);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let store = context.store.clone();
    // DELETE on each topic, asked before the blocking work.
    let allowed: Vec<bool> = (request.topics.iter())
        .map(|topic| topic_allowed(context, caller, Operation::Delete, &topic.name))
        .collect();
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
                        let result = DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index);
                        let found = match &found {
                            Ok(found) => found,
                            Err(error) => {
                                return result.with_error_code(error.code()).with_low_watermark(-1)
                            }
                        };
                        let moved = found.partition(p.partition_index).and_then(|partition| {
                            let offset = if p.offset == -1 {
                                partition.high_watermark()
                            } else {
                                p.offset
                            };
                            partition.delete_records_before(offset)
                        });
                        match moved {
                            Ok(start) => result.with_low_watermark(start),
                            Err(error) => result
                                .with_error_code(log_error_code(&error))
                                .with_low_watermark(-1),
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect()
    })
    .await;
    DeleteRecordsResponse::default().with_topics(topics)
}
