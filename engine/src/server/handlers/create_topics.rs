//! CreateTopics (key 19). One node, so the replication factor must be 1 (or
//! -1 for the default) and any manual assignment must name broker 0.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{blocking, may_create_topic, message};
use crate::acl::Caller;
use crate::log::{validate_topic_name, LogError, LogStore, TopicConfig, CONFIG_NAMES};
use crate::protocol::errors::log_error_code;
use crate::server::{BrokerContext, NODE_ID};

pub(crate) const VERSIONS: (i16, i16) = (2, 7);

/// Kafka's DescribeConfigs source codes.
pub(crate) const SOURCE_TOPIC: i8 = 1;
/// A broker default.
pub(crate) const SOURCE_DEFAULT: i8 = 5;

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: CreateTopicsRequest,
    _version: i16,
) -> CreateTopicsResponse {
    let store = context.store.clone();
    let default_partitions = context.config.num_partitions;
    let validate_only = request.validate_only;
    // CREATE on the cluster or the topic, asked before the blocking work.
    let allowed: Vec<bool> = (request.topics.iter())
        .map(|topic| may_create_topic(context, caller, &topic.name))
        .collect();
    let topics = blocking(move || {
        request
            .topics
            .into_iter()
            .zip(allowed)
            .map(|(topic, allowed)| {
                if !allowed {
                    let result = CreatableTopicResult::default().with_name(topic.name.clone());
                    let text = format!("not authorized to create topic {}", topic.name.as_str());
                    return refuse(result, ResponseError::TopicAuthorizationFailed.code(), text);
                }
                create(&store, topic, default_partitions, validate_only)
            })
            .collect()
    })
    .await;
    CreateTopicsResponse::default().with_topics(topics)
}

fn refuse(result: CreatableTopicResult, code: i16, text: String) -> CreatableTopicResult {
    result
        .with_error_code(code)
        .with_error_message(message(text))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}

fn create(
    store: &LogStore,
    topic: CreatableTopic,
    default_partitions: i32,
    validate_only: bool,
) -> CreatableTopicResult {
    let name = topic.name.to_string();
    let result = CreatableTopicResult::default().with_name(topic.name.clone());
    if let Some((code, text)) = single_node_refusal(&topic) {
        return refuse(result, code, text);
    }
    let partitions = match (topic.num_partitions, topic.assignments.len()) {
        (-1, 0) => default_partitions,
        (-1, assigned) => assigned as i32,
        (count, _) => count,
    };
    let mut overrides = BTreeMap::new();
    for config in &topic.configs {
        if let Some(value) = &config.value {
            overrides.insert(config.name.to_string(), value.to_string());
        }
    }
    match create_or_validate(store, &name, partitions, &overrides, validate_only) {
        Ok((config, id)) => result
            .with_topic_id(id.map(Uuid::from_bytes).unwrap_or_default())
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(Some(topic_configs(&config, &overrides))),
        Err(error) => refuse(result, log_error_code(&error), error.to_string()),
    }
}

/// Why a single node cannot host `topic` as asked, if it cannot: a
/// replication factor other than 1 (or -1), or replicas on other brokers.
fn single_node_refusal(topic: &CreatableTopic) -> Option<(i16, String)> {
    if topic.replication_factor > 1
        || topic.replication_factor == 0
        || topic.replication_factor < -1
    {
        return Some((
            ResponseError::InvalidReplicationFactor.code(),
            format!(
                "replication factor {} is impossible on a single node; use 1",
                topic.replication_factor
            ),
        ));
    }
    if topic
        .assignments
        .iter()
        .any(|a| a.broker_ids.iter().any(|id| id.0 != NODE_ID) || a.broker_ids.len() != 1)
    {
        return Some((
            ResponseError::InvalidReplicaAssignment.code(),
            format!("the only broker is {NODE_ID}"),
        ));
    }
    None
}

/// Checks the name, the configs and that the topic is new; then creates it,
/// or with `validate_only` checks the partition count instead. Returns the
/// topic's effective config and, when created, its id.
fn create_or_validate(
    store: &LogStore,
    name: &str,
    partitions: i32,
    overrides: &BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(TopicConfig, Option<[u8; 16]>), LogError> {
    validate_topic_name(name)?;
    let config = store.options().topic_defaults.with_overrides(overrides)?;
    if store.topic(name).is_some() {
        return Err(LogError::TopicExists(name.to_string()));
    }
    if validate_only {
        if partitions < 1 || partitions > store.options().partitions_max {
            return Err(LogError::InvalidPartitions {
                count: partitions,
                reason: format!("must be between 1 and {}", store.options().partitions_max),
            });
        }
        store.check_capacity(1, partitions)?;
        return Ok((config, None));
    }
    let created = store.create_topic(name, partitions, overrides.clone())?;
    Ok((config, Some(created.id())))
}

/// Every topic config with its value and whether the request set it.
fn topic_configs(
    config: &TopicConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    CONFIG_NAMES
        .iter()
        .map(|key| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(key))
                .with_value(config.get(key).map(StrBytes::from_string))
                .with_config_source(if overrides.contains_key(*key) {
                    SOURCE_TOPIC
                } else {
                    SOURCE_DEFAULT
                })
        })
        .collect()
}
