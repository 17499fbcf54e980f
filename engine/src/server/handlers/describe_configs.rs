//! DescribeConfigs (key 32): the effective configuration of topics and of
//! this broker.
//!
//! A topic config's source follows Kafka: TOPIC_CONFIG when the topic
//! overrides it, else STATIC_BROKER_CONFIG when the broker's
//! `[log.topic_defaults]` changed the built-in default, else DEFAULT_CONFIG.
//! Synonyms (when asked for) list those layers from the highest precedence
//! down, the broker layer under its Kafka broker name (`log.retention.ms`).
//! Broker configs are derived from the running configuration and are all
//! read-only: they change only through the config file and a restart.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::create_topics::{SOURCE_DEFAULT, SOURCE_TOPIC};
use super::{cluster_allowed, message, topic_allowed};
use crate::acl::{Caller, Operation};
use crate::server::KafkaConfig;
use crate::log::{validate_topic_name, Topic, TopicConfig, CONFIG_NAMES};
use crate::protocol::errors::log_error_code;
use crate::server::{BrokerContext, NODE_ID};

/// Versions implemented (v0 is gone from the codec crate).
pub(crate) const VERSIONS: (i16, i16) = (1, 4);

/// Kafka's ConfigResource type of a topic.
pub(super) const RESOURCE_TOPIC: i8 = 2;
/// Kafka's ConfigResource type of a broker.
pub(super) const RESOURCE_BROKER: i8 = 4;
/// Config source of a value set in the broker's config file.
pub(super) const SOURCE_STATIC_BROKER: i8 = 4;

/// Kafka's ConfigEntry types (the `config_type` field, v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// What Kafka clients need to know about one topic config besides its value.
struct TopicConfigInfo {
    /// Kafka's topic-level name.
    name: &'static str,
    /// The broker-level name of its default.
    broker_name: &'static str,
    /// Kafka's ConfigEntry type.
    config_type: i8,
    /// One line for `include_documentation`.
    documentation: &'static str,
}

/// Every entry of [`CONFIG_NAMES`], with Kafka's broker synonym of each.
const TOPIC_CONFIGS: &[TopicConfigInfo] = &[
    TopicConfigInfo {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        config_type: TYPE_LIST,
        documentation: "delete, compact, or both: how old log segments are discarded",
    },
    TopicConfigInfo {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        config_type: TYPE_LONG,
        documentation: "age after which closed segments are deleted; -1 keeps them forever",
    },
    TopicConfigInfo {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        config_type: TYPE_LONG,
        documentation:
            "size per partition above which the oldest segments are deleted; -1 is unlimited",
    },
    TopicConfigInfo {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        config_type: TYPE_INT,
        documentation: "size at which the active segment is rolled",
    },
    TopicConfigInfo {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        config_type: TYPE_LONG,
        documentation: "age of its first batch at which the active segment is rolled",
    },
    TopicConfigInfo {
        name: "delete.retention.ms",
        broker_name: "log.cleaner.delete.retention.ms",
        config_type: TYPE_LONG,
        documentation: "how long compaction keeps tombstones",
    },
    TopicConfigInfo {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        config_type: TYPE_INT,
        documentation: "largest record batch accepted",
    },
    TopicConfigInfo {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        config_type: TYPE_STRING,
        documentation:
            "CreateTime keeps the producer's timestamps, LogAppendTime stamps batches on arrival",
    },
];

fn topic_config_info(name: &str) -> Option<&'static TopicConfigInfo> {
    TOPIC_CONFIGS.iter().find(|info| info.name == name)
}

/// A resource name that means this broker: its id, or "" (Kafka's
/// cluster-wide default entity, which on one node is the same thing).
pub(super) fn is_this_broker(name: &str) -> bool {
    name.is_empty() || name.parse::<i32>() == Ok(NODE_ID)
}

/// One config before it becomes a wire struct.
struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    config_type: i8,
    documentation: &'static str,
    /// (name, value, source), highest precedence first.
    synonyms: Vec<(String, String, i8)>,
}

impl Entry {
    fn into_result(self, synonyms: bool, documentation: bool) -> DescribeConfigsResourceResult {
        let synonyms = if synonyms {
            self.synonyms
                .into_iter()
                .map(|(name, value, source)| {
                    DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from_string(name))
                        .with_value(Some(StrBytes::from_string(value)))
                        .with_source(source)
                })
                .collect()
        } else {
            Vec::new()
        };
        // config_type and documentation exist from v3; older encoders skip
        // them, so they are safe to set on every version.
        DescribeConfigsResourceResult::default()
            .with_name(StrBytes::from_string(self.name))
            .with_value(Some(StrBytes::from_string(self.value)))
            .with_read_only(self.read_only)
            .with_config_source(self.source)
            .with_is_sensitive(false)
            .with_synonyms(synonyms)
            .with_config_type(self.config_type)
            .with_documentation(
                documentation.then(|| StrBytes::from_static_str(self.documentation)),
            )
    }
}

/// Answers a DescribeConfigs request.
pub(crate) fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let described = config_access(
                context,
                caller,
                Operation::DescribeConfigs,
                resource.resource_type,
                &resource.resource_name,
            )
            .and_then(|()| describe(context, &resource));
            match described {
                Ok(entries) => result.with_configs(
                    entries
                        .into_iter()
                        .filter(|entry| wanted(&resource, &entry.name))
                        .map(|entry| {
                            entry.into_result(
                                request.include_synonyms,
                                request.include_documentation,
                            )
                        })
                        .collect(),
                ),
                Err((code, text)) => result
                    .with_error_code(code)
                    .with_error_message(message(text)),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Whether the resource's key filter (null or empty: everything) lets
/// `name` through.
fn wanted(resource: &DescribeConfigsResource, name: &str) -> bool {
    match &resource.configuration_keys {
        None => true,
        Some(keys) => keys.is_empty() || keys.iter().any(|key| key.as_str() == name),
    }
}

/// Whether `caller` may do `operation` (DESCRIBE_CONFIGS or ALTER_CONFIGS)
/// on a config resource: a topic's configs are the topic's, the broker's
/// are the cluster's. Refused: TOPIC_ or CLUSTER_AUTHORIZATION_FAILED.
pub(super) fn config_access(
    context: &BrokerContext,
    caller: &Caller,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Result<(), (i16, String)> {
    let refused = match resource_type {
        RESOURCE_TOPIC => (!topic_allowed(context, caller, operation, name))
            .then_some(ResponseError::TopicAuthorizationFailed),
        RESOURCE_BROKER => (!cluster_allowed(context, caller, operation))
            .then_some(ResponseError::ClusterAuthorizationFailed),
        // Refused further on as unknown.
        _ => None,
    };
    match refused {
        None => Ok(()),
        Some(error) => Err((error.code(), format!("{operation} on {name:?} is not authorized"))),
    }
}

fn describe(
    context: &Arc<BrokerContext>,
    resource: &DescribeConfigsResource,
) -> Result<Vec<Entry>, (i16, String)> {
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC => {
            validate_topic_name(name)
                .map_err(|error| (log_error_code(&error), error.to_string()))?;
            let topic = context.store.topic(name).ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("unknown topic {name:?}"),
                )
            })?;
            Ok(topic_entries(
                &topic,
                &context.store.options().topic_defaults,
            ))
        }
        RESOURCE_BROKER if is_this_broker(name) => Ok(broker_entries(context)),
        RESOURCE_BROKER => Err((
            ResponseError::InvalidRequest.code(),
            format!("unknown broker {name:?}; this node is broker {NODE_ID} (or use \"\")"),
        )),
        other => Err((
            ResponseError::InvalidRequest.code(),
            format!("resource type {other} is not supported; use 2 (topic) or 4 (broker)"),
        )),
    }
}

/// The source of a broker-level value: set in the config file, or built in.
fn broker_source(value: &str, built_in: &str) -> i8 {
    if value == built_in {
        SOURCE_DEFAULT
    } else {
        SOURCE_STATIC_BROKER
    }
}

fn topic_entries(topic: &Topic, defaults: &TopicConfig) -> Vec<Entry> {
    let overrides = topic.overrides();
    let effective = topic.config();
    let built_in = TopicConfig::default();
    CONFIG_NAMES
        .iter()
        .map(|name| {
            let info = topic_config_info(name);
            let default_value = defaults.get(name).unwrap_or_default();
            let broker_layer = (
                info.map_or(*name, |info| info.broker_name).to_string(),
                default_value.clone(),
                broker_source(&default_value, &built_in.get(name).unwrap_or_default()),
            );
            let mut synonyms = Vec::with_capacity(2);
            if overrides.contains_key(*name) {
                synonyms.push((
                    name.to_string(),
                    effective.get(name).unwrap_or_default(),
                    SOURCE_TOPIC,
                ));
            }
            synonyms.push(broker_layer);
            Entry {
                name: name.to_string(),
                value: effective.get(name).unwrap_or_default(),
                source: synonyms[0].2,
                read_only: false,
                config_type: info.map_or(0, |info| info.config_type),
                documentation: info.map_or("", |info| info.documentation),
                synonyms,
            }
        })
        .collect()
}

/// A read-only broker config.
fn broker_entry(
    name: &str,
    value: String,
    built_in: String,
    config_type: i8,
    documentation: &'static str,
) -> Entry {
    let source = broker_source(&value, &built_in);
    Entry {
        name: name.to_string(),
        synonyms: vec![(name.to_string(), value.clone(), source)],
        value,
        source,
        read_only: true,
        config_type,
        documentation,
    }
}

/// Every broker config, in the order Kafka lists them: this node, the
/// `[kafka]` settings, then the defaults of topic configs.
fn broker_entries(context: &BrokerContext) -> Vec<Entry> {
    let mut entries = node_entries(context);
    entries.extend(kafka_entries(&context.config));
    entries.extend(topic_default_entries(
        &context.store.options().topic_defaults,
    ));
    entries
}

/// What this node is and where it lives: its id, address and data directory.
fn node_entries(context: &BrokerContext) -> Vec<Entry> {
    let advertised = format!("PLAINTEXT://{}", context.advertised);
    vec![
        broker_entry(
            "node.id",
            NODE_ID.to_string(),
            NODE_ID.to_string(),
            TYPE_INT,
            "this node's id (fixed: a single node)",
        ),
        broker_entry(
            "broker.id",
            NODE_ID.to_string(),
            NODE_ID.to_string(),
            TYPE_INT,
            "this node's id (fixed: a single node)",
        ),
        broker_entry(
            "advertised.listeners",
            advertised.clone(),
            // Derived from the bound listener unless configured.
            if context.config.advertised_listener.is_some() {
                String::new()
            } else {
                advertised
            },
            TYPE_STRING,
            "the address clients are told to connect to (kafka.advertised_listener)",
        ),
        broker_entry(
            "log.dirs",
            context.store.dir().display().to_string(),
            String::new(),
            TYPE_STRING,
            "the data directory (data_dir)",
        ),
    ]
}

/// The `[kafka]` settings, with the fixed replication factor among them.
fn kafka_entries(kafka: &KafkaConfig) -> Vec<Entry> {
    let built_in = KafkaConfig::default();
    vec![
        broker_entry(
            "num.partitions",
            kafka.num_partitions.to_string(),
            built_in.num_partitions.to_string(),
            TYPE_INT,
            "partitions of auto-created topics (kafka.num_partitions)",
        ),
        broker_entry(
            "auto.create.topics.enable",
            kafka.auto_create_topics_enable.to_string(),
            built_in.auto_create_topics_enable.to_string(),
            TYPE_BOOLEAN,
            "create unknown topics on Metadata and Produce (kafka.auto_create_topics_enable)",
        ),
        broker_entry(
            "default.replication.factor",
            "1".into(),
            "1".into(),
            TYPE_INT,
            "replicas per partition (fixed: a single node)",
        ),
        broker_entry(
            "socket.request.max.bytes",
            kafka.frame_bytes_max.to_string(),
            built_in.frame_bytes_max.to_string(),
            TYPE_INT,
            "largest request frame (kafka.frame_bytes_max)",
        ),
        broker_entry(
            "max.connections",
            kafka.connections_max.to_string(),
            built_in.connections_max.to_string(),
            TYPE_INT,
            "concurrent client connections (kafka.connections_max)",
        ),
        broker_entry(
            "connections.max.idle.ms",
            kafka.connections_max_idle_ms.to_string(),
            built_in.connections_max_idle_ms.to_string(),
            TYPE_LONG,
            "idle connections are closed after this long (kafka.connections_max_idle_ms)",
        ),
        broker_entry(
            "fetch.max.bytes",
            kafka.fetch_bytes_max.to_string(),
            built_in.fetch_bytes_max.to_string(),
            TYPE_INT,
            "largest Fetch response (kafka.fetch_bytes_max)",
        ),
    ]
}

/// The broker-level default of every topic config, under its broker name.
fn topic_default_entries(defaults: &TopicConfig) -> Vec<Entry> {
    let built_in = TopicConfig::default();
    TOPIC_CONFIGS
        .iter()
        .map(|info| {
            broker_entry(
                info.broker_name,
                defaults.get(info.name).unwrap_or_default(),
                built_in.get(info.name).unwrap_or_default(),
                info.config_type,
                info.documentation,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_config_has_a_broker_synonym() {
        for name in CONFIG_NAMES {
            assert!(topic_config_info(name).is_some(), "{name}");
        }
        assert_eq!(TOPIC_CONFIGS.len(), CONFIG_NAMES.len());
    }

    #[test]
    fn broker_names() {
        assert!(is_this_broker(""));
        assert!(is_this_broker("0"));
        assert!(!is_this_broker("1"));
        assert!(!is_this_broker("zero"));
    }
}
