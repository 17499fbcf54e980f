//! `sluice processor state`: queries of a processor's committed state over
//! the admin API (`/v1/processors/{name}/stores/{store}/…`).

use anyhow::Result;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::{parse_name, pretty, AdminArgs};
use crate::cli::admin::{encode, Admin};
use crate::cli::{emit, OutputFormat};

/// `sluice processor state` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum StateCommand {
    /// The committed value of one key, with the input position it reflects.
    #[command(after_help = "Example:\n  sluice processor state get page-counts counts /home")]
    Get(GetArgs),
    /// Committed entries in key order: all, a prefix, or a range.
    #[command(
        after_help = "Examples:\n  sluice processor state scan balances accounts\n  \
        sluice processor state scan page-counts counts --prefix /blog --limit 20 --format json"
    )]
    Scan(ScanArgs),
    /// A key's windows (windowed stores), optionally in a time range.
    #[command(
        after_help = "Example:\n  sluice processor state windows views-per-minute counts /home \\\n      --from-ms 1767225600000"
    )]
    Windows(WindowsArgs),
}

/// What every query names.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// Processor name.
    #[arg(value_parser = parse_name)]
    pub(crate) name: String,
    /// Store name (as deployed with --store).
    pub(crate) store: String,
}

/// Which partitions a query reads.
#[derive(Debug, Args)]
pub(crate) struct Among {
    /// Look only in this input partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Also answer from partitions rebuilding lost state by processing
    /// their input again (as of how far they got), instead of failing.
    #[arg(long)]
    stale: bool,
}

impl Among {
    /// The query parameters saying so.
    fn query(&self) -> Vec<String> {
        let mut query = Vec::new();
        if let Some(partition) = self.partition {
            query.push(format!("partition={partition}"));
        }
        if self.stale {
            query.push("stale=true".to_string());
        }
        query
    }
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    target: Target,
    /// The key (UTF-8).
    key: String,
    #[command(flatten)]
    among: Among,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    #[command(flatten)]
    target: Target,
    /// Keys starting with this.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    prefix: Option<String>,
    /// Keys at or after this.
    #[arg(long)]
    from: Option<String>,
    /// Keys before this.
    #[arg(long)]
    to: Option<String>,
    /// Entries to print at most (the broker pages by 1000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    among: Among,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct WindowsArgs {
    #[command(flatten)]
    target: Target,
    /// The key (UTF-8).
    key: String,
    /// Windows starting at or after this time (milliseconds since the epoch).
    #[arg(long)]
    from_ms: Option<i64>,
    /// Windows starting at or before this time.
    #[arg(long)]
    to_ms: Option<i64>,
    #[command(flatten)]
    among: Among,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Runs a `sluice processor state` subcommand.
pub(crate) async fn run(command: StateCommand) -> Result<()> {
    match command {
        StateCommand::Get(args) => get(args).await,
        StateCommand::Scan(args) => scan(args).await,
        StateCommand::Windows(args) => windows(args).await,
    }
}

fn store_path(target: &Target) -> String {
    format!(
        "/v1/processors/{}/stores/{}",
        target.name,
        encode(&target.store)
    )
}

/// A value as text: JSON printed compactly, text as is.
fn value_text(answer: &Value) -> String {
    match answer.get("value") {
        Some(Value::String(text)) if answer["encoding"] != "json" => text.clone(),
        Some(value) => value.to_string(),
        None => String::new(),
    }
}

async fn get(args: GetArgs) -> Result<()> {
    let admin = Admin::from_args(&args.admin)?;
    let path = format!(
        "{}/keys/{}?{}",
        store_path(&args.target),
        encode(&args.key),
        args.among.query().join("&")
    );
    let answer = admin.send(admin.request(Method::GET, &path)).await?;
    match args.format {
        OutputFormat::Json => emit(&pretty(&answer)?),
        OutputFormat::Text => emit(&format!("{}\n", value_text(&answer))),
    }
}

async fn scan(args: ScanArgs) -> Result<()> {
    let admin = Admin::from_args(&args.admin)?;
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![format!("limit={}", args.limit.min(1000))];
        for (name, value) in [
            ("prefix", &args.prefix),
            ("from", &args.from),
            ("to", &args.to),
        ] {
            if let Some(value) = value {
                query.push(format!("{name}={}", encode(value)));
            }
        }
        query.extend(args.among.query());
        if let Some(cursor) = &cursor {
            query.push(format!("cursor={}", encode(cursor)));
        }
        let path = format!("{}/keys?{}", store_path(&args.target), query.join("&"));
        let answer = admin.send(admin.request(Method::GET, &path)).await?;
        if let Some(page) = answer["entries"].as_array() {
            entries.extend(page.iter().cloned());
        }
        cursor = answer["cursor"].as_str().map(str::to_string);
        if cursor.is_none() || entries.len() >= args.limit {
            break;
        }
    }
    entries.truncate(args.limit);
    match args.format {
        OutputFormat::Json => emit(&pretty(&Value::from(entries))?),
        OutputFormat::Text => emit(
            &entries
                .iter()
                .map(|e| format!("{}\t{}\n", e["key"].as_str().unwrap_or(""), value_text(e)))
                .collect::<String>(),
        ),
    }
}

async fn windows(args: WindowsArgs) -> Result<()> {
    let admin = Admin::from_args(&args.admin)?;
    let mut query = Vec::new();
    if let Some(from) = args.from_ms {
        query.push(format!("from={from}"));
    }
    if let Some(to) = args.to_ms {
        query.push(format!("to={to}"));
    }
    query.extend(args.among.query());
    let path = format!(
        "{}/windows/{}?{}",
        store_path(&args.target),
        encode(&args.key),
        query.join("&")
    );
    let answer = admin.send(admin.request(Method::GET, &path)).await?;
    match args.format {
        OutputFormat::Json => emit(&pretty(&answer)?),
        OutputFormat::Text => emit(
            &answer["windows"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|w| format!("{}\t{}\t{}\n", w["start"], w["end"], value_text(w)))
                .collect::<String>(),
        ),
    }
}
