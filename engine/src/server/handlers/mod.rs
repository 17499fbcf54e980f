//! One module per Kafka API; this file dispatches a decoded frame to its
//! handler and builds the ApiVersions table from what the handlers declare.

mod alter_configs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_fetch;
mod produce;
mod sync_group;

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
    (
        ApiKey::DescribeConfigs,
        describe_configs::VERSIONS.0,
        describe_configs::VERSIONS.1,
    ),
    (
        ApiKey::AlterConfigs,
        alter_configs::VERSIONS.0,
        alter_configs::VERSIONS.1,
    ),
    (
        ApiKey::CreatePartitions,
        create_partitions::VERSIONS.0,
        create_partitions::VERSIONS.1,
    ),
    (
        ApiKey::IncrementalAlterConfigs,
        incremental_alter_configs::VERSIONS.0,
        incremental_alter_configs::VERSIONS.1,
    ),
    (
        ApiKey::DescribeCluster,
        describe_cluster::VERSIONS.0,
        describe_cluster::VERSIONS.1,
    ),
    (
        ApiKey::DeleteRecords,
        delete_records::VERSIONS.0,
        delete_records::VERSIONS.1,
    ),
    (
        ApiKey::InitProducerId,
        init_producer_id::VERSIONS.0,
        init_producer_id::VERSIONS.1,
    ),
    (
        ApiKey::FindCoordinator,
        find_coordinator::VERSIONS.0,
        find_coordinator::VERSIONS.1,
    ),
    (
        ApiKey::JoinGroup,
        join_group::VERSIONS.0,
        join_group::VERSIONS.1,
    ),
    (
        ApiKey::SyncGroup,
        sync_group::VERSIONS.0,
        sync_group::VERSIONS.1,
    ),
    (
        ApiKey::Heartbeat,
        heartbeat::VERSIONS.0,
        heartbeat::VERSIONS.1,
    ),
    (
        ApiKey::LeaveGroup,
        leave_group::VERSIONS.0,
        leave_group::VERSIONS.1,
    ),
    (
        ApiKey::OffsetCommit,
        offset_commit::VERSIONS.0,
        offset_commit::VERSIONS.1,
    ),
    (
        ApiKey::OffsetFetch,
        offset_fetch::VERSIONS.0,
        offset_fetch::VERSIONS.1,
    ),
    (
        ApiKey::ListGroups,
        list_groups::VERSIONS.0,
        list_groups::VERSIONS.1,
    ),
    (
        ApiKey::DescribeGroups,
        describe_groups::VERSIONS.0,
        describe_groups::VERSIONS.1,
    ),
    (
        ApiKey::DeleteGroups,
        delete_groups::VERSIONS.0,
        delete_groups::VERSIONS.1,
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
            | ApiKey::AlterConfigs
            | ApiKey::IncrementalAlterConfigs
            | ApiKey::CreatePartitions
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
///
/// `ordered` is the baton of an ordered request: released here once the
/// request's effects are in place (Produce releases it earlier, before
/// waiting for fsync).
pub async fn handle(
    context: &Arc<BrokerContext>,
    request: RequestFrame,
    ordered: &mut Option<tokio::sync::oneshot::Sender<()>>,
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
        ApiKey::DeleteRecords => respond(
            &request,
            &delete_records::handle(context, request.decode()?, version).await,
        ),
        ApiKey::InitProducerId => respond(
            &request,
            &init_producer_id::handle(context, request.decode()?, version).await,
        ),
        ApiKey::FindCoordinator => respond(
            &request,
            &find_coordinator::handle(context, request.decode()?, version),
        ),
        ApiKey::JoinGroup => {
            let client_id = request.client_id.clone().unwrap_or_default();
            let response = join_group::handle(
                context,
                request.decode()?,
                version,
                client_id,
                request.client_host.clone(),
            )
            .await;
            respond(&request, &response)
        }
        ApiKey::SyncGroup => respond(
            &request,
            &sync_group::handle(context, request.decode()?, version).await,
        ),
        ApiKey::Heartbeat => respond(
            &request,
            &heartbeat::handle(context, request.decode()?, version),
        ),
        ApiKey::LeaveGroup => respond(
            &request,
            &leave_group::handle(context, request.decode()?, version),
        ),
        ApiKey::OffsetCommit => respond(
            &request,
            &offset_commit::handle(context, request.decode()?, version).await,
        ),
        ApiKey::OffsetFetch => respond(
            &request,
            &offset_fetch::handle(context, request.decode()?, version),
        ),
        ApiKey::ListGroups => respond(
            &request,
            &list_groups::handle(context, request.decode()?, version),
        ),
        ApiKey::DescribeGroups => respond(
            &request,
            &describe_groups::handle(context, request.decode()?, version),
        ),
        ApiKey::DeleteGroups => respond(
            &request,
            &delete_groups::handle(context, request.decode()?, version).await,
        ),
        ApiKey::Metadata => respond(
            &request,
            &metadata::handle(context, request.decode()?, version).await,
        ),
        ApiKey::Produce => {
            match produce::handle(context, request.decode()?, version, ordered).await {
                Some(response) => respond(&request, &response),
                None => Ok(None),
            }
        }
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
        ApiKey::DescribeConfigs => respond(
            &request,
            &describe_configs::handle(context, request.decode()?, version),
        ),
        ApiKey::AlterConfigs => respond(
            &request,
            &alter_configs::handle(context, request.decode()?, version).await,
        ),
        ApiKey::IncrementalAlterConfigs => respond(
            &request,
            &incremental_alter_configs::handle(context, request.decode()?, version).await,
        ),
        ApiKey::CreatePartitions => respond(
            &request,
            &create_partitions::handle(context, request.decode()?, version).await,
        ),
        ApiKey::DescribeCluster => respond(
            &request,
            &describe_cluster::handle(context, request.decode()?, version),
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

#[cfg(test)]
mod fuzz;
