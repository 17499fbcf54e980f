//! `sluice group`: list, describe and delete consumer groups and reset their
//! committed offsets (ListGroups, DescribeGroups, OffsetFetch, ListOffsets,
//! DeleteGroups, OffsetCommit), with the client's consumer-protocol and
//! offset pieces (`crate::client`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest,
};
use serde_json::{json, Value};

use super::{emit, table, ConnectArgs, OutputFormat};
use crate::client::consumer::decode_assignment;
use crate::client::offsets::{commit, fetch_committed, resolve_positions, Offsets};
use crate::client::{
    check, error_text, text, Client, Connection, IsolationLevel, LATEST_TIMESTAMP,
};
use crate::start_position::StartPosition;

/// `sluice group` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups on every broker.
    #[command(after_help = "Example:\n  sluice group list --format json")]
    List(ListArgs),
    /// Show a group's state, members, and per partition the committed
    /// offset, end offset and lag.
    #[command(after_help = "Columns (and JSON fields):\n  \
        COMMITTED-OFFSET (committed_offset): the group's next offset to read; - when none.\n  \
        END-OFFSET (end_offset): the partition's last stable offset, the end of what a\n    \
        read_committed consumer can read: the first offset of its oldest open transaction,\n    \
        or the high watermark when none is open.\n  \
        LAG (lag): END-OFFSET - COMMITTED-OFFSET, at least 0, so records of a transaction\n    \
        still open are not counted until it commits. TOTAL-LAG (total_lag) is their sum.\n\n\
        Example:\n  sluice group describe billing")]
    Describe(DescribeArgs),
    /// Delete groups and their committed offsets (they must have no members).
    #[command(after_help = "Example:\n  sluice group delete billing audit")]
    Delete(DeleteArgs),
    /// Move a group's committed offsets of a topic (the group must have no members).
    #[command(after_help = "Examples:\n  \
        sluice group reset-offsets billing --topic orders --to earliest --dry-run\n  \
        sluice group reset-offsets billing --topic orders --to 1200 --partition 3\n  \
        sluice group reset-offsets billing --topic orders --to 2026-11-23T10:00:00Z")]
    ResetOffsets(ResetOffsetsArgs),
}

/// `sluice group list` options.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `sluice group describe` options.
#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    pub(crate) group: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `sluice group delete` options.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Group ids.
    #[arg(required = true)]
    pub(crate) groups: Vec<String>,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `sluice group reset-offsets` options.
#[derive(Debug, Args)]
pub(crate) struct ResetOffsetsArgs {
    pub(crate) group: String,
    /// Topic whose offsets to move.
    #[arg(long)]
    pub(crate) topic: String,
    /// New position: earliest, latest (the last stable offset: before any
    /// transaction still open), an OFFSET (clamped to the log start and
    /// the last stable offset), or a time (`@MILLIS` since the epoch, or RFC 3339 such as
    /// 2026-11-23T10:00:00Z) meaning the first record at or after it.
    #[arg(long, value_name = "POSITION", value_parser = StartPosition::parse)]
    pub(crate) to: StartPosition,
    /// Only this partition [default: all].
    #[arg(short, long, value_name = "N")]
    pub(crate) partition: Option<i32>,
    /// Show the new offsets without committing them.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// Runs a `sluice group` subcommand.
pub(crate) async fn run(command: GroupCommand) -> Result<()> {
    match command {
        GroupCommand::List(args) => list(args).await,
        GroupCommand::Describe(args) => describe(args).await,
        GroupCommand::Delete(args) => delete(args).await,
        GroupCommand::ResetOffsets(args) => reset_offsets(args).await,
    }
}

// ---------------------------------------------------------------------------
// The verbs.

async fn list(args: ListArgs) -> Result<()> {
    let mut client = args.connect.client().await?;
    let metadata = client.metadata(Some(&[])).await?;
    let mut nodes: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
    nodes.sort_unstable();
    // Each broker lists only the groups it coordinates.
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    for node in nodes {
        let response = client
            .node(node)
            .await?
            .call(ListGroupsRequest::default())
            .await?;
        check(response.error_code, None, || {
            format!("ListGroups on broker {node}")
        })?;
        for group in response.groups {
            let state = Some(group.group_state.to_string()).filter(|s| !s.is_empty());
            groups.insert(
                group.group_id.to_string(),
                (
                    group.protocol_type.to_string(),
                    state.unwrap_or_else(|| "-".into()),
                ),
            );
        }
    }
    match args.format {
        OutputFormat::Json => {
            let groups: Vec<Value> = groups
                .iter()
                .map(|(group, (protocol_type, state))| {
                    json!({"group": group, "protocol_type": protocol_type, "state": state})
                })
                .collect();
            emit(&(serde_json::to_string_pretty(&groups)? + "\n"))
        }
        OutputFormat::Text => {
            let rows = groups
                .into_iter()
                .map(|(group, (protocol_type, state))| vec![group, state, protocol_type])
                .collect();
            emit(&table(&["GROUP", "STATE", "PROTOCOL-TYPE"], rows))
        }
    }
}

/// A group as DescribeGroups shows it.
struct GroupDescription {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberDescription>,
}

struct MemberDescription {
    member_id: String,
    client_id: String,
    client_host: String,
    assignment: BTreeMap<String, Vec<i32>>,
}

async fn describe_group(coordinator: &mut Connection, group: &str) -> Result<GroupDescription> {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(text(group))]);
    let response = coordinator.call(request).await?;
    let described = response
        .groups
        .into_iter()
        .next()
        .context("DescribeGroups answered with no group")?;
    check(
        described.error_code,
        described.error_message.as_ref(),
        || format!("DescribeGroups for group '{group}'"),
    )?;
    let consumer = described.protocol_type.as_str() == "consumer";
    let members = described
        .members
        .into_iter()
        .map(|member| MemberDescription {
            member_id: member.member_id.to_string(),
            client_id: member.client_id.to_string(),
            client_host: member.client_host.to_string(),
            // Only "consumer" groups carry ConsumerProtocol assignments.
            assignment: if consumer {
                decode_assignment(member.member_assignment).unwrap_or_default()
            } else {
                BTreeMap::new()
            },
        })
        .collect();
    Ok(GroupDescription {
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        protocol: described.protocol_data.to_string(),
        members,
    })
}

/// One partition row of `group describe`.
struct Lag {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    /// The last stable offset (see [`end_offsets`]).
    end: Option<i64>,
    member_id: Option<String>,
}

impl Lag {
    fn lag(&self) -> Option<i64> {
        Some((self.end? - self.committed?).max(0))
    }
}

async fn describe(args: DescribeArgs) -> Result<()> {
    let mut client = args.connect.client().await?;
    let coordinator = client.coordinator(&args.group).await?;
    let connection = client.at(&coordinator.address).await?;
    let group = describe_group(connection, &args.group).await?;
    let committed = fetch_committed(connection, &args.group, None).await?;
    let mut owners: BTreeMap<(String, i32), String> = BTreeMap::new();
    for member in &group.members {
        for (topic, partitions) in &member.assignment {
            for partition in partitions {
                owners.insert((topic.clone(), *partition), member.member_id.clone());
            }
        }
    }
    let keys: BTreeSet<(String, i32)> = committed.keys().chain(owners.keys()).cloned().collect();
    let ends = end_offsets(&mut client, &keys).await?;
    let lags: Vec<Lag> = keys
        .into_iter()
        .map(|key| Lag {
            committed: committed.get(&key).copied(),
            end: ends.get(&key).copied(),
            member_id: owners.get(&key).cloned(),
            topic: key.0,
            partition: key.1,
        })
        .collect();
    match args.format {
        OutputFormat::Json => emit(&describe_json(&args.group, &coordinator, &group, &lags)?),
        OutputFormat::Text => emit(&describe_text(&args.group, &coordinator, &group, &lags)),
    }
}

/// Last stable offsets of `partitions` (ListOffsets read_committed): lag
/// counts what a read_committed consumer of the group has left to read,
/// so an open transaction's records count once it commits, and aborted
/// ones (which such a consumer skips) no longer hold the end back.
/// Partitions of vanished topics are left out.
async fn end_offsets(client: &mut Client, partitions: &BTreeSet<(String, i32)>) -> Result<Offsets> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let mut ends = Offsets::new();
    for (name, partitions) in by_topic {
        let Ok(topic) = client.topic(name).await else {
            continue;
        };
        let queries: Vec<(i32, i64)> = partitions
            .into_iter()
            .filter(|p| topic.partition(*p).is_ok())
            .map(|p| (p, LATEST_TIMESTAMP))
            .collect();
        let lsos = client
            .list_offsets(&topic, &queries, IsolationLevel::ReadCommitted)
            .await?;
        for (partition, end) in lsos {
            ends.insert((name.to_string(), partition), end);
        }
    }
    Ok(ends)
}

fn describe_json(
    name: &str,
    coordinator: &crate::client::Coordinator,
    group: &GroupDescription,
    lags: &[Lag],
) -> Result<String> {
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.member_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "assignment": m.assignment,
            })
        })
        .collect();
    let offsets: Vec<Value> = lags
        .iter()
        .map(|l| {
            json!({
                "topic": l.topic,
                "partition": l.partition,
                "committed_offset": l.committed,
                "end_offset": l.end,
                "lag": l.lag(),
                "member_id": l.member_id,
            })
        })
        .collect();
    let total_lag: i64 = lags.iter().filter_map(Lag::lag).sum();
    let document = json!({
        "group": name,
        "coordinator": {"node_id": coordinator.node_id, "address": coordinator.address},
        "state": group.state,
        "protocol_type": group.protocol_type,
        "protocol": group.protocol,
        "members": members,
        "offsets": offsets,
        "total_lag": total_lag,
    });
    Ok(serde_json::to_string_pretty(&document)? + "\n")
}

fn describe_text(
    name: &str,
    coordinator: &crate::client::Coordinator,
    group: &GroupDescription,
    lags: &[Lag],
) -> String {
    let mut out = format!("GROUP        {name}\n");
    out += &format!(
        "COORDINATOR  {} (node {})\n",
        coordinator.address, coordinator.node_id
    );
    out += &format!("STATE        {}\n", group.state);
    match (group.protocol_type.as_str(), group.protocol.as_str()) {
        ("", _) => {}
        (protocol_type, "") => out += &format!("PROTOCOL     {protocol_type}\n"),
        (protocol_type, protocol) => out += &format!("PROTOCOL     {protocol_type} ({protocol})\n"),
    }
    out += &format!("MEMBERS      {}\n", group.members.len());
    out += &format!(
        "TOTAL-LAG    {}\n",
        lags.iter().filter_map(Lag::lag).sum::<i64>()
    );
    if !group.members.is_empty() {
        out.push('\n');
        out += &members_table(group);
    }
    if !lags.is_empty() {
        out.push('\n');
        out += &lags_table(lags);
    }
    out
}

fn members_table(group: &GroupDescription) -> String {
    let rows = group
        .members
        .iter()
        .map(|m| {
            let assigned: Vec<String> = m
                .assignment
                .iter()
                .map(|(topic, partitions)| format!("{topic}{partitions:?}"))
                .collect();
            vec![
                m.member_id.clone(),
                m.client_id.clone(),
                m.client_host.clone(),
                assigned.join(" "),
            ]
        })
        .collect();
    table(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNED"], rows)
}

fn lags_table(lags: &[Lag]) -> String {
    let dash = |value: Option<i64>| value.map_or("-".to_string(), |v| v.to_string());
    let rows = lags
        .iter()
        .map(|l| {
            vec![
                l.topic.clone(),
                l.partition.to_string(),
                dash(l.committed),
                dash(l.end),
                dash(l.lag()),
                l.member_id.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "TOPIC",
            "PARTITION",
            "COMMITTED-OFFSET",
            "END-OFFSET",
            "LAG",
            "MEMBER-ID",
        ],
        rows,
    )
}

async fn delete(args: DeleteArgs) -> Result<()> {
    let mut client = args.connect.client().await?;
    let mut failed = 0;
    let mut deleted = String::new();
    for group in &args.groups {
        match delete_one(&mut client, group).await {
            Ok(()) => deleted += &format!("deleted group {group}\n"),
            Err(error) => {
                failed += 1;
                eprintln!("cannot delete group '{group}': {error:#}");
            }
        }
    }
    emit(&deleted)?;
    if failed > 0 {
        bail!("{failed} of {} groups not deleted", args.groups.len());
    }
    Ok(())
}

async fn delete_one(client: &mut Client, group: &str) -> Result<()> {
    let coordinator = client.coordinator(group).await?;
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(text(group))]);
    let response = client.at(&coordinator.address).await?.call(request).await?;
    let result = response
        .results
        .iter()
        .find(|r| r.group_id.as_str() == group)
        .context("DeleteGroups did not answer for the group")?;
    match error_text(result.error_code, None) {
        Some(error) => bail!("{error}"),
        None => Ok(()),
    }
}

async fn reset_offsets(args: ResetOffsetsArgs) -> Result<()> {
    let progress = super::progress::Progress::stage(
        false,
        &format!(
            "finding the new offsets of group '{}' on '{}'",
            args.group, args.topic
        ),
    );
    let mut client = args.connect.client().await?;
    let topic = client.topic(&args.topic).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(partition) => vec![topic.partition(partition)?.partition],
        None => topic.partitions.iter().map(|p| p.partition).collect(),
    };
    let coordinator = client.coordinator(&args.group).await?;
    let group = describe_group(client.at(&coordinator.address).await?, &args.group).await?;
    if !matches!(group.state.as_str(), "Empty" | "Dead") {
        bail!(
            "cannot reset offsets of group '{}' while it is {} with {} members; stop its consumers first",
            args.group,
            group.state,
            group.members.len()
        );
    }
    let asked = BTreeMap::from([(args.topic.clone(), partitions.clone())]);
    let old = fetch_committed(
        client.at(&coordinator.address).await?,
        &args.group,
        Some(&asked),
    )
    .await?;
    // `latest` is the last stable offset, as for `sluice consume`: the
    // records of a transaction still open are read once it commits,
    // not skipped.
    let isolation = IsolationLevel::ReadCommitted;
    let targets = resolve_positions(&mut client, &topic, &partitions, args.to, isolation).await?;
    let new: Offsets = targets
        .iter()
        .map(|(partition, offset)| ((args.topic.clone(), *partition), *offset))
        .collect();
    progress.finish();
    let rows = new
        .iter()
        .map(|(key, offset)| {
            let before = old.get(key).map_or("-".to_string(), i64::to_string);
            vec![key.0.clone(), key.1.to_string(), before, offset.to_string()]
        })
        .collect();
    emit(&table(
        &["TOPIC", "PARTITION", "OLD-OFFSET", "NEW-OFFSET"],
        rows,
    ))?;
    if args.dry_run {
        eprintln!("dry run: nothing committed");
        return Ok(());
    }
    let connection = client.at(&coordinator.address).await?;
    commit(connection, &args.group, -1, "", &new).await?;
    eprintln!("committed {} offsets for group '{}'", new.len(), args.group);
    Ok(())
}
