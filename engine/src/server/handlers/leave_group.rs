//! LeaveGroup (key 13): one member (v0–v2) or a batch by member or instance
//! id (v3+).

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::group_refusal;
use crate::acl::{Caller, Operation};
use crate::group::LeavingMember;
use crate::protocol::errors::{group_error_code, group_result_code};
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 5);

pub(crate) fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    if let Some(code) = group_refusal(context, caller, Operation::Read, &request.group_id) {
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members: Vec<LeavingMember> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|id| id.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    match context.groups.leave(&request.group_id, members.clone()) {
        Err(error) => LeaveGroupResponse::default().with_error_code(group_error_code(&error)),
        Ok(results) if version < 3 => {
            LeaveGroupResponse::default().with_error_code(group_result_code(&results[0]))
        }
        Ok(results) => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(results)
                .map(|(member, result)| {
                    MemberResponse::default()
                        .with_member_id(StrBytes::from_string(member.member_id))
                        .with_group_instance_id(member.group_instance_id.map(StrBytes::from_string))
                        .with_error_code(group_result_code(&result))
                })
                .collect(),
        ),
    }
}
