//! Command-line interface: argument definitions and dispatch. `serve` runs
//! the broker; the client verbs (topic, produce, consume, group,
//! transactions) talk to any Kafka-compatible broker over the Kafka
//! protocol, in the style of rpk and kcat; `processor` manages a Sluice broker's WebAssembly processors over
//! its HTTP admin API; `plugin` scaffolds, builds and locally runs processor
//! plugins with no broker. Benchmarks are not here: they are the
//! `sluice-bench` crate (`bench/`).

pub(crate) mod acl;
pub(crate) mod admin;
mod console;
pub(crate) mod consume;
pub(crate) mod group;
pub mod plugin;
pub(crate) mod processor;
pub(crate) mod produce;
mod progress;
pub(crate) mod topic;
pub(crate) mod transactions;
pub(crate) mod user;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::log::FlushPolicy;

/// Sluice: a Kafka-compatible event broker with a WebAssembly stream-processing runtime.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Log line format on stderr (RUST_LOG sets the level, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output format of commands that print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// A table for people.
    Text,
    /// JSON for scripts.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the broker: Kafka listener, HTTP admin API, durable log store.
    Serve(ServeArgs),
    /// Create, list, describe, reconfigure and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Write lines from stdin to a topic, one record per line.
    Produce(produce::ProduceArgs),
    /// Print a topic's records, alone or as a member of a consumer group.
    Consume(consume::ConsumeArgs),
    /// List, describe and delete consumer groups; reset their offsets.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// List and describe transactional ids; abort a hung transaction.
    #[command(subcommand)]
    Transactions(transactions::TransactionsCommand),
    /// Deploy, inspect, pause, resume and remove WebAssembly processors on a running broker.
    #[command(subcommand)]
    Processor(processor::ProcessorCommand),
    /// Scaffold, build and locally run processor plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Create, delete and list the Kafka listener's SASL users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Create, list and delete the Kafka listener's ACLs.
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Print the web console's link (with the admin token) to open in a browser.
    Console(console::ConsoleArgs),
}

/// `sluice serve` options. Flags win over `SLUICE_*` variables, which win
/// over the config file, which wins over the defaults.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Kafka listener address [default: 127.0.0.1:9092].
    #[arg(long, env = "SLUICE_LISTEN", value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Data directory [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// HTTP admin listener address (GET /health) [default: 127.0.0.1:9644].
    #[arg(long, env = "SLUICE_HTTP", value_name = "ADDR")]
    pub(crate) http: Option<SocketAddr>,
    /// TOML config file (see README for keys).
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Durability: always (fsync before ack), interval:<ms>, or never [default: always].
    #[arg(long, env = "SLUICE_FLUSH", value_name = "POLICY")]
    pub(crate) flush: Option<FlushPolicy>,
    /// Listen on non-loopback addresses although the Kafka listener
    /// authenticates nobody (PLAINTEXT or SSL: anyone who reaches it can
    /// read and write every topic) or the admin API is plain HTTP (its
    /// token crosses the network in clear text).
    #[arg(long, env = "SLUICE_INSECURE")]
    pub(crate) insecure: bool,
}

impl ServeArgs {
    /// Resolves the config: file (or defaults), then flags and environment.
    pub(crate) fn resolve(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(data_dir) = &self.data_dir {
            config.data_dir = data_dir.clone();
        }
        if let Some(http) = self.http {
            config.http = http;
        }
        if let Some(flush) = self.flush {
            config.log.flush = flush;
        }
        config.insecure |= self.insecure;
        Ok(config)
    }
}

/// Where the client verbs find the cluster.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectArgs {
    /// Bootstrap brokers, comma-separated; the first that answers is used,
    /// and partition leaders and group coordinators are then reached at the
    /// addresses the cluster gives for them.
    #[arg(
        long,
        env = "SLUICE_BROKERS",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT[,...]"
    )]
    pub(crate) brokers: String,
    /// SASL user, for a broker whose Kafka listener wants authentication.
    #[arg(long, env = "SLUICE_USER", value_name = "NAME")]
    pub(crate) user: Option<String>,
    /// SASL password (prefer SLUICE_PASSWORD: flags show in the process list).
    #[arg(long, env = "SLUICE_PASSWORD", hide_env_values = true)]
    pub(crate) password: Option<String>,
    /// SASL mechanism: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN.
    #[arg(
        long,
        env = "SLUICE_SASL_MECHANISM",
        default_value = "SCRAM-SHA-256",
        value_name = "MECHANISM"
    )]
    pub(crate) sasl_mechanism: String,
    /// Speak TLS to the brokers (listeners SSL and SASL_SSL), trusting the
    /// system's CA certificates and --ca-file's.
    #[arg(long, env = "SLUICE_TLS")]
    pub(crate) tls: bool,
    /// CA certificates (PEM) to trust for the brokers' TLS; implies --tls.
    #[arg(long, env = "SLUICE_CA_FILE", value_name = "FILE")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
}

impl ConnectArgs {
    /// A client of the brokers, authenticating as `--user` when given.
    pub(crate) async fn client(&self) -> anyhow::Result<crate::client::Client> {
        let credentials = match (&self.user, &self.password) {
            (None, _) => None,
            (Some(user), Some(password)) => Some(crate::client::sasl::Credentials::new(
                &self.sasl_mechanism,
                user,
                password,
            )?),
            (Some(_), None) => {
                anyhow::bail!("--user needs a password: set SLUICE_PASSWORD (or --password)")
            }
        };
        let tls = (self.tls || self.ca_file.is_some())
            .then(|| crate::client::sasl::tls_connector(self.ca_file.as_deref()))
            .transpose()?;
        let security = crate::client::sasl::Security { tls, credentials };
        crate::client::Client::connect(&self.brokers, security).await
    }
}

/// Runs the command line: `serve` runs the broker until SIGTERM or
/// SIGINT; the other verbs are clients.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.resolve()?;
            crate::memory::tune_allocator();
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                // Handlers installed before anything starts, so a signal
                // sent right after the ready line stops the broker cleanly
                // instead of killing it.
                let shutdown = shutdown_signal()?;
                crate::broker::run(config, shutdown, |bound| {
                    // One line on stdout that scripts (and tests) wait for.
                    println!(
                        "sluice {} ready kafka={} http={}",
                        env!("CARGO_PKG_VERSION"),
                        bound.kafka,
                        bound.http
                    );
                })
                .await
            })
        }
        // Plugin verbs run cargo or a local wasm host: no async runtime here.
        Command::Plugin(command) => plugin::run(command),
        command @ (Command::Topic(_)
        | Command::Produce(_)
        | Command::Consume(_)
        | Command::Group(_)
        | Command::Transactions(_)
        | Command::Processor(_)
        | Command::User(_)
        | Command::Acl(_)
        | Command::Console(_)) => run_client(command),
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on
/// the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
        }
    })
}

/// Runs a client verb (`topic`, `produce`, `consume`, `group`,
/// `transactions`, `processor`) to completion; other commands are not client verbs and are
/// refused.
fn run_client(command: Command) -> anyhow::Result<()> {
    // Two workers: a consumer's heartbeat keeps going while the main task
    // is blocked writing to a slow stdout.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match command {
            Command::Topic(command) => topic::run(command).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Consume(args) => consume::run(args).await,
            Command::Group(command) => group::run(command).await,
            Command::Transactions(command) => transactions::run(command).await,
            Command::Processor(command) => processor::run(command).await,
            Command::User(command) => user::run(command).await,
            Command::Acl(command) => acl::run(command).await,
            Command::Console(args) => console::run(args).await,
            Command::Serve(_) | Command::Plugin(_) => {
                anyhow::bail!("not a client verb")
            }
        }
    })
}

/// Writes `text` to stdout. A closed stdout (`sluice topic list | head -1`)
/// is not an error: the reader has all it wanted.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}

/// `rows` under `headers` as lines, columns padded to their widest cell.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
