//! JoinGroup (key 11): waits for the rebalance, answers the leader with
//! every member's subscription.

use std::sync::Arc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::group::JoinParams;
use crate::server::BrokerContext;

/// Versions implemented.
pub const VERSIONS: (i16, i16) = (0, 9);

fn text(value: String) -> StrBytes {
    StrBytes::from_string(value)
}

/// Handles a JoinGroup request.
pub async fn handle(
    context: &Arc<BrokerContext>,
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    let params = JoinParams {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        client_id,
        client_host,
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout; Kafka uses the session timeout.
        rebalance_timeout_ms: if version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let outcome = context.groups.join(params).await;
    let members = outcome
        .members
        .into_iter()
        .map(|(member_id, instance_id, metadata)| {
            let member = JoinGroupResponseMember::default()
                .with_member_id(text(member_id))
                .with_metadata(metadata);
            if version >= 5 {
                member.with_group_instance_id(instance_id.map(text))
            } else {
                member
            }
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_error_code(outcome.error)
        .with_generation_id(outcome.generation)
        .with_protocol_name(Some(text(outcome.protocol_name.unwrap_or_default())))
        .with_leader(text(outcome.leader))
        .with_member_id(text(outcome.member_id))
        .with_members(members);
    if version >= 7 {
        response.with_protocol_type(outcome.protocol_type.map(text))
    } else {
        response
    }
}
