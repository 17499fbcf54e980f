//! `sluice user`: the Kafka listener's SASL users, through the broker's
//! admin API (so only whoever holds the admin token adds one).

use std::io::BufRead;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::admin::{encode, Admin, AdminArgs};
use super::OutputFormat;

/// `sluice user` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user, or change its password (SCRAM-SHA-256/512 and PLAIN).
    #[command(
        after_help = "Examples:\n  sluice user create alice --password-stdin < alice.pass\n  \
        printf '%s' \"$PASS\" | sluice user create app --password-stdin"
    )]
    Create(CreateArgs),
    /// Delete a user (its open connections stay until they close).
    #[command(after_help = "Example:\n  sluice user delete alice")]
    Delete(NameArgs),
    /// List the users and their mechanisms (never their credentials).
    #[command(after_help = "Example:\n  sluice user list --format json")]
    List(ListArgs),
}

/// `sluice user create` options.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// User name (what clients give as `sasl.username`).
    pub(crate) name: String,
    /// The password (visible in the process list; prefer --password-stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    pub(crate) password: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub(crate) password_stdin: bool,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// Options of the verbs that name one user.
#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `sluice user list` options.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

pub(crate) async fn run(command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Create(args) => {
            let password = match (args.password, args.password_stdin) {
                (Some(password), _) => password,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
                (None, false) => bail!("give the password with --password-stdin (or --password)"),
            };
            let admin = Admin::from_args(&args.admin)?;
            let path = format!("/v1/users/{}", encode(&args.name));
            let request = admin
                .request(Method::PUT, &path)
                .json(&json!({ "password": password }));
            admin.send(request).await?;
            println!("user {} saved", args.name);
        }
        UserCommand::Delete(args) => {
            let admin = Admin::from_args(&args.admin)?;
            let path = format!("/v1/users/{}", encode(&args.name));
            admin.send(admin.request(Method::DELETE, &path)).await?;
            println!("user {} deleted", args.name);
        }
        UserCommand::List(args) => {
            let admin = Admin::from_args(&args.admin)?;
            let answer = admin.send(admin.request(Method::GET, "/v1/users")).await?;
            match args.format {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
                OutputFormat::Text => {
                    for user in answer["users"].as_array().into_iter().flatten() {
                        let mechanisms: Vec<&str> = user["mechanisms"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|m| m.as_str())
                            .collect();
                        println!(
                            "{}\t{}",
                            user["name"].as_str().unwrap_or_default(),
                            mechanisms.join(",")
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
