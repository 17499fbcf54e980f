//! One module per Kafka API; this file dispatches a decoded frame to its
//! handler and builds the ApiVersions table from what the handlers declare.

mod api_versions;
mod create_topics;
mod delete_topics;
mod fetch;
mod list_offsets;
mod metadata;
mod produce;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::BrokerContext;
use crate::log::{validate_topic_name, LogError, Topic};
use crate::protocol::errors::log_error_code;
use crate::protocol::{self, FrameError, RequestFrame};

/// Every API this broker implements with its version range. ApiVersions
/// answers with exactly this table.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, produce::VERSIONS.0, produce::VERSIONS.1),
    (ApiKey::Fetch, fetch::VERSIONS.0, fetch::VERSIONS.1),
    (
        ApiKey::ListOffsets,
        list_offsets::VERSIONS.0,
        list_offsets::VERSIONS.1,
    ),
    (ApiKey::Metadata, metadata::VERSIONS.0, metadata::VERSIONS.1),
    (
        ApiKey::ApiVersions,
        api_versions::VERSIONS.0,
        api_versions::VERSIONS.1,
    ),
    (
        ApiKey::CreateTopics,
        create_topics::VERSIONS.0,
        create_topics::VERSIONS.1,
    ),
    (
        ApiKey::DeleteTopics,
        delete_topics::VERSIONS.0,
        delete_topics::VERSIONS.1,
    ),
];

/// Whether requests of this API must take effect in the order a connection
/// sent them.
pub fn is_ordered(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::Produce
            | ApiKey::CreateTopics
            | ApiKey::DeleteTopics
            | ApiKey::OffsetCommit
            | ApiKey::DeleteRecords
    )
}

fn supported(api_key: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|(key, min, max)| *key == api_key && (*min..=*max).contains(&version))
}

fn respond<R: Encodable>(request: &RequestFrame, body: &R) -> Result<Option<Bytes>, FrameError> {
    protocol::encode_response(
        request.api_key,
        request.api_version,
        request.correlation_id,
        body,
    )
    .map(Some)
    .map_err(|error| FrameError::Encode {
        api_key: request.api_key,
        api_version: request.api_version,
        reason: error.to_string(),
    })
}

/// Handles one request; `Ok(None)` means no response is sent (acks=0).
pub async fn handle(
    context: &Arc<BrokerContext>,
    request: RequestFrame,
) -> Result<Option<Bytes>, FrameError> {
    let version = request.api_version;
    if request.api_key == ApiKey::ApiVersions {
        return api_versions::handle(&request);
    }
    if !supported(request.api_key, version) {
        return Err(FrameError::Unsupported {
            api_key: request.api_key,
            api_version: version,
        });
    }
    match request.api_key {
        ApiKey::Metadata => respond(
            &request,
            &metadata::handle(context, request.decode()?, version).await,
        ),
        ApiKey::Produce => match produce::handle(context, request.decode()?, version).await {
            Some(response) => respond(&request, &response),
            None => Ok(None),
        },
        ApiKey::Fetch => respond(
            &request,
            &fetch::handle(context, request.decode()?, version).await,
        ),
        ApiKey::ListOffsets => respond(
            &request,
            &list_offsets::handle(context, request.decode()?, version).await,
        ),
        ApiKey::CreateTopics => respond(
            &request,
            &create_topics::handle(context, request.decode()?, version).await,
        ),
        ApiKey::DeleteTopics => respond(
            &request,
            &delete_topics::handle(context, request.decode()?, version).await,
        ),
        _ => Err(FrameError::Unsupported {
            api_key: request.api_key,
            api_version: version,
        }),
    }
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("store task panicked")
}

/// A topic, created with the broker defaults when it is missing and
/// `auto_create` allows it. Errors are Kafka error codes.
async fn topic_or_create(
    context: &Arc<BrokerContext>,
    name: &str,
    auto_create: bool,
) -> Result<Arc<Topic>, i16> {
    if let Some(topic) = context.store.topic(name) {
        return Ok(topic);
    }
    if !(auto_create && context.config.auto_create_topics_enable) {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    }
    validate_topic_name(name).map_err(|error| log_error_code(&error))?;
    let store = context.store.clone();
    let partitions = context.config.num_partitions;
    let name = name.to_string();
    blocking(
        move || match store.create_topic(&name, partitions, Default::default()) {
            Ok(topic) => Ok(topic),
            // Another request created it first.
            Err(LogError::TopicExists(_)) => store
                .topic(&name)
                .ok_or(ResponseError::UnknownTopicOrPartition.code()),
            Err(error) => Err(log_error_code(&error)),
        },
    )
    .await
}

fn message(text: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.into()))
}
