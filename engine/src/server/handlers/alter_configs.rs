//! AlterConfigs (key 33): replaces a topic's config overrides with the given
//! set, as Kafka does (a config left out returns to its default). Also holds
//! what IncrementalAlterConfigs and CreatePartitions share with it: the
//! resource checks and the lock that serializes admin changes to topics.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{config_access, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::acl::{Caller, Operation};
use super::{blocking, message};
use crate::log::{validate_topic_name, LogStore, Topic};
use crate::protocol::errors::log_error_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 2);

/// A refused resource: Kafka error code and a message for the client.
pub(super) type Refusal = (i16, String);

/// Serializes admin changes to topic metadata (config overrides, partition
/// counts). Each is a read-modify-write of one topic (incremental alters
/// read the current overrides; partitions are created with the current
/// config), and requests from different connections run concurrently.
static ADMIN_WRITES: Mutex<()> = Mutex::new(());

/// Takes the admin write lock. It guards no data, so a panic while it was
/// held leaves nothing inconsistent behind and poisoning is ignored.
pub(super) fn admin_writes() -> MutexGuard<'static, ()> {
    ADMIN_WRITES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keys that occur more than once.
pub(super) fn duplicates<K: Eq + std::hash::Hash + Clone>(
    keys: impl IntoIterator<Item = K>,
) -> HashSet<K> {
    let mut seen = HashSet::new();
    keys.into_iter()
        .filter(|key| !seen.insert(key.clone()))
        .collect()
}

fn invalid_request(text: impl Into<String>) -> Refusal {
    (ResponseError::InvalidRequest.code(), text.into())
}

/// The topic an alter request names, or why it cannot be altered.
pub(super) fn alterable_topic(
    store: &LogStore,
    resource_type: i8,
    name: &str,
    duplicated: bool,
) -> Result<Arc<Topic>, Refusal> {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err(invalid_request(
                "broker configs are read-only; use the config file",
            ))
        }
        other => {
            return Err(invalid_request(format!(
                "resource type {other} cannot be altered; only topics (2) can"
            )))
        }
    }
    if duplicated {
        return Err(invalid_request(format!(
            "topic {name:?} appears more than once in the request"
        )));
    }
    validate_topic_name(name).map_err(|error| (log_error_code(&error), error.to_string()))?;
    store.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition.code(),
            format!("unknown topic {name:?}"),
        )
    })
}

/// Validates `overrides` as the complete override set of `topic` and,
/// unless `validate_only`, makes it so (durably). Call with
/// [`admin_writes`] held.
pub(super) fn replace_overrides(
    store: &LogStore,
    topic: &str,
    overrides: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), Refusal> {
    let refuse = |error: crate::log::LogError| (log_error_code(&error), error.to_string());
    store
        .options()
        .topic_defaults
        .with_overrides(&overrides)
        .map_err(refuse)?;
    if validate_only {
        return Ok(());
    }
    store.set_topic_config(topic, overrides).map_err(refuse)
}

/// Handles an AlterConfigs request.
pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let validate_only = request.validate_only;
    let responses = alter_each(
        (context, caller),
        request.resources,
        |r| (r.resource_type, r.resource_name.clone()),
        move |store, resource, duplicated| alter(store, resource, duplicated, validate_only),
        |resource, outcome| {
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match outcome {
                Ok(()) => response,
                Err((code, text)) => response
                    .with_error_code(code)
                    .with_error_message(message(text)),
            }
        },
    )
    .await;
    AlterConfigsResponse::default().with_responses(responses)
}

/// Runs `alter` on each resource of an (Incremental)AlterConfigs request,
/// off the async workers and under [`admin_writes`] (held from reading the
/// current overrides to writing the new ones), and answers each with
/// `respond`. `key` names a resource, to refuse resources named twice and
/// to ask whether `caller` may ALTER_CONFIGS it.
pub(super) async fn alter_each<R, T>(
    (context, caller): (&BrokerContext, &Caller),
    resources: Vec<R>,
    key: impl Fn(&R) -> (i8, StrBytes),
    alter: impl Fn(&LogStore, &R, bool) -> Result<(), Refusal> + Send + 'static,
    respond: impl Fn(&R, Result<(), Refusal>) -> T + Send + 'static,
) -> Vec<T>
where
    R: Send + 'static,
    T: Send + 'static,
{
    let duplicated = duplicates(resources.iter().map(&key));
    let keys: Vec<_> = resources.iter().map(key).collect();
    let access: Vec<Result<(), Refusal>> = (keys.iter())
        .map(|(kind, name)| config_access(context, caller, Operation::AlterConfigs, *kind, name))
        .collect();
    let store = context.store.clone();
    blocking(move || {
        let _guard = admin_writes();
        resources
            .iter()
            .zip(keys)
            .zip(access)
            .map(|((resource, key), access)| {
                let outcome =
                    access.and_then(|()| alter(&store, resource, duplicated.contains(&key)));
                respond(resource, outcome)
            })
            .collect()
    })
    .await
}

/// Refuses a resource that names a config more than once.
pub(super) fn refuse_repeated(names: impl Iterator<Item = StrBytes>) -> Result<(), Refusal> {
    let repeated = duplicates(names);
    if repeated.is_empty() {
        return Ok(());
    }
    Err(invalid_request(format!(
        "configs named more than once: {}",
        joined(&repeated)
    )))
}

fn alter(
    store: &LogStore,
    resource: &AlterConfigsResource,
    duplicated: bool,
    validate_only: bool,
) -> Result<(), Refusal> {
    let name = resource.resource_name.as_str();
    alterable_topic(store, resource.resource_type, name, duplicated)?;
    refuse_repeated(resource.configs.iter().map(|c| c.name.clone()))?;
    // A null value sets nothing, so the config returns to its default.
    let overrides = resource
        .configs
        .iter()
        .filter_map(|config| {
            let value = config.value.as_ref()?;
            Some((config.name.to_string(), value.to_string()))
        })
        .collect();
    replace_overrides(store, name, overrides, validate_only)
}

/// Sorted, comma-separated names, for messages.
pub(super) fn joined(names: &HashSet<StrBytes>) -> String {
    let mut names: Vec<&str> = names.iter().map(|name| name.as_str()).collect();
    names.sort_unstable();
    names.join(", ")
}
