//! CreatePartitions (key 37): grows topics. Partition counts only grow (a
//! smaller count would change which partition a key maps to and drop data);
//! a manual assignment must give each new partition the one broker, 0.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::alter_configs::{admin_writes, duplicates, Refusal};
use super::{blocking, message, topic_allowed};
use crate::acl::{Caller, Operation};
use crate::log::LogStore;
use crate::protocol::errors::log_error_code;
use crate::server::{BrokerContext, NODE_ID};

pub(crate) const VERSIONS: (i16, i16) = (0, 3);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let store = context.store.clone();
    let validate_only = request.validate_only;
    let duplicated = duplicates(request.topics.iter().map(|t| t.name.clone()));
    // ALTER on each topic, asked before the blocking work.
    let allowed: Vec<bool> = (request.topics.iter())
        .map(|topic| topic_allowed(context, caller, Operation::Alter, &topic.name))
        .collect();
    let results = blocking(move || {
        // Held from reading the partition count to adding partitions.
        let _guard = admin_writes();
        request
            .topics
            .into_iter()
            .zip(allowed)
            .map(|(topic, allowed)| {
                let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
                let duplicated = duplicated.contains(&topic.name);
                let grown = if allowed {
                    grow(&store, &topic, duplicated, validate_only)
                } else {
                    Err((
                        ResponseError::TopicAuthorizationFailed.code(),
                        format!("ALTER on topic {:?} is not authorized", topic.name.as_str()),
                    ))
                };
                match grown {
                    Ok(()) => result,
                    Err((code, text)) => result
                        .with_error_code(code)
                        .with_error_message(message(text)),
                }
            })
            .collect()
    })
    .await;
    CreatePartitionsResponse::default().with_results(results)
}

fn invalid_partitions(text: String) -> Refusal {
    (ResponseError::InvalidPartitions.code(), text)
}

fn grow(
    store: &LogStore,
    request: &CreatePartitionsTopic,
    duplicated: bool,
    validate_only: bool,
) -> Result<(), Refusal> {
    let name = request.name.as_str();
    if duplicated {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!("topic {name:?} appears more than once in the request"),
        ));
    }
    let topic = store.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition.code(),
            format!("unknown topic {name:?}"),
        )
    })?;
    let (current, count) = (topic.partition_count(), request.count);
    let partitions_max = store.options().partitions_max;
    if count == current {
        return Err(invalid_partitions(format!(
            "topic {name:?} already has {current} partitions"
        )));
    }
    if count < current {
        return Err(invalid_partitions(format!(
            "topic {name:?} has {current} partitions, more than the requested {count}; the count can only grow"
        )));
    }
    if count > partitions_max {
        return Err(invalid_partitions(format!(
            "{count} partitions is above the maximum {partitions_max} (log.partitions_max)"
        )));
    }
    if let Some(assignments) = &request.assignments {
        let added = count - current;
        if assignments.len() != added as usize {
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                format!(
                    "adding {added} partitions needs {added} assignments, got {}",
                    assignments.len()
                ),
            ));
        }
        if assignments
            .iter()
            .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != NODE_ID)
        {
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                format!("each new partition must be assigned to [{NODE_ID}], the only broker"),
            ));
        }
    }
    if validate_only {
        return store
            .check_capacity(0, count - current)
            .map_err(|error| (log_error_code(&error), error.to_string()));
    }
    store
        .create_partitions(name, count)
        .map_err(|error| (log_error_code(&error), error.to_string()))
}
