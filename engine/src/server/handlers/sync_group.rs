//! SyncGroup (key 14): the leader hands out assignments; everyone gets
//! theirs.

use std::sync::Arc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{counted, group_refusal};
use kafka_protocol::messages::ApiKey;
use crate::acl::{Caller, Operation};
use crate::group::Assignment;
use crate::protocol::errors::group_result_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 5);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    if let Some(code) = group_refusal(context, caller, Operation::Read, &request.group_id) {
        return SyncGroupResponse::default().with_error_code(counted(ApiKey::SyncGroup, code));
    }
    let assignments = request
        .assignments
        .into_iter()
        .map(|a| Assignment {
            member_id: a.member_id.to_string(),
            // An owned copy: the group keeps it, and a slice would pin
            // the whole request frame.
            assignment: bytes::Bytes::copy_from_slice(&a.assignment),
        })
        .collect();
    let result = context
        .groups
        .sync(
            &request.group_id,
            request.generation_id,
            &request.member_id,
            assignments,
        )
        .await;
    let code = group_result_code(&result);
    // A refusal answers with no assignment and no protocol.
    let outcome = result.unwrap_or_default();
    let response = SyncGroupResponse::default()
        .with_error_code(counted(ApiKey::SyncGroup, code))
        .with_assignment(outcome.assignment);
    if version >= 5 {
        response
            .with_protocol_type(outcome.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(outcome.protocol_name.map(StrBytes::from_string))
    } else {
        response
    }
}
