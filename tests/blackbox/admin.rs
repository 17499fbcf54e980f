//! Admin APIs over the Kafka protocol: ApiVersions, CreateTopics, configs,
//! CreatePartitions, DescribeCluster, and what malformed frames do to a
//! connection (and must not do to the broker).

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, ApiKey, ApiVersionsRequest,
    ApiVersionsResponse, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    MetadataRequest, TopicName,
};
use kafka_protocol::messages::{AlterConfigsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice::server::handlers::SUPPORTED;

use crate::harness::Broker;
use crate::kafka::{header, KafkaClient};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

const STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn topic_name(value: &str) -> TopicName {
    TopicName(text(value))
}

fn creatable(name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(name, value)| {
                    CreatableTopicConfig::default()
                        .with_name(text(name))
                        .with_value(Some(text(value)))
                })
                .collect(),
        )
}

fn create_topics(
    client: &mut KafkaClient,
    topics: Vec<CreatableTopic>,
    validate_only: bool,
) -> Vec<CreatableTopicResult> {
    let request = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(5_000)
        .with_validate_only(validate_only);
    client.call(request, 7).topics
}

fn metadata(client: &mut KafkaClient, name: &str) -> MetadataResponseTopic {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(name)))
        ]))
        .with_allow_auto_topic_creation(false);
    let mut topics = client.call(request, 12).topics;
    assert_eq!(topics.len(), 1);
    topics.remove(0)
}

fn describe(
    client: &mut KafkaClient,
    resource_type: i8,
    name: &str,
    keys: Option<&[&str]>,
    version: i16,
) -> DescribeConfigsResult {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(text(name))
        .with_configuration_keys(keys.map(|keys| keys.iter().map(|key| text(key)).collect()));
    let request = DescribeConfigsRequest::default()
        .with_resources(vec![resource])
        .with_include_synonyms(true);
    let mut results = client.call(request, version).results;
    assert_eq!(results.len(), 1);
    results.remove(0)
}

/// name → (value, source) of a successful DescribeConfigs result.
fn configs(result: &DescribeConfigsResult) -> BTreeMap<String, (String, i8)> {
    assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    result
        .configs
        .iter()
        .map(|config| {
            let value = config.value.as_deref().unwrap_or_default().to_string();
            (config.name.to_string(), (value, config.config_source))
        })
        .collect()
}

fn topic_configs(client: &mut KafkaClient, name: &str) -> BTreeMap<String, (String, i8)> {
    configs(&describe(client, RESOURCE_TOPIC, name, None, 4))
}

fn alter(
    client: &mut KafkaClient,
    resource_type: i8,
    name: &str,
    configs: &[(&str, &str)],
    validate_only: bool,
    version: i16,
) -> (i16, Option<String>) {
    let resource = alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(text(name))
        .with_configs(
            configs
                .iter()
                .map(|(name, value)| {
                    alter_configs_request::AlterableConfig::default()
                        .with_name(text(name))
                        .with_value(Some(text(value)))
                })
                .collect(),
        );
    let request = AlterConfigsRequest::default()
        .with_resources(vec![resource])
        .with_validate_only(validate_only);
    let response = client.call(request, version).responses.remove(0);
    assert_eq!(response.resource_name.as_str(), name);
    (
        response.error_code,
        response.error_message.map(|m| m.to_string()),
    )
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn alter_incrementally(
    client: &mut KafkaClient,
    name: &str,
    operations: &[(&str, i8, Option<&str>)],
    validate_only: bool,
    version: i16,
) -> (i16, Option<String>) {
    let resource = incremental_alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(RESOURCE_TOPIC)
        .with_resource_name(text(name))
        .with_configs(
            operations
                .iter()
                .map(|(name, operation, value)| {
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(text(name))
                        .with_config_operation(*operation)
                        .with_value(value.map(text))
                })
                .collect(),
        );
    let request = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![resource])
        .with_validate_only(validate_only);
    let response = client.call(request, version).responses.remove(0);
    (
        response.error_code,
        response.error_message.map(|m| m.to_string()),
    )
}

fn assert_table(response: &ApiVersionsResponse) {
    let listed: Vec<(i16, i16, i16)> = response
        .api_keys
        .iter()
        .map(|key| (key.api_key, key.min_version, key.max_version))
        .collect();
    let expected: Vec<(i16, i16, i16)> = SUPPORTED
        .iter()
        .map(|(key, min, max)| (*key as i16, *min, *max))
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn api_versions_lists_the_supported_table() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    for version in [0, 3] {
        let response = client.call(ApiVersionsRequest::default(), version);
        assert_eq!(response.error_code, 0);
        assert_table(&response);
    }
    // The admin APIs of this suite are in the table with these ranges.
    for expected in [
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::AlterConfigs, 0, 2),
        (ApiKey::CreatePartitions, 0, 3),
        (ApiKey::IncrementalAlterConfigs, 0, 1),
        (ApiKey::DescribeCluster, 0, 1),
    ] {
        assert!(SUPPORTED.contains(&expected), "{expected:?}");
    }

    // A version from the future: KIP-511 says answer v0 with
    // UNSUPPORTED_VERSION and the table. The body is a v3 body, as a newer
    // client would send something like it.
    let mut frame = header(ApiKey::ApiVersions, 99, 4242);
    ApiVersionsRequest::default()
        .with_client_software_name(text("future-client"))
        .with_client_software_version(text("99.0"))
        .encode(&mut frame, 3)
        .unwrap();
    client.send_frame(&frame);
    let response: ApiVersionsResponse = client.receive(ApiKey::ApiVersions, 0, 4242);
    assert_eq!(response.error_code, UNSUPPORTED_VERSION);
    assert_table(&response);
    // The connection is still usable afterwards.
    let response = client.call(ApiVersionsRequest::default(), 3);
    assert_eq!(response.error_code, 0);
}

#[test]
fn create_topics_validates_then_metadata_sees_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);

    let results = create_topics(&mut client, vec![creatable("dry", 2, &[])], true);
    assert_eq!(results[0].error_code, 0, "{:?}", results[0].error_message);
    assert_eq!(results[0].num_partitions, 2);
    let dry = metadata(&mut client, "dry");
    assert_eq!(
        dry.error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "validate_only created it"
    );

    let results = create_topics(
        &mut client,
        vec![
            creatable("bad/name", 1, &[]),
            creatable("replicated", 1, &[]).with_replication_factor(3),
            creatable("badconfig", 1, &[("retention.ms", "soon")]),
            creatable("orders", 2, &[("retention.ms", "60000")]),
        ],
        false,
    );
    let codes: Vec<i16> = results.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        [
            INVALID_TOPIC_EXCEPTION,
            INVALID_REPLICATION_FACTOR,
            INVALID_CONFIG,
            0
        ]
    );
    for refused in &results[..3] {
        assert!(refused.error_message.is_some(), "{refused:?}");
    }
    let orders = metadata(&mut client, "orders");
    assert_eq!(orders.error_code, 0);
    assert_eq!(orders.partitions.len(), 2);
    assert_eq!(orders.topic_id, results[3].topic_id);
    for refused in ["bad/name", "replicated", "badconfig"] {
        let topic = metadata(&mut client, refused);
        assert_ne!(topic.error_code, 0, "{refused} exists");
    }
}

#[test]
fn describe_configs_reports_overrides_defaults_and_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    let created = create_topics(
        &mut client,
        vec![creatable(
            "events",
            1,
            &[("retention.ms", "60000"), ("cleanup.policy", "compact")],
        )],
        false,
    );
    assert_eq!(created[0].error_code, 0);

    for version in 1..=4 {
        let all = configs(&describe(
            &mut client,
            RESOURCE_TOPIC,
            "events",
            None,
            version,
        ));
        assert_eq!(all.len(), sluice::log::CONFIG_NAMES.len(), "v{version}");
        assert_eq!(all["retention.ms"], ("60000".into(), SOURCE_TOPIC));
        assert_eq!(all["cleanup.policy"], ("compact".into(), SOURCE_TOPIC));
        assert_eq!(all["segment.bytes"], ("1073741824".into(), SOURCE_DEFAULT));
        assert_eq!(all["max.message.bytes"], ("1048576".into(), SOURCE_DEFAULT));
    }

    // The key filter, and synonyms: the override first, then the broker
    // default under its broker name.
    let result = describe(
        &mut client,
        RESOURCE_TOPIC,
        "events",
        Some(&["retention.ms", "no.such.config"]),
        4,
    );
    assert_eq!(result.configs.len(), 1);
    let retention = &result.configs[0];
    assert_eq!(retention.name.as_str(), "retention.ms");
    assert!(!retention.read_only);
    let synonyms: Vec<(&str, i8)> = retention
        .synonyms
        .iter()
        .map(|s| (s.name.as_str(), s.source))
        .collect();
    assert_eq!(
        synonyms,
        [
            ("retention.ms", SOURCE_TOPIC),
            ("log.retention.ms", SOURCE_DEFAULT)
        ]
    );

    // v3+ carry types and, when asked, documentation.
    let documented = DescribeConfigsRequest::default()
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(text("events"))
            .with_configuration_keys(Some(vec![text("cleanup.policy")]))])
        .with_include_documentation(true);
    let result = client.call(documented, 3).results.remove(0);
    let policy = &result.configs[0];
    assert_eq!(policy.config_type, 7, "LIST");
    assert!(policy.documentation.as_ref().is_some_and(|d| !d.is_empty()));
    assert!(policy.synonyms.is_empty(), "synonyms were not asked for");

    let missing = describe(&mut client, RESOURCE_TOPIC, "missing", None, 4);
    assert_eq!(missing.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert!(missing.configs.is_empty());

    for name in ["0", ""] {
        let result = describe(&mut client, RESOURCE_BROKER, name, None, 4);
        let broker_configs = configs(&result);
        assert_eq!(broker_configs["log.retention.ms"].0, "604800000");
        assert_eq!(broker_configs["log.segment.bytes"].0, "1073741824");
        assert_eq!(broker_configs["message.max.bytes"].0, "1048576");
        assert_eq!(broker_configs["log.cleanup.policy"].0, "delete");
        assert_eq!(broker_configs["num.partitions"].0, "1");
        assert_eq!(broker_configs["auto.create.topics.enable"].0, "true");
        assert!(result.configs.iter().all(|config| config.read_only));
    }
    let other_broker = describe(&mut client, RESOURCE_BROKER, "7", None, 4);
    assert_eq!(other_broker.error_code, INVALID_REQUEST);
    let group = describe(&mut client, 3, "some-group", None, 4);
    assert_eq!(group.error_code, INVALID_REQUEST);
}

#[test]
fn config_changes_show_in_describe_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    let created = create_topics(
        &mut client,
        vec![creatable("ledger", 1, &[("segment.ms", "3600000")])],
        false,
    );
    assert_eq!(created[0].error_code, 0);

    // AlterConfigs replaces the whole override set.
    let (code, _) = alter(
        &mut client,
        RESOURCE_TOPIC,
        "ledger",
        &[("retention.ms", "120000")],
        true,
        0,
    );
    assert_eq!(code, 0);
    assert_eq!(
        topic_configs(&mut client, "ledger")["retention.ms"].1,
        SOURCE_DEFAULT,
        "validate_only changed the topic"
    );
    let (code, message) = alter(
        &mut client,
        RESOURCE_TOPIC,
        "ledger",
        &[("retention.ms", "120000"), ("cleanup.policy", "compact")],
        false,
        2,
    );
    assert_eq!(code, 0, "{message:?}");
    let now = topic_configs(&mut client, "ledger");
    assert_eq!(now["retention.ms"], ("120000".into(), SOURCE_TOPIC));
    assert_eq!(now["cleanup.policy"], ("compact".into(), SOURCE_TOPIC));
    assert_eq!(now["segment.ms"].1, SOURCE_DEFAULT, "left out, so reset");

    let (code, message) = alter(
        &mut client,
        RESOURCE_TOPIC,
        "ledger",
        &[("retention.ms", "-5")],
        false,
        1,
    );
    assert_eq!(code, INVALID_CONFIG);
    assert!(message.unwrap().contains("retention.ms"));
    let (code, _) = alter(&mut client, RESOURCE_TOPIC, "nope", &[], false, 2);
    assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION);
    let (code, message) = alter(
        &mut client,
        RESOURCE_BROKER,
        "0",
        &[("log.retention.ms", "1")],
        false,
        2,
    );
    assert_eq!(code, INVALID_REQUEST);
    assert_eq!(
        message.as_deref(),
        Some("broker configs are read-only; use the config file")
    );

    // IncrementalAlterConfigs changes single configs.
    let (code, message) = alter_incrementally(
        &mut client,
        "ledger",
        &[
            ("retention.bytes", SET, Some("1048576")),
            ("retention.ms", DELETE, None),
            ("cleanup.policy", APPEND, Some("delete")),
        ],
        false,
        1,
    );
    assert_eq!(code, 0, "{message:?}");
    let (code, _) = alter_incrementally(
        &mut client,
        "ledger",
        &[("cleanup.policy", SUBTRACT, Some("compact"))],
        true,
        0,
    );
    assert_eq!(code, 0);
    let (code, message) = alter_incrementally(
        &mut client,
        "ledger",
        &[("retention.ms", APPEND, Some("1"))],
        false,
        0,
    );
    assert_eq!(code, INVALID_CONFIG);
    assert!(message.unwrap().contains("retention.ms"));
    let expected = |configs: &BTreeMap<String, (String, i8)>| {
        assert_eq!(configs["retention.bytes"], ("1048576".into(), SOURCE_TOPIC));
        assert_eq!(
            configs["retention.ms"],
            ("604800000".into(), SOURCE_DEFAULT)
        );
        assert_eq!(
            configs["cleanup.policy"],
            ("compact,delete".into(), SOURCE_TOPIC)
        );
    };
    expected(&topic_configs(&mut client, "ledger"));

    drop(client);
    assert!(broker.stop_with("TERM", STOP_TIMEOUT).success());
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    expected(&topic_configs(&mut client, "ledger"));
}

fn create_partitions(
    client: &mut KafkaClient,
    name: &str,
    count: i32,
    assignments: Option<Vec<i32>>,
    validate_only: bool,
    version: i16,
) -> (i16, Option<String>) {
    let topic = CreatePartitionsTopic::default()
        .with_name(topic_name(name))
        .with_count(count)
        .with_assignments(assignments.map(|brokers| {
            brokers
                .into_iter()
                .map(|id| CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(id)]))
                .collect()
        }));
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(5_000)
        .with_validate_only(validate_only);
    let response: CreatePartitionsResponse = client.call(request, version);
    let result = &response.results[0];
    assert_eq!(result.name.0.as_str(), name);
    (
        result.error_code,
        result.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[test]
fn create_partitions_grows_and_refuses_to_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    assert_eq!(
        create_topics(&mut client, vec![creatable("clicks", 1, &[])], false)[0].error_code,
        0
    );

    assert_eq!(
        create_partitions(&mut client, "clicks", 3, None, true, 0).0,
        0
    );
    assert_eq!(metadata(&mut client, "clicks").partitions.len(), 1);
    let (code, message) = create_partitions(&mut client, "clicks", 3, Some(vec![0, 1]), false, 3);
    assert_eq!(code, INVALID_REPLICA_ASSIGNMENT, "{message:?}");
    let (code, message) = create_partitions(&mut client, "clicks", 3, Some(vec![0, 0]), false, 3);
    assert_eq!(code, 0, "{message:?}");
    assert_eq!(metadata(&mut client, "clicks").partitions.len(), 3);

    let (code, message) = create_partitions(&mut client, "clicks", 2, None, false, 1);
    assert_eq!(code, INVALID_PARTITIONS);
    assert!(message.unwrap().contains("only grow"));
    let (code, message) = create_partitions(&mut client, "clicks", 3, None, false, 2);
    assert_eq!(code, INVALID_PARTITIONS);
    assert!(message.unwrap().contains("already has 3"));
    assert_eq!(
        create_partitions(&mut client, "unknown", 3, None, false, 3).0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(metadata(&mut client, "clicks").partitions.len(), 3);
}

#[test]
fn describe_cluster_shows_the_single_node() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    let cluster_id = client
        .call(MetadataRequest::default().with_topics(Some(vec![])), 12)
        .cluster_id
        .expect("cluster id in metadata");
    for version in [0, 1] {
        let response = client.call(DescribeClusterRequest::default(), version);
        assert_eq!(response.error_code, 0);
        assert_eq!(response.cluster_id, cluster_id);
        assert_eq!(response.controller_id, BrokerId(0));
        assert_eq!(response.endpoint_type, 1);
        assert_eq!(response.brokers.len(), 1);
        let node = &response.brokers[0];
        assert_eq!(node.broker_id, BrokerId(0));
        assert_eq!(node.host.as_str(), broker.kafka.ip().to_string());
        assert_eq!(node.port, i32::from(broker.kafka.port()));
    }
    let controllers = client.call(DescribeClusterRequest::default().with_endpoint_type(2), 1);
    assert_eq!(controllers.error_code, UNSUPPORTED_ENDPOINT_TYPE);
}

#[test]
fn unknown_api_key_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut bad = KafkaClient::connect(broker.kafka);
    let mut good = KafkaClient::connect(broker.kafka);
    assert_eq!(good.call(ApiVersionsRequest::default(), 3).error_code, 0);
    // api_key 0x7f00, version 0, correlation id 9, null client id.
    bad.send_frame(&[0x7f, 0x00, 0, 0, 0, 0, 0, 9, 0xff, 0xff]);
    assert!(bad.is_closed(), "the connection stays open");
    assert_eq!(good.call(ApiVersionsRequest::default(), 3).error_code, 0);
    assert_eq!(broker.http_get("/health").0, 200);
}

#[test]
fn metadata_claiming_two_billion_topics_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    // A Metadata v1 body is the topic array; its count claims i32::MAX
    // entries that never follow.
    let mut frame = header(ApiKey::Metadata, 1, 5);
    frame.extend_from_slice(&i32::MAX.to_be_bytes());
    client.send_frame(&frame);
    assert!(client.is_closed(), "the connection stays open");
    assert_eq!(broker.http_get("/health").0, 200);
    let mut fresh = KafkaClient::connect(broker.kafka);
    let response = fresh.call(MetadataRequest::default().with_topics(None), 1);
    assert_eq!(response.brokers.len(), 1);
}
