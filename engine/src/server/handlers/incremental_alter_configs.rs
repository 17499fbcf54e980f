//! IncrementalAlterConfigs (key 44): changes single topic configs, leaving
//! the other overrides alone. Operations: SET (0), DELETE (1, back to the
//! default) and, for list configs (here only `cleanup.policy`), APPEND (2)
//! and SUBTRACT (3) of list items.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::alter_configs::{
    alter_each, alterable_topic, refuse_repeated, replace_overrides, Refusal,
};
use super::message;
use crate::acl::Caller;
use crate::log::{is_topic_config, LogStore, TopicConfig};
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 1);

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// The configs whose value is a comma-separated list.
const LIST_CONFIGS: &[&str] = &["cleanup.policy"];

/// Handles an IncrementalAlterConfigs request.
pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn alter(
    store: &LogStore,
    resource: &AlterConfigsResource,
    duplicated: bool,
    validate_only: bool,
) -> Result<(), Refusal> {
    let name = resource.resource_name.as_str();
    let topic = alterable_topic(store, resource.resource_type, name, duplicated)?;
    refuse_repeated(resource.configs.iter().map(|c| c.name.clone()))?;
    let mut overrides = topic.overrides();
    let defaults = &store.options().topic_defaults;
    for config in &resource.configs {
        apply(&mut overrides, defaults, config)?;
    }
    replace_overrides(store, name, overrides, validate_only)
}

fn invalid_config(text: String) -> Refusal {
    (ResponseError::InvalidConfig.code(), text)
}

/// Applies one operation to the override set; the result is validated as a
/// whole afterwards.
fn apply(
    overrides: &mut BTreeMap<String, String>,
    defaults: &TopicConfig,
    config: &AlterableConfig,
) -> Result<(), Refusal> {
    let name = config.name.as_str();
    if !is_topic_config(name) {
        return Err(invalid_config(format!("unknown topic config {name:?}")));
    }
    let value = || {
        config.value.as_ref().map(|v| v.to_string()).ok_or_else(|| {
            (
                ResponseError::InvalidRequest.code(),
                format!(
                    "operation {} on {name} needs a value",
                    config.config_operation
                ),
            )
        })
    };
    match config.config_operation {
        SET => {
            overrides.insert(name.to_string(), value()?);
        }
        DELETE => {
            overrides.remove(name);
        }
        APPEND | SUBTRACT => {
            if !LIST_CONFIGS.contains(&name) {
                return Err(invalid_config(format!(
                    "{name} is not a list config; APPEND and SUBTRACT apply only to {}",
                    LIST_CONFIGS.join(", ")
                )));
            }
            let current = overrides
                .get(name)
                .cloned()
                .or_else(|| defaults.get(name))
                .unwrap_or_default();
            let mut items = list_items(&current);
            let changes = list_items(&value()?);
            if config.config_operation == APPEND {
                for item in changes {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
            } else {
                items.retain(|item| !changes.contains(item));
            }
            overrides.insert(name.to_string(), items.join(","));
        }
        other => {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("unknown config operation {other}; expected 0 (SET), 1 (DELETE), 2 (APPEND) or 3 (SUBTRACT)"),
            ))
        }
    }
    Ok(())
}

fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;

    fn op(name: &'static str, operation: i8, value: Option<&'static str>) -> AlterableConfig {
        AlterableConfig::default()
            .with_name(StrBytes::from_static_str(name))
            .with_config_operation(operation)
            .with_value(value.map(StrBytes::from_static_str))
    }

    #[test]
    fn operations_change_the_override_set() {
        let defaults = TopicConfig::default();
        let mut overrides = BTreeMap::new();
        apply(
            &mut overrides,
            &defaults,
            &op("retention.ms", SET, Some("5")),
        )
        .unwrap();
        apply(
            &mut overrides,
            &defaults,
            &op("cleanup.policy", APPEND, Some("compact")),
        )
        .unwrap();
        assert_eq!(overrides["cleanup.policy"], "delete,compact");
        apply(
            &mut overrides,
            &defaults,
            &op("cleanup.policy", SUBTRACT, Some("delete")),
        )
        .unwrap();
        assert_eq!(overrides["cleanup.policy"], "compact");
        apply(&mut overrides, &defaults, &op("retention.ms", DELETE, None)).unwrap();
        assert!(!overrides.contains_key("retention.ms"));

        let refused = |config| {
            apply(&mut BTreeMap::new(), &defaults, &config)
                .unwrap_err()
                .0
        };
        assert_eq!(refused(op("retention.ms", APPEND, Some("1"))), 40);
        assert_eq!(refused(op("bogus", SET, Some("1"))), 40);
        assert_eq!(refused(op("retention.ms", SET, None)), 42);
        assert_eq!(refused(op("retention.ms", 9, Some("1"))), 42);
    }
}
