//! Metadata (key 3): the one broker, and topics with their partitions,
//! auto-creating missing ones when allowed.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{topic_allowed, topic_or_create};
use crate::acl::{Caller, Operation};
use crate::log::{PartitionSlot, Topic};
use crate::server::{BrokerContext, NODE_ID};

pub(crate) const VERSIONS: (i16, i16) = (0, 12);

/// Answers a Metadata request.
pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // v0: an empty list means every topic; v1+: null means every topic.
    let requested: Option<Vec<(Option<String>, Uuid)>> = request
        .topics
        .map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name.map(|n| n.to_string()), t.topic_id))
                .collect()
        })
        .filter(|topics: &Vec<_>| version > 0 || !topics.is_empty());
    let auto_create = version < 4 || request.allow_auto_topic_creation;
    let described = |name: &str| topic_allowed(context, caller, Operation::Describe, name);
    let topics = match requested {
        // Every topic: those `caller` may describe.
        None => context
            .store
            .topics()
            .iter()
            .filter(|topic| described(topic.name()))
            .map(|topic| describe(topic))
            .collect(),
        Some(requested) => {
            let mut topics = Vec::with_capacity(requested.len());
            for (name, id) in requested {
                topics.push(match name {
                    Some(name) if !described(&name) => {
                        let code = ResponseError::TopicAuthorizationFailed.code();
                        unknown(Some(name), Uuid::nil(), code)
                    }
                    Some(name) => match topic_or_create(context, caller, &name, auto_create).await {
                        Ok(topic) => describe(&topic),
                        Err(code) => unknown(Some(name), Uuid::nil(), code),
                    },
                    None => match context
                        .store
                        .topics()
                        .into_iter()
                        .find(|t| Uuid::from_bytes(t.id()) == id)
                    {
                        Some(topic) if !described(topic.name()) => {
                            unknown(None, id, ResponseError::TopicAuthorizationFailed.code())
                        }
                        Some(topic) => describe(&topic),
                        None => unknown(None, id, ResponseError::UnknownTopicId.code()),
                    },
                });
            }
            topics
        }
    };
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(StrBytes::from_string(context.advertised.ip().to_string()))
        .with_port(context.advertised.port() as i32);
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(StrBytes::from_string(context.cluster_id.clone())))
        .with_controller_id(BrokerId(NODE_ID))
        .with_topics(topics)
}

fn unknown(name: Option<String>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|name| TopicName(StrBytes::from_string(name))))
        .with_topic_id(id)
}

fn describe(topic: &Topic) -> MetadataResponseTopic {
    let partitions = topic
        .partitions()
        .iter()
        .enumerate()
        .map(|(index, slot)| {
            let error = match slot {
                PartitionSlot::Open(_) => 0,
                PartitionSlot::Failed(_) => ResponseError::KafkaStorageError.code(),
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(NODE_ID))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(
            topic.name().to_string(),
        ))))
        .with_topic_id(Uuid::from_bytes(topic.id()))
        .with_partitions(partitions)
}
