//! `sluice processor`: deploy, list, inspect, pause, resume and remove the
//! WebAssembly processors of a running broker. Unlike the other client
//! verbs this one speaks the broker's HTTP admin API (`/v1/processors`),
//! not the Kafka protocol: processors are a Sluice feature with no Kafka
//! API to carry them.
//!
//! Arguments are checked here before anything is sent (the name, the topic
//! names, the `.wasm` magic, `k=v` pairs, positions, sizes), so a typo costs
//! no round trip; the broker checks everything again. Status objects are
//! read leniently (unknown fields ignored, missing ones defaulted) so the
//! server can grow them, and `--format json` prints exactly what the broker
//! answered.

mod state;
mod status;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use self::status::{deployed_line, list_text, parse_list, parse_status, status_text};
use super::{emit, OutputFormat};
pub(crate) use crate::cli::admin::{Admin, AdminArgs};
use crate::processor::spec::OnError;
use crate::start_position::StartPosition;

/// Longest processor name the CLI accepts (the broker derives a consumer
/// group name and state paths from it).
const NAME_CHARS_MAX: usize = 200;

/// Longest Kafka topic name.
const TOPIC_CHARS_MAX: usize = 249;

/// Largest `.wasm` file `deploy` reads into memory and uploads.
const WASM_BYTES_MAX: u64 = 512 * 1024 * 1024;

const DEPLOY_EXAMPLES: &str = "Examples:
  sluice processor deploy big-orders --wasm target/wasm32-wasip2/release/big_orders.wasm \\
      --input orders --output big-orders --config threshold=100
  sluice processor deploy router --wasm router.wasm --input events \\
      --output clicks --output views --on-error dead-letter=events-dlq --from earliest
  sluice processor deploy enrich --wasm enrich.wasm --input a --input b --output out \\
      --memory-max 64MiB --timeout-ms 200 --batch-records 500 --format json
  sluice processor deploy page-counts --wasm windowed_count.wasm --input page_views \\
      --output page-counts --store counts --config size_ms=60000 --config emit=final

Deploying under an existing name replaces that processor's plugin and settings;
it resumes from its committed offsets (and keeps its state) unless --from says
otherwise. A processor with state needs --reset-state with --from.";

/// `sluice processor` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ProcessorCommand {
    /// Upload a .wasm plugin and run it over input topics (or redeploy one).
    #[command(after_help = DEPLOY_EXAMPLES)]
    Deploy(Box<DeployArgs>),
    /// List the broker's processors with their state, lag and counters.
    #[command(after_help = "Examples:\n  sluice processor list\n  \
        sluice processor list --admin http://broker-1:9644 --format json")]
    List(ListArgs),
    /// Show one processor: settings, counters, every input partition's
    /// position and lag, and its last error.
    #[command(after_help = "Example:\n  sluice processor status big-orders")]
    Status(NameArgs),
    /// Stop processing (offsets stay committed; resume continues from them).
    #[command(after_help = "Example:\n  sluice processor pause big-orders")]
    Pause(NameArgs),
    /// Continue a paused processor, and restart its failed partitions.
    #[command(after_help = "Example:\n  sluice processor resume big-orders")]
    Resume(NameArgs),
    /// Stop a processor and delete it from the broker (no confirmation).
    #[command(after_help = "Example:\n  sluice processor remove big-orders")]
    Remove(RemoveArgs),
    /// Query a processor's committed state: a key, a scan, a key's windows.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Print the admin API's token, for curl and scripts (--token or
    /// SLUICE_TOKEN, else the broker's data dir's admin.token when this
    /// machine can read it).
    #[command(
        after_help = "Example:\n  curl -H \"Authorization: Bearer $(sluice processor token)\" \\\n      127.0.0.1:9644/v1/processors"
    )]
    Token(TokenArgs),
}

/// `sluice processor token` options.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `sluice processor deploy` options.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// Processor name: letters, digits, '.', '_' and '-' (at most 200).
    #[arg(value_parser = parse_name)]
    pub(crate) name: String,
    /// The plugin: a WebAssembly component built for wasm32-wasip2
    /// (`sluice plugin build` prints its path).
    #[arg(long, value_name = "FILE")]
    pub(crate) wasm: PathBuf,
    /// Topic to read; repeat for several.
    #[arg(long = "input", value_name = "TOPIC", required = true, value_parser = parse_topic)]
    pub(crate) inputs: Vec<String>,
    /// Topic to write; repeat for several (the first is the default output).
    #[arg(long = "output", value_name = "TOPIC", required = true, value_parser = parse_topic)]
    pub(crate) outputs: Vec<String>,
    /// Plugin configuration entry; repeat for several.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config_pair)]
    pub(crate) config: Vec<(String, String)>,
    /// When the plugin fails: fail (stop the partition until resumed), skip
    /// (drop the failing records and go on), dead-letter (copy them, with
    /// headers saying why, to NAME.dlq and go on), or dead-letter=TOPIC
    /// [default: fail].
    #[arg(long, value_name = "POLICY", value_parser = parse_on_error)]
    pub(crate) on_error: Option<String>,
    /// Where to start reading: earliest, latest, an OFFSET, `@MILLIS` or an
    /// RFC 3339 time [default: the committed offsets, else earliest].
    #[arg(long, value_name = "POSITION", value_parser = StartPosition::parse)]
    pub(crate) from: Option<StartPosition>,
    /// Memory one plugin instance may use, e.g. 64MiB [broker default: 64 MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) memory_max: Option<u64>,
    /// Time one process call may take, in milliseconds [broker default: 1000].
    #[arg(long, value_name = "MS")]
    pub(crate) timeout_ms: Option<u64>,
    /// Records handed to the plugin in one call, at most [broker default: 1024].
    #[arg(long, value_name = "N")]
    pub(crate) batch_records: Option<u64>,
    /// Bytes handed to the plugin in one call, at most, e.g. 1MiB [broker default: 1 MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) batch_bytes: Option<u64>,
    /// Bytes the plugin may return from one call, at most [broker default: 16 MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub(crate) output_bytes_max: Option<u64>,
    /// Outputs the plugin may write for one input record, at most [broker default: 1000].
    #[arg(long, value_name = "N")]
    pub(crate) outputs_per_record_max: Option<u64>,
    /// Keyed state store the plugin may open; repeat for several. A
    /// processor with stores keeps state in the broker (RocksDB).
    #[arg(long = "store", value_name = "NAME")]
    pub(crate) stores: Vec<String>,
    /// exactly-once or at-least-once [default: exactly-once with
    /// --store, else at-least-once].
    #[arg(long, value_name = "GUARANTEE", value_parser = ["exactly-once", "at-least-once"])]
    pub(crate) guarantee: Option<String>,
    /// How often a stateful or exactly-once processor commits while busy,
    /// in milliseconds (results wait at most this long for their commit);
    /// once caught up it commits sooner, at most 4 times an interval
    /// [default: 100].
    #[arg(long, value_name = "MS")]
    pub(crate) commit_interval_ms: Option<u64>,
    /// Let stream time follow the wall clock after this many milliseconds
    /// without input, so windows close when input goes quiet [default: off].
    #[arg(long, value_name = "MS")]
    pub(crate) idle_advance_ms: Option<u64>,
    /// With --from: throw the processor's state away and reprocess.
    #[arg(long, requires = "from")]
    pub(crate) reset_state: bool,
    /// Also write every commit's state changes to the compacted topic
    /// sluice-processor-NAME-changelog (in the commit's transaction), and
    /// restore lost state from it instead of reprocessing the input.
    /// Exactly-once processors with stores only.
    #[arg(long)]
    pub(crate) changelog: bool,
    /// A topic the plugin reads as a read-only store (a lookup table,
    /// latest value per key, every partition), as STORE=TOPIC; repeat for
    /// several.
    #[arg(long = "table", value_name = "STORE=TOPIC", value_parser = parse_config_pair)]
    pub(crate) tables: Vec<(String, String)>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `sluice processor list` options.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// Options of the verbs that name one processor and print its status.
#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    /// Processor name.
    #[arg(value_parser = parse_name)]
    pub(crate) name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `sluice processor remove` options.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// Processor name.
    #[arg(value_parser = parse_name)]
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// Runs a `sluice processor` subcommand.
pub(crate) async fn run(command: ProcessorCommand) -> Result<()> {
    match command {
        ProcessorCommand::Deploy(args) => deploy(*args).await,
        ProcessorCommand::List(args) => list(args).await,
        ProcessorCommand::Status(args) => show(args, Method::GET, "").await,
        ProcessorCommand::Pause(args) => show(args, Method::POST, "/pause").await,
        ProcessorCommand::Resume(args) => show(args, Method::POST, "/resume").await,
        ProcessorCommand::Remove(args) => remove(args).await,
        ProcessorCommand::State(command) => state::run(command).await,
        ProcessorCommand::Token(args) => {
            let admin = Admin::from_args(&args.admin)?;
            match admin.token().await {
                Some(token) => {
                    println!("{token}");
                    Ok(())
                }
                None => anyhow::bail!(
                    "no admin token: pass --token or set SLUICE_TOKEN (the broker keeps its \
                     token in <data-dir>/{}, which this machine cannot read or the broker at \
                     {} did not say where)",
                    crate::http::TOKEN_FILE,
                    args.admin.admin
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Argument parsing.

/// A processor name: 1 to 200 of `[A-Za-z0-9._-]`, not `.` or `..` (which
/// would change the meaning of the URL path it is put in).
pub(crate) fn parse_name(raw: &str) -> Result<String, String> {
    check_name(raw, NAME_CHARS_MAX, "processor name")
}

/// A Kafka topic name: 1 to 249 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub(crate) fn parse_topic(raw: &str) -> Result<String, String> {
    check_name(raw, TOPIC_CHARS_MAX, "topic name")
}

fn check_name(raw: &str, chars_max: usize, what: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if raw.len() > chars_max {
        return Err(format!(
            "the {what} has {} characters; at most {chars_max} are allowed",
            raw.len()
        ));
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{bad:?} is not allowed in a {what}; use letters, digits, '.', '_' and '-'"
        ));
    }
    if raw == "." || raw == ".." {
        return Err(format!("{raw:?} is not a valid {what}"));
    }
    Ok(raw.to_string())
}

/// `KEY=VALUE`, split at the first `=`; the key must not be empty, the
/// value may be (and may itself contain `=`).
pub(crate) fn parse_config_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some(("", _)) => Err(format!("{raw:?}: the key before '=' is empty")),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err(format!("{raw:?}: expected KEY=VALUE")),
    }
}

/// A byte count: digits with an optional unit, B, KB/MB/GB (powers of
/// 1000) or KiB/MiB/GiB (powers of 1024), case-insensitive: `1048576`,
/// `64MiB`, `1mb`.
pub(crate) fn parse_bytes(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let digits = raw.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = raw.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?}: expected a byte count such as 1048576, 64MiB or 1MB"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "{raw:?}: unknown unit {other:?}; use B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{raw:?} is too large"))
}

/// Checks an error policy with the broker's own parser (and the named
/// dead-letter topic with the CLI's name rules) before anything is sent;
/// the admin API gets the text as the user wrote it.
fn parse_on_error(raw: &str) -> Result<String, String> {
    if let (OnError::DeadLetter(topic), Some(_)) =
        (OnError::parse(raw, "NAME")?, raw.split_once('='))
    {
        parse_topic(&topic)?;
    }
    Ok(raw.to_string())
}

// ---------------------------------------------------------------------------
// The deploy request.

/// The `spec` part of `PUT /v1/processors/{name}`. Fields the user did not
/// give are left out, so the broker's defaults apply.
#[derive(Debug, Serialize)]
struct DeploySpec {
    inputs: Vec<String>,
    outputs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    config: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "LimitsSpec::is_empty")]
    limits: LimitsSpec,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stores: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guarantee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_advance_ms: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    reset_state: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    changelog: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tables: Vec<TableSpec>,
}

/// A table of the deploy request.
#[derive(Debug, Serialize)]
struct TableSpec {
    store: String,
    topic: String,
}

/// Resource limits asked for at deploy time; each is the broker's default
/// when absent.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
struct LimitsSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_bytes_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_time_ms_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_bytes_per_batch_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outputs_per_record_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_records_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_bytes_max: Option<u64>,
}

impl LimitsSpec {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl DeploySpec {
    fn from_args(args: &DeployArgs) -> Self {
        Self {
            inputs: args.inputs.clone(),
            outputs: args.outputs.clone(),
            config: args.config.clone(),
            on_error: args.on_error.clone(),
            from: args.from.map(|from| from.to_string()),
            limits: LimitsSpec {
                memory_bytes_max: args.memory_max,
                process_time_ms_max: args.timeout_ms,
                output_bytes_per_batch_max: args.output_bytes_max,
                outputs_per_record_max: args.outputs_per_record_max,
                batch_records_max: args.batch_records,
                batch_bytes_max: args.batch_bytes,
            },
            stores: args.stores.clone(),
            guarantee: args.guarantee.clone(),
            commit_interval_ms: args.commit_interval_ms,
            idle_advance_ms: args.idle_advance_ms,
            reset_state: args.reset_state,
            changelog: args.changelog,
            tables: args
                .tables
                .iter()
                .map(|(store, topic)| TableSpec {
                    store: store.clone(),
                    topic: topic.clone(),
                })
                .collect(),
        }
    }
}

/// The plugin's bytes, after checking the file is a WebAssembly binary.
fn read_wasm(path: &Path) -> Result<Vec<u8>> {
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("cannot read the plugin {}", path.display()))?;
    if !metadata.is_file() {
        bail!("{} is not a file", path.display());
    }
    if metadata.len() > WASM_BYTES_MAX {
        bail!(
            "{} has {} bytes; at most {WASM_BYTES_MAX} can be deployed",
            path.display(),
            metadata.len()
        );
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the plugin {}", path.display()))?;
    if !bytes.starts_with(b"\0asm") {
        bail!(
            "{} is not a WebAssembly file (it does not start with \\0asm); \
             build the plugin with `sluice plugin build`",
            path.display()
        );
    }
    Ok(bytes)
}

async fn deploy(args: DeployArgs) -> Result<()> {
    let admin = Admin::from_args(&args.admin)?;
    let wasm = read_wasm(&args.wasm)?;
    let spec = serde_json::to_string(&DeploySpec::from_args(&args))?;
    let file_name = args.wasm.file_name().map_or("plugin.wasm".into(), |name| {
        name.to_string_lossy().into_owned()
    });
    let form = Form::new()
        .part("spec", Part::text(spec).mime_str("application/json")?)
        .part(
            "wasm",
            Part::bytes(wasm)
                .file_name(file_name)
                .mime_str("application/wasm")?,
        );
    let path = format!("/v1/processors/{}", args.name);
    // Uploading, compiling and starting are one request: a spinner while
    // it lasts (seconds for a large plugin on a cold cache).
    let progress = match args.format {
        OutputFormat::Text => super::progress::Progress::stage(
            false,
            &format!("deploying {}: uploading, compiling and starting", args.name),
        ),
        OutputFormat::Json => super::progress::Progress::hidden(),
    };
    let status = admin
        .send(admin.request(Method::PUT, &path).multipart(form))
        .await;
    progress.finish();
    let status = status?;
    match args.format {
        OutputFormat::Json => emit(&pretty(&status)?),
        OutputFormat::Text => {
            let parsed = parse_status(&status)?;
            emit(&(deployed_line(&parsed) + &status_text(&parsed)))
        }
    }
}

// ---------------------------------------------------------------------------
// The other verbs.

async fn list(args: ListArgs) -> Result<()> {
    let admin = Admin::from_args(&args.admin)?;
    let answer = admin
        .send(admin.request(Method::GET, "/v1/processors"))
        .await?;
    let processors = answer
        .get("processors")
        .cloned()
        .context("the admin API answered without a \"processors\" list")?;
    match args.format {
        OutputFormat::Json => emit(&pretty(&processors)?),
        OutputFormat::Text => emit(&list_text(&parse_list(&processors)?)),
    }
}

/// `status`, `pause` and `resume`: one request, then the status it answers.
async fn show(args: NameArgs, method: Method, action: &str) -> Result<()> {
    let admin = Admin::from_args(&args.admin)?;
    let path = format!("/v1/processors/{}{action}", args.name);
    let status = admin.send(admin.request(method, &path)).await?;
    match args.format {
        OutputFormat::Json => emit(&pretty(&status)?),
        OutputFormat::Text => {
            let parsed = parse_status(&status)?;
            let head = match action {
                "/pause" => format!("paused {}\n\n", parsed.name),
                "/resume" => format!("resumed {}\n\n", parsed.name),
                _ => String::new(),
            };
            emit(&(head + &status_text(&parsed)))
        }
    }
}

async fn remove(args: RemoveArgs) -> Result<()> {
    let admin = Admin::from_args(&args.admin)?;
    let path = format!("/v1/processors/{}", args.name);
    let answer = admin.send(admin.request(Method::DELETE, &path)).await?;
    let name = answer
        .get("removed")
        .and_then(Value::as_str)
        .unwrap_or(&args.name);
    emit(&format!("removed {name}\n"))
}

fn pretty(value: &Value) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Multipart, Path as UrlPath, State};
    use axum::http::StatusCode;
    use axum::routing::put;
    use axum::{Json, Router};
    use clap::Parser;
    use serde_json::json;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<ProcessorCommand, clap::Error> {
        let cli = Cli::try_parse_from(["sluice", "processor"].iter().chain(args))?;
        match cli.command {
            Command::Processor(command) => Ok(command),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn deploy_args(args: &[&str]) -> DeployArgs {
        match parse(&[&["deploy"], args].concat()) {
            Ok(ProcessorCommand::Deploy(args)) => *args,
            other => panic!("not a deploy: {other:?}"),
        }
    }

    #[test]
    fn config_pairs_split_at_the_first_equals() {
        assert_eq!(parse_config_pair("k=v"), Ok(("k".into(), "v".into())));
        assert_eq!(parse_config_pair("k="), Ok(("k".into(), String::new())));
        assert_eq!(parse_config_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_config_pair("=v").unwrap_err().contains("key"));
        assert!(parse_config_pair("novalue")
            .unwrap_err()
            .contains("KEY=VALUE"));
    }

    #[test]
    fn on_error_forms() {
        for good in ["fail", "skip", "dead-letter", "dead-letter=orders-dlq"] {
            assert_eq!(parse_on_error(good).as_deref(), Ok(good));
        }
        assert!(parse_on_error("dead-letter=").is_err());
        assert!(parse_on_error("dead-letter=a b").is_err());
        assert!(parse_on_error("retry").is_err());
    }

    #[test]
    fn names_and_topics_are_checked() {
        assert_eq!(parse_name("big-orders.v2_1"), Ok("big-orders.v2_1".into()));
        assert!(parse_name("").is_err());
        assert!(parse_name("..").is_err());
        assert!(parse_name("a/b").unwrap_err().contains("'/'"));
        assert!(parse_name(&"x".repeat(200)).is_ok());
        assert!(parse_name(&"x".repeat(201)).is_err());
        assert!(parse_topic(&"t".repeat(249)).is_ok());
        assert!(parse_topic(&"t".repeat(250)).is_err());
        assert!(parse(&["status", "a b"]).is_err());
    }

    #[test]
    fn byte_sizes_take_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1_048_576));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("64 mib"), Ok(64 << 20));
        assert_eq!(parse_bytes("1MB"), Ok(1_000_000));
        assert_eq!(parse_bytes("2KiB"), Ok(2048));
        assert_eq!(parse_bytes("3GB"), Ok(3_000_000_000));
        assert_eq!(parse_bytes("7b"), Ok(7));
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("1.5MiB").is_err());
        assert!(parse_bytes("1TiB").unwrap_err().contains("unit"));
        assert!(parse_bytes("99999999999999999999GiB").is_err());
        assert!(parse_bytes("18446744073709551615GiB").is_err());
    }

    #[test]
    fn deploy_requires_inputs_and_outputs() {
        let missing_input = parse(&["deploy", "p", "--wasm", "p.wasm", "--output", "o"]);
        assert!(missing_input.is_err());
        let missing_output = parse(&["deploy", "p", "--wasm", "p.wasm", "--input", "i"]);
        assert!(missing_output.is_err());
        assert!(parse(&["deploy", "p", "--input", "i", "--output", "o"]).is_err());
    }

    #[test]
    fn the_spec_carries_only_what_was_given() {
        let args = deploy_args(&["p", "--wasm", "p.wasm", "--input", "in", "--output", "out"]);
        let spec = serde_json::to_value(DeploySpec::from_args(&args)).unwrap();
        assert_eq!(spec, json!({"inputs": ["in"], "outputs": ["out"]}));
    }

    #[test]
    fn the_spec_carries_every_option() {
        let args = deploy_args(&[
            "p",
            "--wasm",
            "p.wasm",
            "--input",
            "t1",
            "--input",
            "t2",
            "--output",
            "o1",
            "--output",
            "o2",
            "--config",
            "threshold=100",
            "--config",
            "mode=a=b",
            "--on-error",
            "dead-letter=dlq",
            "--from",
            "2023-11-14T22:13:20Z",
            "--memory-max",
            "64MiB",
            "--timeout-ms",
            "250",
            "--batch-records",
            "500",
            "--batch-bytes",
            "1MB",
            "--output-bytes-max",
            "4KiB",
            "--outputs-per-record-max",
            "8",
        ]);
        let spec = serde_json::to_value(DeploySpec::from_args(&args)).unwrap();
        let expected = json!({
            "inputs": ["t1", "t2"],
            "outputs": ["o1", "o2"],
            "config": [["threshold", "100"], ["mode", "a=b"]],
            "on_error": "dead-letter=dlq",
            "from": "@1700000000000",
            "limits": {
                "memory_bytes_max": 67108864,
                "process_time_ms_max": 250,
                "output_bytes_per_batch_max": 4096,
                "outputs_per_record_max": 8,
                "batch_records_max": 500,
                "batch_bytes_max": 1000000,
            },
        });
        assert_eq!(spec, expected);
    }

    #[test]
    fn positions_are_sent_in_canonical_form() {
        let from = |raw: &str| {
            let args = deploy_args(&[
                "p", "--wasm", "w", "--input", "i", "--output", "o", "--from", raw,
            ]);
            DeploySpec::from_args(&args).from.unwrap()
        };
        assert_eq!(from("earliest"), "earliest");
        assert_eq!(from("beginning"), "earliest");
        assert_eq!(from("latest"), "latest");
        assert_eq!(from("42"), "42");
        assert_eq!(from("@5"), "@5");
        assert!(parse(&[
            "deploy", "p", "--wasm", "w", "--input", "i", "--output", "o", "--from", "-1"
        ])
        .is_err());
    }

    #[test]
    fn only_webassembly_files_are_deployed() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.wasm");
        std::fs::write(&good, b"\0asm\x0d\0\x01\0").unwrap();
        assert_eq!(read_wasm(&good).unwrap().len(), 8);
        let bad = dir.path().join("bad.wasm");
        std::fs::write(&bad, b"#!/bin/sh\n").unwrap();
        let error = format!("{:#}", read_wasm(&bad).unwrap_err());
        assert!(error.contains("not a WebAssembly file"), "{error}");
        let missing = format!("{:#}", read_wasm(&dir.path().join("nope")).unwrap_err());
        assert!(missing.contains("cannot read the plugin"), "{missing}");
        assert!(read_wasm(dir.path()).is_err());
    }

    // -----------------------------------------------------------------------
    // Against a stand-in admin API on loopback.

    /// What the stand-in server saw of a deploy: (name, spec part and its
    /// content type, wasm part's file name, content type and bytes).
    #[derive(Debug, Default, Clone)]
    struct Seen {
        name: String,
        spec: Option<(String, String)>,
        wasm: Option<(String, String, Vec<u8>)>,
    }

    fn sample_status(name: &str) -> Value {
        json!({
            "name": name, "state": "running", "group": format!("sluice-processor-{name}"),
            "wasm_sha256": "0123456789abcdef0123", "wasm_bytes": 8,
            "inputs": ["in"], "outputs": ["out"], "partitions": [
                {"topic": "in", "partition": 0, "state": "running"}
            ]
        })
    }

    async fn record_deploy(
        State(seen): State<Arc<Mutex<Seen>>>,
        UrlPath(name): UrlPath<String>,
        mut multipart: Multipart,
    ) -> (StatusCode, Json<Value>) {
        let mut saw = Seen {
            name: name.clone(),
            ..Seen::default()
        };
        while let Some(field) = multipart.next_field().await.unwrap() {
            let field_name = field.name().unwrap_or_default().to_string();
            let content_type = field.content_type().unwrap_or_default().to_string();
            let file_name = field.file_name().unwrap_or_default().to_string();
            let bytes = field.bytes().await.unwrap().to_vec();
            match field_name.as_str() {
                "spec" => saw.spec = Some((content_type, String::from_utf8(bytes).unwrap())),
                "wasm" => saw.wasm = Some((file_name, content_type, bytes)),
                other => panic!("unexpected part {other}"),
            }
        }
        *seen.lock().unwrap() = saw;
        if name == "refused" {
            let error = json!({"error": "input topic nope does not exist"});
            return (StatusCode::BAD_REQUEST, Json(error));
        }
        (StatusCode::OK, Json(sample_status(&name)))
    }

    /// Serves the stand-in on a free port; returns its URL and what it saw.
    async fn stand_in() -> (String, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = Router::new()
            .route("/v1/processors/{name}", put(record_deploy))
            .route(
                "/v1/processors/{name}/pause",
                axum::routing::post(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("{address}"), seen)
    }

    fn write_wasm(dir: &Path) -> PathBuf {
        let path = dir.join("big_orders.wasm");
        std::fs::write(&path, b"\0asm\x0d\0\x01\0plugin").unwrap();
        path
    }

    #[tokio::test]
    async fn deploy_sends_the_spec_and_the_wasm_as_multipart() {
        let (url, seen) = stand_in().await;
        let dir = tempfile::tempdir().unwrap();
        let wasm = write_wasm(dir.path());
        let args = deploy_args(&[
            "big-orders",
            "--wasm",
            wasm.to_str().unwrap(),
            "--input",
            "in",
            "--output",
            "out",
            "--config",
            "k=v",
            "--admin",
            &url,
        ]);
        deploy(args).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.name, "big-orders");
        let (spec_type, spec) = seen.spec.expect("a spec part");
        assert_eq!(spec_type, "application/json");
        let spec: Value = serde_json::from_str(&spec).unwrap();
        assert_eq!(
            spec,
            json!({"inputs": ["in"], "outputs": ["out"], "config": [["k", "v"]]})
        );
        let (file_name, wasm_type, bytes) = seen.wasm.expect("a wasm part");
        assert_eq!(file_name, "big_orders.wasm");
        assert_eq!(wasm_type, "application/wasm");
        assert_eq!(bytes, b"\0asm\x0d\0\x01\0plugin");
    }

    #[tokio::test]
    async fn the_brokers_error_message_is_the_error() {
        let (url, _) = stand_in().await;
        let dir = tempfile::tempdir().unwrap();
        let wasm = write_wasm(dir.path());
        let args = deploy_args(&[
            "refused",
            "--wasm",
            wasm.to_str().unwrap(),
            "--input",
            "nope",
            "--output",
            "out",
            "--admin",
            &format!("http://{url}/"),
        ]);
        let error = deploy(args).await.unwrap_err();
        assert_eq!(format!("{error:#}"), "input topic nope does not exist");
    }

    #[tokio::test]
    async fn a_non_json_error_shows_the_status_and_body() {
        let (url, _) = stand_in().await;
        let admin = Admin::new(&url, None).unwrap();
        let request = admin.request(Method::POST, "/v1/processors/p/pause");
        let error = format!("{:#}", admin.send(request).await.unwrap_err());
        assert!(error.contains("418"), "{error}");
        assert!(error.contains("short and stout"), "{error}");
        // An unknown route: axum's empty 404.
        let request = admin.request(Method::GET, "/v1/nothing");
        let error = format!("{:#}", admin.send(request).await.unwrap_err());
        assert!(error.contains("404"), "{error}");
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_named_with_a_hint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let admin = Admin::new(&format!("http://{address}"), None).unwrap();
        let request = admin.request(Method::GET, "/v1/processors");
        let error = format!("{:#}", admin.send(request).await.unwrap_err());
        assert!(error.contains("not reachable"), "{error}");
        assert!(error.contains(&address.to_string()), "{error}");
        assert!(error.contains("--admin"), "{error}");
        assert!(error.contains("SLUICE_ADMIN"), "{error}");
    }
}
