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

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{blocking, message};
use crate::log::{validate_topic_name, LogStore, Topic};
use crate::protocol::errors::log_error_code;
use crate::server::BrokerContext;

/// Versions implemented.
pub const VERSIONS: (i16, i16) = (0, 2);

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
pub async fn handle(
    context: &Arc<BrokerContext>,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let store = context.store.clone();
    let validate_only = request.validate_only;
    let duplicated = duplicates(
        request
            .resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.clone())),
    );
    let responses = blocking(move || {
        let _guard = admin_writes();
        request
            .resources
            .into_iter()
            .map(|resource| {
                let key = (resource.resource_type, resource.resource_name.clone());
                let response = AlterConfigsResourceResponse::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name.clone());
                match alter(&store, &resource, duplicated.contains(&key), validate_only) {
                    Ok(()) => response,
                    Err((code, text)) => response
                        .with_error_code(code)
                        .with_error_message(message(text)),
                }
            })
            .collect()
    })
    .await;
    AlterConfigsResponse::default().with_responses(responses)
}

fn alter(
    store: &LogStore,
    resource: &AlterConfigsResource,
    duplicated: bool,
    validate_only: bool,
) -> Result<(), Refusal> {
    let name = resource.resource_name.as_str();
    alterable_topic(store, resource.resource_type, name, duplicated)?;
    let repeated = duplicates(resource.configs.iter().map(|c| c.name.clone()));
    if !repeated.is_empty() {
        return Err(invalid_request(format!(
            "configs named more than once: {}",
            joined(&repeated)
        )));
    }
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
