//! `sluice transactions`: list and describe transactional ids, and abort a
//! hung transaction, like `rpk cluster txn` and Kafka's
//! `kafka-transactions.sh`.
//!
//! Aborting is done the way Kafka allows it without a special API: the
//! CLI takes over the transactional id with InitProducerId (with the id's
//! own timeout, so its settings are unchanged), which makes the
//! coordinator abort the open transaction and bump the producer epoch.
//! The hung producer is fenced: its next request gets PRODUCER_FENCED, and
//! a restarted producer with the same id starts cleanly. The CLI
//! describes the id before (to refuse when nothing is open and to report
//! what is aborted) and after (to confirm CompleteAbort).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::{emit, table, ConnectArgs, OutputFormat};
use crate::client::transactions::{self, ListFilter, TransactionDescription};
use crate::start_position::format_rfc3339;

/// Transaction timeout sent when taking over an id whose own timeout is
/// unknown; within Kafka's and Sluice's default maximum (15 minutes).
const TAKE_OVER_TIMEOUT_MS: i32 = 60_000;

/// `sluice transactions` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TransactionsCommand {
    /// List transactional ids: state, producer, timeout, partitions, and
    /// how long the open transaction has been open.
    #[command(
        after_help = "Columns: TRANSACTIONAL-ID, STATE, PRODUCER-ID, EPOCH, TIMEOUT, \
        PARTITIONS (how many the open or last transaction wrote to), AGE (how long the \
        open transaction has been open; - when none is).\n\n\
        Examples:\n  \
        sluice transactions list\n  \
        sluice transactions list --state ongoing --min-age-ms 60000   # open for a minute or more\n  \
        sluice transactions list --format json"
    )]
    List(ListArgs),
    /// Show transactional ids in full, with the partitions of their open
    /// (or last) transaction.
    #[command(
        after_help = "An unknown id is an error naming it (exit status 1); the \
        others are still shown.\n\n\
        Examples:\n  \
        sluice transactions describe orders-etl-0\n  \
        sluice transactions describe orders-etl-0 orders-etl-1 --format json"
    )]
    Describe(DescribeArgs),
    /// Abort the open transaction of a transactional id and fence its
    /// producer.
    #[command(
        after_help = "How: the CLI calls InitProducerId with the transactional id, \
        as a restarted producer would. The coordinator aborts the open transaction (its \
        records are never shown to read_committed consumers and the last stable offset \
        moves past them) and bumps the producer epoch, so the old producer is fenced: \
        its next write, AddPartitionsToTxn or EndTxn gets PRODUCER_FENCED. A producer \
        started again with the same id carries on normally.\n\n\
        An id with no open transaction is refused (exit status 1) unless --if-open is \
        given; a transaction already being committed cannot be aborted.\n\n\
        Examples:\n  \
        sluice transactions list --state ongoing --min-age-ms 600000\n  \
        sluice transactions abort orders-etl-0"
    )]
    Abort(AbortArgs),
}

/// A transaction state to list (Kafka's names; any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "PascalCase")]
pub(crate) enum StateFilter {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl StateFilter {
    fn kafka_name(self) -> String {
        self.to_possible_value()
            .expect("no variant is skipped")
            .get_name()
            .to_string()
    }
}

/// `sluice transactions list` options.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only ids in these states (repeat or separate with commas).
    #[arg(
        long = "state",
        value_enum,
        ignore_case = true,
        value_delimiter = ',',
        value_name = "STATE"
    )]
    pub(crate) states: Vec<StateFilter>,
    /// Only transactions open for at least this long (ms).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(i64).range(0..))]
    pub(crate) min_age_ms: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `sluice transactions describe` options.
#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    /// Transactional ids.
    #[arg(required = true, value_name = "TRANSACTIONAL-ID")]
    pub(crate) ids: Vec<String>,
    /// Output format (json: an array, one object per id found).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `sluice transactions abort` options.
#[derive(Debug, Args)]
pub(crate) struct AbortArgs {
    /// The transactional id whose transaction to abort.
    #[arg(value_name = "TRANSACTIONAL-ID")]
    pub(crate) id: String,
    /// Exit 0, doing nothing, when the id has no open transaction.
    #[arg(long)]
    pub(crate) if_open: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// Runs a `sluice transactions` subcommand.
pub(crate) async fn run(command: TransactionsCommand) -> Result<()> {
    match command {
        TransactionsCommand::List(args) => list(args).await,
        TransactionsCommand::Describe(args) => describe(args).await,
        TransactionsCommand::Abort(args) => abort(args).await,
    }
}

async fn list(args: ListArgs) -> Result<()> {
    let mut client = args.connect.client().await?;
    let filter = ListFilter {
        states: args.states.iter().map(|s| s.kafka_name()).collect(),
        min_age_ms: args.min_age_ms,
    };
    let listed = transactions::list(&mut client, &filter).await?;
    let now_ms = now_ms();
    match args.format {
        OutputFormat::Json => {
            let objects: Vec<Value> = listed.iter().map(|t| to_json(t, now_ms)).collect();
            emit(&(serde_json::to_string_pretty(&objects)? + "\n"))
        }
        OutputFormat::Text => {
            let rows = listed
                .iter()
                .map(|t| {
                    vec![
                        t.transactional_id.clone(),
                        t.state.clone(),
                        t.producer_id.to_string(),
                        t.producer_epoch.to_string(),
                        duration_text(i64::from(t.timeout_ms)),
                        t.partitions.len().to_string(),
                        age_ms(t, now_ms).map_or("-".into(), duration_text),
                    ]
                })
                .collect();
            let headers = [
                "TRANSACTIONAL-ID",
                "STATE",
                "PRODUCER-ID",
                "EPOCH",
                "TIMEOUT",
                "PARTITIONS",
                "AGE",
            ];
            emit(&table(&headers, rows))
        }
    }
}

async fn describe(args: DescribeArgs) -> Result<()> {
    let mut client = args.connect.client().await?;
    let mut found = Vec::new();
    let mut failed = 0;
    for id in &args.ids {
        match transactions::describe(&mut client, id).await {
            Ok(description) => found.push(description),
            Err(error) => {
                failed += 1;
                eprintln!("{error:#}");
            }
        }
    }
    let now_ms = now_ms();
    let out = match args.format {
        OutputFormat::Json => {
            let objects: Vec<Value> = found.iter().map(|t| to_json(t, now_ms)).collect();
            serde_json::to_string_pretty(&objects)? + "\n"
        }
        OutputFormat::Text => {
            let blocks: Vec<String> = found.iter().map(|t| describe_text(t, now_ms)).collect();
            blocks.join("\n")
        }
    };
    emit(&out)?;
    if failed > 0 {
        bail!("{failed} of {} transactional ids not found", args.ids.len());
    }
    Ok(())
}

/// One id in full, for people.
fn describe_text(t: &TransactionDescription, now_ms: i64) -> String {
    let mut out = format!("TRANSACTIONAL-ID  {}\n", t.transactional_id);
    out += &format!("STATE             {}\n", t.state);
    out += &format!(
        "PRODUCER          id {}, epoch {}\n",
        t.producer_id, t.producer_epoch
    );
    out += &format!(
        "TIMEOUT           {} ({} ms)\n",
        duration_text(i64::from(t.timeout_ms)),
        t.timeout_ms
    );
    if let Some(age) = age_ms(t, now_ms) {
        out += &format!(
            "STARTED           {} ({} ago)\n",
            format_rfc3339(t.start_time_ms),
            duration_text(age)
        );
    }
    out += &format!("PARTITIONS        {}\n", t.partitions.len());
    if !t.partitions.is_empty() {
        let rows = t
            .partitions
            .iter()
            .map(|(topic, partition)| vec![topic.clone(), partition.to_string()])
            .collect();
        out.push('\n');
        out += &table(&["TOPIC", "PARTITION"], rows);
    }
    out
}

async fn abort(args: AbortArgs) -> Result<()> {
    let mut client = args.connect.client().await?;
    let id = args.id.as_str();
    let before = transactions::describe(&mut client, id).await?;
    match before.state.as_str() {
        "Ongoing" => {}
        "PrepareAbort" => bail!("the transaction of '{id}' is already being aborted"),
        "PrepareCommit" => {
            bail!("the transaction of '{id}' is being committed; it can no longer be aborted")
        }
        state if args.if_open => {
            eprintln!(
                "transactional id '{id}' has no open transaction (state {state}): nothing to abort"
            );
            return Ok(());
        }
        state => bail!(
            "transactional id '{id}' has no open transaction (state {state}): nothing to abort \
             (--if-open makes this exit 0)"
        ),
    }
    let timeout_ms = Some(before.timeout_ms)
        .filter(|ms| *ms > 0)
        .unwrap_or(TAKE_OVER_TIMEOUT_MS);
    let (producer_id, producer_epoch) =
        transactions::take_over(&mut client, id, timeout_ms).await?;
    let after = transactions::describe(&mut client, id).await?;
    if after.state != "CompleteAbort" {
        bail!(
            "the transaction of '{id}' ended before it could be aborted (now {}); its producer \
             (epoch {}) is fenced all the same",
            after.state,
            before.producer_epoch
        );
    }
    let partitions: Vec<String> = before
        .partitions
        .iter()
        .map(|(topic, partition)| format!("{topic}-{partition}"))
        .collect();
    match args.format {
        OutputFormat::Json => {
            let document = json!({
                "transactional_id": id,
                "aborted": true,
                "state": after.state,
                "partitions": partitions_json(&before.partitions),
                "fenced_producer_id": before.producer_id,
                "fenced_producer_epoch": before.producer_epoch,
                "producer_id": producer_id,
                "producer_epoch": producer_epoch,
            });
            emit(&(serde_json::to_string_pretty(&document)? + "\n"))
        }
        OutputFormat::Text => emit(&format!(
            "aborted the transaction of '{id}' on {} partitions: {}\n\
             fenced producer id {} epoch {}: its next request gets PRODUCER_FENCED \
             (the id is now at epoch {producer_epoch})\n",
            partitions.len(),
            partitions.join(", "),
            before.producer_id,
            before.producer_epoch,
        )),
    }
}

/// One id as a JSON object (list and describe).
fn to_json(t: &TransactionDescription, now_ms: i64) -> Value {
    json!({
        "transactional_id": t.transactional_id,
        "state": t.state,
        "producer_id": t.producer_id,
        "producer_epoch": t.producer_epoch,
        "timeout_ms": t.timeout_ms,
        "start_time_ms": (t.start_time_ms >= 0).then_some(t.start_time_ms),
        "age_ms": age_ms(t, now_ms),
        "partition_count": t.partitions.len(),
        "partitions": partitions_json(&t.partitions),
    })
}

fn partitions_json(partitions: &[(String, i32)]) -> Value {
    partitions
        .iter()
        .map(|(topic, partition)| json!({"topic": topic, "partition": partition}))
        .collect()
}

/// How long the open transaction has been open, by this machine's clock
/// (never negative); `None` when none is open.
fn age_ms(t: &TransactionDescription, now_ms: i64) -> Option<i64> {
    (t.is_open() && t.start_time_ms >= 0).then(|| (now_ms - t.start_time_ms).max(0))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// `850ms`, `12.3s`, `5m07s`, `2h03m`, `3d04h`.
fn duration_text(ms: i64) -> String {
    match ms {
        ..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{}.{}s", ms / 1_000, ms % 1_000 / 100),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1_000 % 60),
        3_600_000..=86_399_999 => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
        _ => format!("{}d{:02}h", ms / 86_400_000, ms / 3_600_000 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(state: &str, start_time_ms: i64) -> TransactionDescription {
        TransactionDescription {
            transactional_id: "etl-0".into(),
            state: state.into(),
            producer_id: 4001,
            producer_epoch: 3,
            timeout_ms: 60_000,
            start_time_ms,
            partitions: vec![("orders".into(), 0), ("orders".into(), 2)],
        }
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration_text(850), "850ms");
        assert_eq!(duration_text(12_345), "12.3s");
        assert_eq!(duration_text(60_000), "1m00s");
        assert_eq!(duration_text(307_000), "5m07s");
        assert_eq!(duration_text(7_380_000), "2h03m");
        assert_eq!(duration_text(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
    }

    #[test]
    fn age_only_while_a_transaction_is_open() {
        let now = 1_700_000_010_000;
        let open = sample("Ongoing", 1_700_000_000_000);
        assert_eq!(age_ms(&open, now), Some(10_000));
        assert_eq!(age_ms(&open, 1_600_000_000_000), Some(0), "clock skew");
        assert_eq!(age_ms(&sample("CompleteAbort", -1), now), None);
        let json = to_json(&open, now);
        assert_eq!(json["age_ms"], 10_000);
        assert_eq!(json["partition_count"], 2);
        assert_eq!(
            json["partitions"][1],
            json!({"topic": "orders", "partition": 2})
        );
        let ended = to_json(&sample("CompleteCommit", -1), now);
        assert!(ended["age_ms"].is_null() && ended["start_time_ms"].is_null());
    }

    #[test]
    fn describe_text_lists_the_partitions() {
        let text = describe_text(&sample("Ongoing", 1_700_000_000_000), 1_700_000_065_000);
        assert!(text.contains("STATE             Ongoing\n"), "{text}");
        assert!(
            text.contains("STARTED           2023-11-14T22:13:20.000Z (1m05s ago)"),
            "{text}"
        );
        assert!(text.contains("orders  2\n"), "{text}");
        let text = describe_text(&sample("Empty", -1), 0);
        assert!(!text.contains("STARTED"), "{text}");
    }

    #[test]
    fn state_filters_use_kafkas_names() {
        assert_eq!(StateFilter::PrepareAbort.kafka_name(), "PrepareAbort");
        assert_eq!(
            StateFilter::from_str("ongoing", true).unwrap(),
            StateFilter::Ongoing
        );
    }
}
