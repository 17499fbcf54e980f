//! JoinGroup (key 11): waits for the rebalance, answers the leader with
//! every member's subscription.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{counted, group_refusal};
use kafka_protocol::messages::ApiKey;
use crate::acl::{Caller, Operation};
use crate::group::{GroupError, JoinParams, Joined, Protocol};
use crate::protocol::errors::group_error_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 9);

fn text(value: String) -> StrBytes {
    StrBytes::from_string(value)
}

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    if let Some(code) = group_refusal(context, caller, Operation::Read, &request.group_id) {
        return JoinGroupResponse::default()
            .with_error_code(counted(ApiKey::JoinGroup, code))
            .with_generation_id(-1);
    }
    let params = params(request, version, client_id, client_host);
    let member_id = params.member_id.clone();
    match context.groups.join(params).await {
        Ok(joined) => joined_response(joined, version),
        Err(error) => refused(&error, member_id),
    }
}

/// The request in the coordinator's terms, with owned copies of the
/// metadata: the group keeps it for the whole session, and a slice would
/// pin the whole request frame. The request (and so its frame) is dropped
/// here, before the join waits for the rebalance.
fn params(
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinParams {
    JoinParams {
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
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: Bytes::copy_from_slice(&p.metadata),
            })
            .collect(),
        require_known_member_id: version >= 4,
    }
}

fn joined_response(joined: Joined, version: i16) -> JoinGroupResponse {
    let members = joined
        .members
        .into_iter()
        .map(|m| {
            let member = JoinGroupResponseMember::default()
                .with_member_id(text(m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                member.with_group_instance_id(m.group_instance_id.map(text))
            } else {
                member
            }
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_generation_id(joined.generation)
        .with_protocol_name(Some(text(joined.protocol_name)))
        .with_leader(text(joined.leader))
        .with_member_id(text(joined.member_id))
        .with_members(members);
    if version >= 7 {
        response.with_protocol_type(joined.protocol_type.map(text))
    } else {
        response
    }
}

/// A refusal: generation -1, and the member id the client must use next
/// (the new one with MEMBER_ID_REQUIRED, else its own).
fn refused(error: &GroupError, member_id: String) -> JoinGroupResponse {
    let member_id = match error {
        GroupError::MemberIdRequired { member_id } => member_id.clone(),
        _ => member_id,
    };
    JoinGroupResponse::default()
        .with_error_code(counted(ApiKey::JoinGroup, group_error_code(error)))
        .with_generation_id(-1)
        .with_protocol_name(Some(StrBytes::default()))
        .with_member_id(text(member_id))
}
