//! ListGroups (key 16), with the v4 state and v5 type filters.

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{cluster_allowed, group_allowed};
use crate::acl::{Caller, Operation};
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 5);

pub(crate) fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    // DESCRIBE on the cluster lists every group; otherwise those the
    // caller may describe.
    let everything = cluster_allowed(context, caller, Operation::Describe);
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let groups = context
        .groups
        .list()
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.name().to_lowercase()))
        .filter(|g| everything || group_allowed(context, caller, Operation::Describe, &g.group_id))
        // Every group here is a classic one.
        .filter(|_| {
            request.types_filter.is_empty()
                || request
                    .types_filter
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case("classic"))
        })
        .map(|group| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(group.group_id)))
                .with_protocol_type(StrBytes::from_string(group.protocol_type));
            let listed = if version >= 4 {
                listed.with_group_state(StrBytes::from_static_str(group.state.name()))
            } else {
                listed
            };
            if version >= 5 {
                listed.with_group_type(StrBytes::from_static_str("classic"))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
