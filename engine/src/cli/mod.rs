//! Command-line interface: argument definitions and dispatch. `serve` runs
//! the broker; `bench` measures it. Client verbs (topic, produce, consume,
//! group, processor, plugin) join this enum as they are built.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    pub command: Command,
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
pub enum OutputFormat {
    /// A table for people.
    Text,
    /// JSON for scripts.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker: Kafka listener, HTTP admin API, durable log store.
    Serve(ServeArgs),
    /// Measure performance on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `sluice serve` options. Flags win over `SLUICE_*` variables, which win
/// over the config file, which wins over the defaults.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Kafka listener address [default: 127.0.0.1:9092].
    #[arg(long, env = "SLUICE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP admin listener address (GET /health) [default: 127.0.0.1:9644].
    #[arg(long, env = "SLUICE_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// TOML config file (see README for keys).
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Durability: always (fsync before ack), interval:<ms>, or never [default: always].
    #[arg(long, env = "SLUICE_FLUSH", value_name = "POLICY")]
    pub flush: Option<FlushPolicy>,
}

impl ServeArgs {
    /// Resolves the config: file (or defaults), then flags and environment.
    pub fn resolve(&self) -> anyhow::Result<Config> {
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
        Ok(config)
    }
}

/// `sluice bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Log store: append (flush never/always) and read throughput against raw disk writes, and startup time.
    Log(crate::bench::log::LogBenchArgs),
}
