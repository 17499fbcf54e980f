//! `sluice acl`: the Kafka listener's ACLs, through the broker's admin API
//! (so only whoever holds the admin token changes them), in the words of
//! `kafka-acls.sh` and `rpk acl`.

use anyhow::{bail, Result};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};

use super::admin::{Admin, AdminArgs};
use super::OutputFormat;

/// `sluice acl` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AclCommand {
    /// Grant (or deny) principals operations on resources: one ACL per
    /// principal, operation and resource given.
    #[command(after_help = "Examples:\n  \
        sluice acl create --allow-principal User:alice --operation read --operation describe --topic orders\n  \
        sluice acl create --allow-principal User:app --operation all --topic app. --resource-pattern-type prefixed\n  \
        sluice acl create --allow-principal User:app --operation read --group app-consumers\n  \
        sluice acl create --deny-principal User:mallory --operation write --topic '*'\n\n\
        ACLs are enforced once the broker runs with [acl] enabled = true; super users\n\
        ([acl] super_users) may do everything. The processors' groups and topics\n\
        (sluice-processor-*) can be read and described, never joined or written.")]
    Create(CreateArgs),
    /// List the ACLs a filter matches (no filter: all of them).
    #[command(after_help = "Examples:\n  sluice acl list\n  \
        sluice acl list --principal User:alice --format json\n  \
        sluice acl list --topic orders --resource-pattern-type match   # every ACL that applies to orders")]
    List(FilterArgs),
    /// Delete the ACLs a filter matches (at least one filter, or --all).
    #[command(
        after_help = "Examples:\n  sluice acl delete --principal User:alice --topic orders\n  \
        sluice acl delete --all"
    )]
    Delete(DeleteArgs),
}

/// The resource flags of `create`: any number of each.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("resource").required(true).multiple(true)))]
pub(crate) struct Resources {
    /// A topic (repeatable; `*` for every topic).
    #[arg(long, group = "resource", value_name = "NAME")]
    pub(crate) topic: Vec<String>,
    /// A consumer group (repeatable; `*` for every group).
    #[arg(long, group = "resource", value_name = "NAME")]
    pub(crate) group: Vec<String>,
    /// A transactional id (repeatable; `*` for every one).
    #[arg(long, group = "resource", value_name = "ID")]
    pub(crate) transactional_id: Vec<String>,
    /// The cluster (creating topics, idempotent writes, managing ACLs).
    #[arg(long, group = "resource")]
    pub(crate) cluster: bool,
}

/// How a resource name matches.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Pattern {
    /// The name itself (`*`: every resource of the type).
    Literal,
    /// Every name that starts with it.
    Prefixed,
    /// (filters) Any pattern type.
    Any,
    /// (filters) Every ACL that applies to the named resource.
    Match,
}

/// `sluice acl create` options.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("principals").required(true).multiple(true)))]
pub(crate) struct CreateArgs {
    /// Principal to allow, `User:NAME` or `User:*` (repeatable).
    #[arg(long, group = "principals", value_name = "PRINCIPAL")]
    pub(crate) allow_principal: Vec<String>,
    /// Principal to deny (repeatable); a DENY wins over any ALLOW.
    #[arg(long, group = "principals", value_name = "PRINCIPAL")]
    pub(crate) deny_principal: Vec<String>,
    /// Operation: all, read, write, create, delete, alter, describe,
    /// cluster-action, describe-configs, alter-configs, idempotent-write
    /// (repeatable).
    #[arg(long, required = true, value_name = "OPERATION")]
    pub(crate) operation: Vec<String>,
    /// Client address the ACL applies to.
    #[arg(long, default_value = "*", value_name = "IP")]
    pub(crate) host: String,
    /// How the resource names match: literal or prefixed.
    #[arg(long, value_enum, default_value_t = Pattern::Literal)]
    pub(crate) resource_pattern_type: Pattern,
    #[command(flatten)]
    pub(crate) resources: Resources,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// Filter options of `list` and `delete`: each narrows, none means any.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("filter_resource").multiple(false)))]
pub(crate) struct FilterArgs {
    /// Only this principal's ACLs.
    #[arg(long, value_name = "PRINCIPAL")]
    pub(crate) principal: Option<String>,
    /// Only ACLs of this topic name.
    #[arg(long, group = "filter_resource", value_name = "NAME")]
    pub(crate) topic: Option<String>,
    /// Only ACLs of this group name.
    #[arg(long, group = "filter_resource", value_name = "NAME")]
    pub(crate) group: Option<String>,
    /// Only ACLs of this transactional id.
    #[arg(long, group = "filter_resource", value_name = "ID")]
    pub(crate) transactional_id: Option<String>,
    /// Only the cluster's ACLs.
    #[arg(long, group = "filter_resource")]
    pub(crate) cluster: bool,
    /// How the name matches: any (default), match, literal or prefixed.
    #[arg(long, value_enum)]
    pub(crate) resource_pattern_type: Option<Pattern>,
    /// Only this operation.
    #[arg(long, value_name = "OPERATION")]
    pub(crate) operation: Option<String>,
    /// Only allow or only deny.
    #[arg(long, value_name = "allow|deny")]
    pub(crate) permission: Option<String>,
    /// Only this host.
    #[arg(long, value_name = "IP")]
    pub(crate) host: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `sluice acl delete` options.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Delete every ACL.
    #[arg(long)]
    pub(crate) all: bool,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
}

pub(crate) async fn run(command: AclCommand) -> Result<()> {
    match command {
        AclCommand::Create(args) => create(args).await,
        AclCommand::List(args) => list(args).await,
        AclCommand::Delete(args) => delete(args).await,
    }
}

/// Kafka's word for an operation or permission from the CLI's spelling.
fn word(text: &str) -> String {
    text.to_ascii_uppercase().replace('-', "_")
}

fn pattern_word(pattern: Pattern) -> &'static str {
    match pattern {
        Pattern::Literal => "LITERAL",
        Pattern::Prefixed => "PREFIXED",
        Pattern::Any => "ANY",
        Pattern::Match => "MATCH",
    }
}

async fn create(args: CreateArgs) -> Result<()> {
    let pattern = match args.resource_pattern_type {
        Pattern::Literal | Pattern::Prefixed => pattern_word(args.resource_pattern_type),
        other => {
            bail!("--resource-pattern-type {other:?} is for filters; an ACL is literal or prefixed")
        }
    };
    let resources = resource_list(&args.resources);
    let principals = (args.allow_principal.iter().map(|p| (p, "ALLOW")))
        .chain(args.deny_principal.iter().map(|p| (p, "DENY")));
    let mut acls = Vec::new();
    for (principal, permission) in principals {
        for operation in &args.operation {
            for (resource_type, name) in &resources {
                acls.push(json!({
                    "resource_type": resource_type, "resource_name": name,
                    "pattern_type": pattern, "principal": principal, "host": args.host,
                    "operation": word(operation), "permission": permission,
                }));
            }
        }
    }
    let admin = Admin::from_args(&args.admin)?;
    let request = admin
        .request(Method::POST, "/v1/acls")
        .json(&json!({ "acls": acls }));
    let answer = admin.send(request).await?;
    println!("{} ACL(s) created", acls.len());
    warn_unless_enforced(&answer);
    Ok(())
}

/// (resource type, name) of each resource flag given.
fn resource_list(resources: &Resources) -> Vec<(&'static str, String)> {
    let mut list: Vec<(&'static str, String)> = Vec::new();
    list.extend(resources.topic.iter().map(|n| ("TOPIC", n.clone())));
    list.extend(resources.group.iter().map(|n| ("GROUP", n.clone())));
    list.extend(
        resources
            .transactional_id
            .iter()
            .map(|n| ("TRANSACTIONAL_ID", n.clone())),
    );
    if resources.cluster {
        list.push(("CLUSTER", "kafka-cluster".to_string()));
    }
    list
}

/// The filter as the admin API's JSON (absent fields match anything).
fn filter_json(args: &FilterArgs) -> Value {
    let mut filter = serde_json::Map::new();
    let resource = [
        ("TOPIC", &args.topic),
        ("GROUP", &args.group),
        ("TRANSACTIONAL_ID", &args.transactional_id),
    ]
    .into_iter()
    .find_map(|(kind, name)| name.clone().map(|name| (kind, name)))
    .or(args
        .cluster
        .then(|| ("CLUSTER", "kafka-cluster".to_string())));
    if let Some((kind, name)) = resource {
        filter.insert("resource_type".into(), json!(kind));
        filter.insert("resource_name".into(), json!(name));
    }
    let fields = [
        (
            "pattern_type",
            args.resource_pattern_type
                .map(|p| pattern_word(p).to_string()),
        ),
        ("principal", args.principal.clone()),
        ("host", args.host.clone()),
        ("operation", args.operation.as_deref().map(word)),
        ("permission", args.permission.as_deref().map(word)),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            filter.insert(field.into(), json!(value));
        }
    }
    Value::Object(filter)
}

async fn list(args: FilterArgs) -> Result<()> {
    let admin = Admin::from_args(&args.admin)?;
    let query: Vec<(String, String)> = filter_json(&args)
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let request = admin.request(Method::GET, "/v1/acls").query(&query);
    let answer = admin.send(request).await?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        OutputFormat::Text => {
            print!(
                "{}",
                acl_table(
                    answer["acls"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                )
            );
            warn_unless_enforced(&answer);
        }
    }
    Ok(())
}

async fn delete(args: DeleteArgs) -> Result<()> {
    let filter = filter_json(&args.filter);
    let empty = filter.as_object().is_none_or(|f| f.is_empty());
    if empty && !args.all {
        bail!("give at least one filter (--principal, --topic, --operation, ...) or --all to delete every ACL");
    }
    let admin = Admin::from_args(&args.filter.admin)?;
    let request = admin.request(Method::DELETE, "/v1/acls").json(&filter);
    let answer = admin.send(request).await?;
    let deleted = answer["deleted"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    match args.filter.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        OutputFormat::Text => {
            print!("{}", acl_table(deleted));
            println!("{} ACL(s) deleted", deleted.len());
        }
    }
    Ok(())
}

fn acl_table(acls: &[Value]) -> String {
    let rows = acls
        .iter()
        .map(|acl| {
            [
                "principal",
                "host",
                "resource_type",
                "resource_name",
                "pattern_type",
                "operation",
                "permission",
            ]
            .iter()
            .map(|field| acl[field].as_str().unwrap_or_default().to_string())
            .collect()
        })
        .collect();
    super::table(
        &[
            "PRINCIPAL",
            "HOST",
            "RESOURCE-TYPE",
            "RESOURCE-NAME",
            "PATTERN",
            "OPERATION",
            "PERMISSION",
        ],
        rows,
    )
}

fn warn_unless_enforced(answer: &Value) {
    if answer["enforced"] == json!(false) {
        eprintln!(
            "note: this broker does not enforce ACLs yet; set [acl] enabled = true (and super_users) \
             in its config and restart it"
        );
    }
}
