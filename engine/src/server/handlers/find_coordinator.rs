//! FindCoordinator (key 10): this node coordinates every group and every
//! transactional id, whatever the key type. v4 batches keys.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{group_allowed, message, transactional_id_allowed};
use crate::acl::{Caller, Operation};
use crate::server::{BrokerContext, NODE_ID};

pub(crate) const VERSIONS: (i16, i16) = (0, 4);

pub(crate) fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let host = StrBytes::from_string(context.advertised.ip().to_string());
    let port = context.advertised.port() as i32;
    let key_type = request.key_type;
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let coordinator = Coordinator::default().with_node_id(BrokerId(-1)).with_port(-1);
                match refusal(context, caller, key_type, &key) {
                    Some((code, text)) => coordinator
                        .with_error_code(code)
                        .with_error_message(message(text)),
                    None => coordinator
                        .with_node_id(BrokerId(NODE_ID))
                        .with_host(host.clone())
                        .with_port(port),
                }
                .with_key(key)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    if let Some((code, text)) = refusal(context, caller, key_type, &request.key) {
        return FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message(message(text))
            .with_node_id(BrokerId(-1))
            .with_port(-1);
    }
    FindCoordinatorResponse::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(host)
        .with_port(port)
}

/// Kafka's key type of a transactional id (0 is a group).
const KEY_TRANSACTION: i8 = 1;

/// Why `caller` may not learn the coordinator of `key` (code and
/// message): DESCRIBE on the group or transactional id is needed.
fn refusal(
    context: &BrokerContext,
    caller: &Caller,
    key_type: i8,
    key: &str,
) -> Option<(i16, String)> {
    if key_type == KEY_TRANSACTION {
        (!transactional_id_allowed(context, caller, Operation::Describe, key)).then(|| {
            let code = ResponseError::TransactionalIdAuthorizationFailed.code();
            (code, format!("Transactional id authorization failed: {key}"))
        })
    } else {
        (!group_allowed(context, caller, Operation::Describe, key)).then(|| {
            let code = ResponseError::GroupAuthorizationFailed.code();
            (code, format!("Group authorization failed: {key}"))
        })
    }
}
