//! The `sluice` binary: parse arguments, set up logging, dispatch.

use clap::Parser;
use sluice::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line, no backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.resolve()?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(sluice::broker::run(config, shutdown_signal(), |bound| {
                // One line on stdout that scripts (and tests) wait for.
                println!(
                    "sluice {} ready kafka={} http={}",
                    env!("CARGO_PKG_VERSION"),
                    bound.kafka,
                    bound.http
                );
            }))
        }
        // Plugin verbs run cargo or a local wasm host: no async runtime here.
        Command::Plugin(command) => sluice::cli::plugin::run(command),
        command @ (Command::Topic(_)
        | Command::Produce(_)
        | Command::Consume(_)
        | Command::Group(_)
        | Command::Processor(_)) => sluice::cli::run_client(command),
    }
}
