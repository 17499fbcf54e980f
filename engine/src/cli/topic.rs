//! `sluice topic`: create, list, describe, reconfigure and delete topics
//! over the Kafka protocol (CreateTopics, Metadata, ListOffsets,
//! DescribeConfigs, IncrementalAlterConfigs, DeleteTopics), so it works
//! against any Kafka-compatible broker.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use serde_json::{json, Value};

use super::{emit, table, ConnectArgs, OutputFormat};
use crate::client::{
    check, error_text, text, topic_name, Client, IsolationLevel, EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP, REQUEST_TIMEOUT,
};

/// Kafka's ConfigResource type of a topic.
const RESOURCE_TOPIC: i8 = 2;

/// IncrementalAlterConfigs operations.
const OPERATION_SET: i8 = 0;
const OPERATION_DELETE: i8 = 1;

/// `sluice topic` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    #[command(
        after_help = "Example:\n  sluice topic create orders -p 6 -c retention.ms=86400000 -c cleanup.policy=compact"
    )]
    Create(CreateArgs),
    /// List topics with their partition counts.
    #[command(after_help = "Example:\n  sluice topic list --format json")]
    List(ListArgs),
    /// Show a topic's partitions (log start offset, high watermark) and configs.
    #[command(after_help = "Example:\n  sluice topic describe orders")]
    Describe(DescribeArgs),
    /// Delete topics and all their records.
    #[command(after_help = "Example:\n  sluice topic delete orders payments")]
    Delete(DeleteArgs),
    /// Set or remove per-topic config overrides (IncrementalAlterConfigs).
    #[command(
        after_help = "Example:\n  sluice topic alter-config orders --set retention.ms=3600000 --delete cleanup.policy"
    )]
    AlterConfig(AlterConfigArgs),
}

/// `sluice topic create` options.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    pub(crate) name: String,
    /// Number of partitions [default: the broker's num.partitions].
    #[arg(short, long, value_name = "N")]
    pub(crate) partitions: Option<i32>,
    /// A topic config, `name=value` (repeatable), e.g. retention.ms=86400000.
    #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) configs: Vec<(String, String)>,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `sluice topic list` options.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `sluice topic describe` options.
#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    pub(crate) name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `sluice topic delete` options.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Topic names.
    #[arg(required = true)]
    pub(crate) names: Vec<String>,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `sluice topic alter-config` options.
#[derive(Debug, Args)]
pub(crate) struct AlterConfigArgs {
    pub(crate) name: String,
    /// Set a config override, `name=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) set: Vec<(String, String)>,
    /// Remove a config override, back to the broker default (repeatable).
    #[arg(long = "delete", value_name = "KEY")]
    pub(crate) delete: Vec<String>,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `key=value` → `(key, value)`, split at the first `=`.
pub(crate) fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

/// Runs a `sluice topic` subcommand.
pub(crate) async fn run(command: TopicCommand) -> Result<()> {
    match command {
        TopicCommand::Create(args) => create(args).await,
        TopicCommand::List(args) => list(args).await,
        TopicCommand::Describe(args) => describe(args).await,
        TopicCommand::Delete(args) => delete(args).await,
        TopicCommand::AlterConfig(args) => alter_config(args).await,
    }
}

async fn create(args: CreateArgs) -> Result<()> {
    let mut client = args.connect.client().await?;
    let connection = client.bootstrap().await?;
    let version = connection.version::<CreateTopicsRequest>()?;
    // v4+ lets the broker pick defaults with -1; older brokers need numbers.
    let default_partitions = if version >= 4 { -1 } else { 1 };
    let configs = args
        .configs
        .iter()
        .map(|(key, value)| {
            CreatableTopicConfig::default()
                .with_name(text(key))
                .with_value(Some(text(value)))
        })
        .collect();
    let topic = CreatableTopic::default()
        .with_name(topic_name(&args.name))
        .with_num_partitions(args.partitions.unwrap_or(default_partitions))
        .with_replication_factor(if version >= 4 { -1 } else { 1 })
        .with_configs(configs);
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32);
    let response = connection.call(request).await?;
    let result = response
        .topics
        .first()
        .context("CreateTopics answered with no topic")?;
    check(result.error_code, result.error_message.as_ref(), || {
        format!("cannot create topic '{}'", args.name)
    })?;
    let partitions = match (result.num_partitions, args.partitions) {
        (n, _) if n > 0 => n.to_string(),
        (_, Some(n)) => n.to_string(),
        _ => "default".to_string(),
    };
    emit(&format!(
        "created topic {} ({partitions} partitions)\n",
        args.name
    ))
}

async fn list(args: ListArgs) -> Result<()> {
    let mut client = args.connect.client().await?;
    let response = client.metadata(None).await?;
    let mut topics: Vec<(String, usize, bool)> = response
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| {
            let name = t.name.as_ref()?.to_string();
            Some((name, t.partitions.len(), t.is_internal))
        })
        .collect();
    topics.sort();
    match args.format {
        OutputFormat::Json => {
            let topics: Vec<Value> = topics
                .iter()
                .map(|(name, partitions, internal)| {
                    json!({"name": name, "partitions": partitions, "internal": internal})
                })
                .collect();
            emit(&(serde_json::to_string_pretty(&topics)? + "\n"))
        }
        OutputFormat::Text => {
            let rows = topics
                .iter()
                .map(|(name, partitions, _)| vec![name.clone(), partitions.to_string()])
                .collect();
            emit(&table(&["NAME", "PARTITIONS"], rows))
        }
    }
}

/// One partition's offsets for `describe`.
struct PartitionOffsets {
    partition: i32,
    leader: i32,
    log_start_offset: i64,
    high_watermark: i64,
}

/// One config entry for `describe`.
struct ConfigEntry {
    name: String,
    value: Option<String>,
    source: &'static str,
    read_only: bool,
    sensitive: bool,
}

async fn describe(args: DescribeArgs) -> Result<()> {
    let mut client = args.connect.client().await?;
    let topic = client.topic(&args.name).await?;
    let indexes: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
    let queries = |timestamp| indexes.iter().map(|p| (*p, timestamp)).collect::<Vec<_>>();
    let uncommitted = IsolationLevel::ReadUncommitted;
    let starts = client
        .list_offsets(&topic, &queries(EARLIEST_TIMESTAMP), uncommitted)
        .await?;
    let ends = client
        .list_offsets(&topic, &queries(LATEST_TIMESTAMP), uncommitted)
        .await?;
    let partitions: Vec<PartitionOffsets> = topic
        .partitions
        .iter()
        .map(|p| PartitionOffsets {
            partition: p.partition,
            leader: p.leader,
            log_start_offset: starts[&p.partition],
            high_watermark: ends[&p.partition],
        })
        .collect();
    let configs = describe_configs(&mut client, &args.name).await?;
    match args.format {
        OutputFormat::Json => emit(&describe_json(&args.name, &partitions, &configs)?),
        OutputFormat::Text => emit(&describe_text(&args.name, &partitions, &configs)),
    }
}

async fn describe_configs(client: &mut Client, name: &str) -> Result<Vec<ConfigEntry>> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(text(name))
            .with_configuration_keys(None)]);
    let response = client.bootstrap().await?.call(request).await?;
    let result = response
        .results
        .first()
        .context("DescribeConfigs answered with no resource")?;
    check(result.error_code, result.error_message.as_ref(), || {
        format!("DescribeConfigs for topic '{name}'")
    })?;
    let mut configs: Vec<ConfigEntry> = result
        .configs
        .iter()
        .map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: c.value.as_ref().map(|v| v.to_string()),
            source: config_source(c.config_source),
            read_only: c.read_only,
            sensitive: c.is_sensitive,
        })
        .collect();
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(configs)
}

/// Kafka's ConfigSource codes, as short lower-case words.
fn config_source(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "dynamic-broker",
        3 => "dynamic-default-broker",
        4 => "static-broker",
        5 => "default",
        6 => "dynamic-broker-logger",
        7 => "client-metrics",
        8 => "group",
        _ => "unknown",
    }
}

fn describe_json(
    name: &str,
    partitions: &[PartitionOffsets],
    configs: &[ConfigEntry],
) -> Result<String> {
    let partitions: Vec<Value> = partitions
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "leader": p.leader,
                "log_start_offset": p.log_start_offset,
                "high_watermark": p.high_watermark,
            })
        })
        .collect();
    let configs: Vec<Value> = configs
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "value": c.value,
                "source": c.source,
                "read_only": c.read_only,
                "sensitive": c.sensitive,
            })
        })
        .collect();
    let document = json!({"name": name, "partitions": partitions, "configs": configs});
    Ok(serde_json::to_string_pretty(&document)? + "\n")
}

fn describe_text(name: &str, partitions: &[PartitionOffsets], configs: &[ConfigEntry]) -> String {
    let mut out = format!("NAME        {name}\nPARTITIONS  {}\n\n", partitions.len());
    let rows = partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.to_string(),
                p.log_start_offset.to_string(),
                p.high_watermark.to_string(),
            ]
        })
        .collect();
    out += &table(
        &["PARTITION", "LEADER", "LOG-START-OFFSET", "HIGH-WATERMARK"],
        rows,
    );
    out.push('\n');
    let rows = configs
        .iter()
        .map(|c| {
            let value = match (&c.value, c.sensitive) {
                (_, true) => "(sensitive)".to_string(),
                (Some(value), false) => value.clone(),
                (None, false) => "-".to_string(),
            };
            vec![c.name.clone(), value, c.source.to_string()]
        })
        .collect();
    out += &table(&["CONFIG", "VALUE", "SOURCE"], rows);
    out
}

async fn delete(args: DeleteArgs) -> Result<()> {
    let mut client = args.connect.client().await?;
    let request = DeleteTopicsRequest::default()
        .with_topic_names(args.names.iter().map(|n| topic_name(n)).collect())
        .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32);
    let response = client.bootstrap().await?.call(request).await?;
    let mut failed = 0;
    let mut deleted = String::new();
    for name in &args.names {
        let result = response
            .responses
            .iter()
            .find(|r| r.name.as_ref().map(|n| n.as_str()) == Some(name.as_str()));
        match result {
            None => {
                failed += 1;
                eprintln!("topic '{name}': DeleteTopics did not answer for it");
            }
            Some(result) => match error_text(result.error_code, result.error_message.as_ref()) {
                Some(error) => {
                    failed += 1;
                    eprintln!("cannot delete topic '{name}': {error}");
                }
                None => deleted += &format!("deleted topic {name}\n"),
            },
        }
    }
    emit(&deleted)?;
    if failed > 0 {
        bail!("{failed} of {} topics not deleted", args.names.len());
    }
    Ok(())
}

async fn alter_config(args: AlterConfigArgs) -> Result<()> {
    if args.set.is_empty() && args.delete.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE and/or --delete KEY");
    }
    let mut client = args.connect.client().await?;
    let sets = args.set.iter().map(|(key, value)| {
        AlterableConfig::default()
            .with_name(text(key))
            .with_config_operation(OPERATION_SET)
            .with_value(Some(text(value)))
    });
    let deletes = args.delete.iter().map(|key| {
        AlterableConfig::default()
            .with_name(text(key))
            .with_config_operation(OPERATION_DELETE)
            .with_value(None)
    });
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(text(&args.name))
            .with_configs(sets.chain(deletes).collect()),
    ]);
    let response = client.bootstrap().await?.call(request).await?;
    let result = response
        .responses
        .first()
        .context("IncrementalAlterConfigs answered with no resource")?;
    check(result.error_code, result.error_message.as_ref(), || {
        format!("cannot alter configs of topic '{}'", args.name)
    })?;
    let set = args
        .set
        .iter()
        .map(|(key, value)| format!("set {key}={value}\n"));
    let deleted = args.delete.iter().map(|key| format!("deleted {key}\n"));
    emit(&set.chain(deleted).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(
            parse_key_value("a=b=c"),
            Ok(("a".to_string(), "b=c".to_string()))
        );
        assert_eq!(parse_key_value("a="), Ok(("a".to_string(), String::new())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
