//! Looking at groups from outside: ListGroups, DescribeGroups, and the
//! generation and state for tools and tests. A group known only by its
//! committed offsets (after a restart) is listed and described as Empty.

use bytes::Bytes;

use super::coordinator::GroupCoordinator;
use super::state::GroupState;

/// A group in ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedGroup {
    pub(crate) group_id: String,
    /// Empty for a group known only by its offsets.
    pub(crate) protocol_type: String,
    pub(crate) state: GroupState,
}

/// One member in DescribeGroups.
#[derive(Debug, Clone)]
pub(crate) struct MemberDescription {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    /// The subscription for the chosen protocol.
    pub(crate) metadata: Bytes,
    pub(crate) assignment: Bytes,
}

/// A group in DescribeGroups.
#[derive(Debug, Clone)]
pub(crate) struct Describe {
    pub(crate) state: GroupState,
    pub(crate) protocol_type: String,
    /// The chosen assignor; empty outside a generation.
    pub(crate) protocol: String,
    pub(crate) members: Vec<MemberDescription>,
}

impl GroupCoordinator {
    /// Every known group with its protocol type and state, by id.
    pub(crate) fn list(&self) -> Vec<ListedGroup> {
        let groups = self.lock();
        let mut listed: Vec<ListedGroup> = groups
            .iter()
            .map(|(id, g)| ListedGroup {
                group_id: id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect();
        for (group, _) in self.offsets().groups() {
            if !groups.contains_key(&group) {
                listed.push(ListedGroup {
                    group_id: group,
                    protocol_type: String::new(),
                    state: GroupState::Empty,
                });
            }
        }
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listed
    }

    /// A group's description; `None` if unknown.
    pub(crate) fn describe(&self, group_id: &str) -> Option<Describe> {
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            let known = self.offsets().contains_group(group_id);
            return known.then(|| Describe {
                state: GroupState::Empty,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let protocol = group.protocol.clone().unwrap_or_default();
        Some(Describe {
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: group
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }
}
