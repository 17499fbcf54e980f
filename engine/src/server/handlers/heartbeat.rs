//! Heartbeat (key 12): keeps a member's session alive and tells it when to
//! rejoin (REBALANCE_IN_PROGRESS).

use std::sync::Arc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{counted, group_refusal};
use kafka_protocol::messages::ApiKey;
use crate::acl::{Caller, Operation};
use crate::protocol::errors::group_result_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 4);

pub(crate) fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: HeartbeatRequest,
    _version: i16,
) -> HeartbeatResponse {
    if let Some(code) = group_refusal(context, caller, Operation::Read, &request.group_id) {
        return HeartbeatResponse::default().with_error_code(counted(ApiKey::Heartbeat, code));
    }
    let result =
        context
            .groups
            .heartbeat(&request.group_id, request.generation_id, &request.member_id);
    HeartbeatResponse::default()
        .with_error_code(counted(ApiKey::Heartbeat, group_result_code(&result)))
}
