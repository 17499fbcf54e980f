//! One module per Kafka API; this file dispatches a decoded frame to its
//! handler and builds the ApiVersions table from what the handlers declare.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::BrokerContext;
use crate::acl::{Caller, Operation, ResourceType};
use crate::log::{validate_topic_name, LogError, Topic};
use crate::protocol::errors::log_error_code;
use crate::protocol::{self, FrameError, RequestFrame};

/// The one table of Kafka APIs: for each, its handler module (which
/// declares `VERSIONS`), whether a connection's requests of it must take
/// effect in the order sent, and how its handler is called. The module
/// list, [`SUPPORTED`], [`is_ordered`] and the dispatch `match` are all
/// generated from it, so an API cannot be advertised without a handler
/// (a missing `handle` is a compile error), nor handled without being
/// advertised.
///
/// Call kinds: `sync` and `async` take `(context, decoded request,
/// version)` and return the response; `api_versions` answers from the raw
/// frame (any version, so old clients learn what we speak); `connection`
/// APIs are answered by the connection itself (SASL, whose state is the
/// connection's) and never reach the dispatch; `join_group`
/// also gets the client's id and address; `produce` holds the ordering
/// baton and may send no response (acks=0).
macro_rules! apis {
    ($($key:ident => $module:ident, ordered: $ordered:literal, $call:ident;)*) => {
        $(mod $module;)*

        /// Every API this broker implements with its version range.
        /// ApiVersions answers with exactly this table.
        pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
            $((ApiKey::$key, $module::VERSIONS.0, $module::VERSIONS.1),)*
        ];

        /// Whether requests of this API must take effect in the order a
        /// connection sent them.
        pub(crate) fn is_ordered(api_key: ApiKey) -> bool {
            match api_key {
                $(ApiKey::$key => $ordered,)*
                _ => false,
            }
        }

        /// Calls the handler of a supported API.
        async fn dispatch(
            context: &Arc<BrokerContext>,
            caller: &Caller,
            request: RequestFrame,
            ordered: &mut Option<tokio::sync::oneshot::Sender<()>>,
        ) -> Result<Option<Bytes>, FrameError> {
            let version = request.api_version;
            match request.api_key {
                $(ApiKey::$key => apis!(@call $call, $module, context, caller, request, version, ordered),)*
                // `handle` checked `supported` first: only keys outside the table get here.
                api_key => Err(FrameError::Unsupported { api_key, api_version: version }),
            }
        }
    };
    (@call sync, $module:ident, $context:ident, $caller:ident, $request:ident, $version:ident, $ordered:ident) => {
        respond(&$request, &$module::handle($context, $caller, $request.decode()?, $version))
    };
    (@call async, $module:ident, $context:ident, $caller:ident, $request:ident, $version:ident, $ordered:ident) => {
        respond(&$request, &$module::handle($context, $caller, $request.decode()?, $version).await)
    };
    (@call api_versions, $module:ident, $context:ident, $caller:ident, $request:ident, $version:ident, $ordered:ident) => {
        $module::handle(&$request)
    };
    (@call join_group, $module:ident, $context:ident, $caller:ident, $request:ident, $version:ident, $ordered:ident) => {{
        let client_id = $request.client_id.clone().unwrap_or_default();
        let client_host = $request.client_host.clone();
        let body = $request.decode()?;
        respond(&$request, &$module::handle($context, $caller, body, $version, client_id, client_host).await)
    }};
    (@call fetch, $module:ident, $context:ident, $caller:ident, $request:ident, $version:ident, $ordered:ident) => {{
        let (response, charge) = $module::handle($context, $caller, $request.decode()?, $version).await;
        respond(&$request, &response).map(|encoded| encoded.map(|bytes| held_until_written(bytes, charge)))
    }};
    (@call connection, $module:ident, $context:ident, $caller:ident, $request:ident, $version:ident, $ordered:ident) => {
        // The connection answers these itself (`server::sasl`).
        Err(FrameError::Unsupported { api_key: $request.api_key, api_version: $version })
    };
    (@call produce, $module:ident, $context:ident, $caller:ident, $request:ident, $version:ident, $ordered:ident) => {
        match $module::handle($context, $caller, $request.decode()?, $version, $ordered).await {
            Some(response) => respond(&$request, &response),
            None => Ok(None),
        }
    };
}

apis! {
    Produce => produce, ordered: true, produce;
    Fetch => fetch, ordered: false, fetch;
    ListOffsets => list_offsets, ordered: false, async;
    Metadata => metadata, ordered: false, async;
    ApiVersions => api_versions, ordered: false, api_versions;
    CreateTopics => create_topics, ordered: true, async;
    DeleteTopics => delete_topics, ordered: true, async;
    DescribeConfigs => describe_configs, ordered: false, sync;
    AlterConfigs => alter_configs, ordered: true, async;
    CreatePartitions => create_partitions, ordered: true, async;
    IncrementalAlterConfigs => incremental_alter_configs, ordered: true, async;
    DescribeCluster => describe_cluster, ordered: false, sync;
    DeleteRecords => delete_records, ordered: true, async;
    InitProducerId => init_producer_id, ordered: true, async;
    FindCoordinator => find_coordinator, ordered: false, sync;
    JoinGroup => join_group, ordered: false, join_group;
    SyncGroup => sync_group, ordered: false, async;
    Heartbeat => heartbeat, ordered: false, sync;
    LeaveGroup => leave_group, ordered: false, sync;
    OffsetCommit => offset_commit, ordered: true, async;
    OffsetFetch => offset_fetch, ordered: false, sync;
    ListGroups => list_groups, ordered: false, sync;
    DescribeGroups => describe_groups, ordered: false, sync;
    DeleteGroups => delete_groups, ordered: false, async;
    AddPartitionsToTxn => add_partitions_to_txn, ordered: true, async;
    AddOffsetsToTxn => add_offsets_to_txn, ordered: true, async;
    EndTxn => end_txn, ordered: true, async;
    TxnOffsetCommit => txn_offset_commit, ordered: true, async;
    DescribeTransactions => describe_transactions, ordered: false, async;
    ListTransactions => list_transactions, ordered: false, async;
    DescribeAcls => describe_acls, ordered: false, async;
    CreateAcls => create_acls, ordered: true, async;
    DeleteAcls => delete_acls, ordered: true, async;
    SaslHandshake => sasl_handshake, ordered: true, connection;
    SaslAuthenticate => sasl_authenticate, ordered: true, connection;
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

/// An encoded response that holds `charge` (a budget's permit) until the
/// writer drops it, once written.
fn held_until_written(bytes: Bytes, charge: Option<tokio::sync::OwnedSemaphorePermit>) -> Bytes {
    struct Held {
        bytes: Bytes,
        _charge: tokio::sync::OwnedSemaphorePermit,
    }
    impl AsRef<[u8]> for Held {
        fn as_ref(&self) -> &[u8] {
            &self.bytes
        }
    }
    match charge {
        Some(charge) => Bytes::from_owner(Held {
            bytes,
            _charge: charge,
        }),
        None => bytes,
    }
}

/// Handles one request; `Ok(None)` means no response is sent (acks=0).
///
/// `ordered` is the baton of an ordered request: released here once the
/// request's effects are in place (Produce releases it earlier, before
/// waiting for fsync).
pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
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
    if !crate::metrics::enabled() {
        return dispatch(context, caller, request, ordered).await;
    }
    let (api_key, started) = (request.api_key as i16, std::time::Instant::now());
    let response = dispatch(context, caller, request, ordered).await;
    crate::metrics::REQUESTS.handled(api_key, version, started.elapsed());
    response
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("store task panicked")
}

/// `code`, counted in `/metrics` when it is an error answered to `api`.
fn counted(api: ApiKey, code: i16) -> i16 {
    if code != 0 {
        crate::metrics::REQUESTS.failed(api as i16, code);
    }
    code
}

/// Whether `caller` may do `operation` on topic `name`.
fn topic_allowed(
    context: &BrokerContext,
    caller: &Caller,
    operation: Operation,
    name: &str,
) -> bool {
    context
        .authorizer
        .allows(caller, operation, ResourceType::Topic, name)
}

/// Whether `caller` may do `operation` on group `name`.
fn group_allowed(
    context: &BrokerContext,
    caller: &Caller,
    operation: Operation,
    name: &str,
) -> bool {
    context
        .authorizer
        .allows(caller, operation, ResourceType::Group, name)
}

/// GROUP_AUTHORIZATION_FAILED's code if `caller` may not do `operation` on
/// group `name`.
fn group_refusal(
    context: &BrokerContext,
    caller: &Caller,
    operation: Operation,
    name: &str,
) -> Option<i16> {
    (!group_allowed(context, caller, operation, name))
        .then(|| ResponseError::GroupAuthorizationFailed.code())
}

/// Whether `caller` may do `operation` on transactional id `name`.
fn transactional_id_allowed(
    context: &BrokerContext,
    caller: &Caller,
    operation: Operation,
    name: &str,
) -> bool {
    context
        .authorizer
        .allows(caller, operation, ResourceType::TransactionalId, name)
}

/// Whether `caller` may do `operation` on the cluster.
fn cluster_allowed(context: &BrokerContext, caller: &Caller, operation: Operation) -> bool {
    context.authorizer.allows(
        caller,
        operation,
        ResourceType::Cluster,
        crate::acl::CLUSTER_NAME,
    )
}

/// Why `caller` may not use the ACL APIs, if it may not: they need
/// `operation` (DESCRIBE to read, ALTER to change) on the cluster, and ACLs
/// that are enforced.
fn acl_api_refusal(
    context: &BrokerContext,
    caller: &Caller,
    operation: Operation,
) -> Option<(i16, String)> {
    if !context.authorizer.enabled() {
        let text = "ACLs are not enforced on this broker ([acl] enabled = false)";
        return Some((ResponseError::SecurityDisabled.code(), text.into()));
    }
    if !cluster_allowed(context, caller, operation) {
        let text = format!(
            "{operation} on the cluster is not authorized for {}",
            caller.principal
        );
        return Some((ResponseError::ClusterAuthorizationFailed.code(), text));
    }
    None
}

/// Whether `caller` may create topic `name` (CREATE on the cluster or on
/// the topic, as in Kafka; never a processor's topic).
fn may_create_topic(context: &BrokerContext, caller: &Caller, name: &str) -> bool {
    !crate::acl::is_processor_resource(name)
        && (cluster_allowed(context, caller, Operation::Create)
            || topic_allowed(context, caller, Operation::Create, name))
}

/// A topic, created with the broker defaults when it is missing and
/// `auto_create` allows it (and `caller` may create it). Errors are Kafka
/// error codes.
async fn topic_or_create(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    name: &str,
    auto_create: bool,
) -> Result<Arc<Topic>, i16> {
    if let Some(topic) = context.store.topic(name) {
        return Ok(topic);
    }
    if !(auto_create && context.config.auto_create_topics_enable) {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    }
    if !may_create_topic(context, caller, name) {
        return Err(ResponseError::TopicAuthorizationFailed.code());
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
            Err(error) => {
                if matches!(error, LogError::LimitReached { .. }) {
                    tracing::warn!(topic = name, %error, "topic not auto-created");
                }
                Err(log_error_code(&error))
            }
        },
    )
    .await
}

fn message(text: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.into()))
}

#[cfg(test)]
mod fuzz;
