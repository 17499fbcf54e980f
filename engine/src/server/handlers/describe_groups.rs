//! DescribeGroups (key 15): state, protocol and members with their
//! subscriptions and assignments. An unknown group is described as Dead,
//! as Kafka does.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::group_refusal;
use crate::acl::{Caller, Operation};
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 5);

pub(crate) fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|group_id| {
            let described = DescribedGroup::default()
                .with_group_id(group_id.clone())
                .with_authorized_operations(i32::MIN);
            if let Some(code) = group_refusal(context, caller, Operation::Describe, &group_id) {
                return described.with_error_code(code);
            }
            let Some(group) = context.groups.describe(&group_id) else {
                return described.with_group_state(StrBytes::from_static_str("Dead"));
            };
            let members = group
                .members
                .into_iter()
                .map(|m| {
                    let member = DescribedGroupMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_client_id(StrBytes::from_string(m.client_id))
                        .with_client_host(StrBytes::from_string(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment);
                    if version >= 4 {
                        member
                            .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                    } else {
                        member
                    }
                })
                .collect();
            described
                .with_group_state(StrBytes::from_static_str(group.state.name()))
                .with_protocol_type(StrBytes::from_string(group.protocol_type))
                .with_protocol_data(StrBytes::from_string(group.protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
