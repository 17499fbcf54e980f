//! JoinGroup: admitting a member (new, known, or a restarted static
//! member) and waiting until the rebalance completes. The answer comes from
//! the group's state machine (`state.rs`) once every member has rejoined or
//! the rebalance deadline passed.

use tokio::sync::oneshot;

use super::coordinator::{GroupCoordinator, Groups};
use super::state::{Group, GroupState, Joined, Member, Protocol};
use super::GroupError;

/// A JoinGroup request, version-independent.
#[derive(Debug, Clone)]
pub(crate) struct JoinParams {
    pub(crate) group_id: String,
    /// Empty for a new member.
    pub(crate) member_id: String,
    /// Static membership id.
    pub(crate) group_instance_id: Option<String>,
    /// Shown by DescribeGroups.
    pub(crate) client_id: String,
    /// Shown by DescribeGroups.
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    /// e.g. "consumer".
    pub(crate) protocol_type: String,
    /// In preference order.
    pub(crate) protocols: Vec<Protocol>,
    /// v4+: a new member must first learn its id (MEMBER_ID_REQUIRED).
    pub(crate) require_known_member_id: bool,
}

fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", uuid::Uuid::new_v4())
}

impl GroupCoordinator {
    /// Handles JoinGroup; waits until the rebalance completes.
    pub(crate) async fn join(&self, params: JoinParams) -> Result<Joined, GroupError> {
        let receiver = {
            let mut groups = self.lock();
            self.join_locked(&mut groups, params)?
        };
        // The sender is dropped only when the member is removed while
        // waiting (left, fenced, or the group deleted).
        receiver.await.unwrap_or(Err(GroupError::UnknownMemberId))
    }

    fn join_locked(
        &self,
        groups: &mut Groups,
        params: JoinParams,
    ) -> Result<oneshot::Receiver<Result<Joined, GroupError>>, GroupError> {
        self.check_join(&params)?;
        if !groups.contains_key(&params.group_id) && groups.len() >= self.config.groups_max {
            return Err(GroupError::CoordinatorNotAvailable {
                groups_max: self.config.groups_max,
            });
        }
        // Charged before anything changes; dropped (returned) on refusal.
        let charge = self.charge_metadata(metadata_bytes(&params.protocols))?;
        let now_ms = self.clock.now_ms();
        let group = groups
            .entry(params.group_id.clone())
            .or_insert_with(|| Group::new(now_ms));
        if !group.members.is_empty() && !compatible(group, &params) {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let member_id = self.admit(group, &params, now_ms)?;
        let (sender, receiver) = oneshot::channel();
        let member = group
            .members
            .get_mut(&member_id)
            .expect("admitted member exists");
        member.join_waiter = Some(sender);
        member.last_seen_ms = now_ms;
        member.protocols = params.protocols;
        member.protocols_charge = Some(charge);
        member.session_timeout_ms = i64::from(params.session_timeout_ms);
        member.rebalance_timeout_ms = i64::from(params.rebalance_timeout_ms.max(0));
        group.protocol_type = Some(params.protocol_type);
        let initial_delay_ms = self.config.initial_rebalance_delay_ms;
        if group.state != GroupState::PreparingRebalance {
            group.prepare_rebalance(now_ms, initial_delay_ms);
        } else if group.initial_delay.is_some() {
            // Each newcomer during the initial delay extends it, up to the
            // rebalance timeout.
            let timeout_ms = group.rebalance_timeout_max_ms();
            let delay = group.initial_delay.as_mut().expect("checked above");
            let cap_ms = delay.started_ms + timeout_ms;
            let extended_ms = now_ms.saturating_add_unsigned(initial_delay_ms);
            delay.until_ms = extended_ms.min(cap_ms).max(delay.until_ms);
        }
        group.try_complete_join(now_ms);
        Ok(receiver)
    }

    /// Refusals that need no group: the id, the session timeout, the
    /// protocols.
    fn check_join(&self, params: &JoinParams) -> Result<(), GroupError> {
        self.check_group_id(&params.group_id)?;
        let bytes = metadata_bytes(&params.protocols);
        let bytes_max = self.config.member_metadata_bytes_max;
        if bytes > bytes_max {
            return Err(GroupError::MemberMetadataTooLarge { bytes, bytes_max });
        }
        let (min_ms, max_ms) = (
            self.config.session_timeout_min_ms,
            self.config.session_timeout_max_ms,
        );
        if !(min_ms..=max_ms).contains(&params.session_timeout_ms) {
            return Err(GroupError::InvalidSessionTimeout {
                session_timeout_ms: params.session_timeout_ms,
                min_ms,
                max_ms,
            });
        }
        if params.protocol_type.is_empty() || params.protocols.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    /// Finds or creates the caller's member entry; returns its id.
    fn admit(
        &self,
        group: &mut Group,
        params: &JoinParams,
        now_ms: i64,
    ) -> Result<String, GroupError> {
        if let Some(instance) = &params.group_instance_id {
            if let Some(existing) = group.instances.get(instance).cloned() {
                return admit_static(group, params, instance, existing);
            }
        }
        if params.member_id.is_empty() {
            if group.members.len() + group.pending.len() >= self.config.members_max {
                return Err(GroupError::GroupMaxSizeReached {
                    members_max: self.config.members_max,
                });
            }
            let id = new_member_id(&params.client_id);
            if params.require_known_member_id && params.group_instance_id.is_none() {
                let deadline_ms = now_ms + i64::from(params.session_timeout_ms);
                group.pending.insert(id.clone(), deadline_ms);
                return Err(GroupError::MemberIdRequired { member_id: id });
            }
            add_member(group, &id, params, now_ms);
            return Ok(id);
        }
        if group.pending.remove(&params.member_id).is_some() {
            add_member(group, &params.member_id, params, now_ms);
            return Ok(params.member_id.clone());
        }
        if group.members.contains_key(&params.member_id) {
            return Ok(params.member_id.clone());
        }
        Err(GroupError::UnknownMemberId)
    }
}

/// Bytes of subscription metadata a member's protocols hold.
fn metadata_bytes(protocols: &[Protocol]) -> usize {
    protocols
        .iter()
        .map(|p| p.name.len() + p.metadata.len())
        .sum()
}

/// Whether the caller shares the group's protocol type and at least one
/// assignor with every member.
fn compatible(group: &Group, params: &JoinParams) -> bool {
    let same_type = group.protocol_type.as_deref() == Some(params.protocol_type.as_str());
    let common = params.protocols.iter().any(|protocol| {
        group
            .members
            .values()
            .all(|m| m.protocols.iter().any(|other| other.name == protocol.name))
    });
    same_type && common
}

/// A static member whose instance id is known: the same member rejoining,
/// or a restart that takes over the old entry (and assignment) under a new
/// id, fencing the old one.
fn admit_static(
    group: &mut Group,
    params: &JoinParams,
    instance: &str,
    existing: String,
) -> Result<String, GroupError> {
    if !params.member_id.is_empty() {
        return if params.member_id == existing {
            Ok(existing)
        } else {
            Err(GroupError::FencedInstanceId)
        };
    }
    let new_id = new_member_id(&params.client_id);
    if let Some(mut member) = group.members.remove(&existing) {
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(Err(GroupError::FencedInstanceId));
        }
        group.members.insert(new_id.clone(), member);
    }
    if group.leader.as_deref() == Some(existing.as_str()) {
        group.leader = Some(new_id.clone());
    }
    group.instances.insert(instance.to_string(), new_id.clone());
    Ok(new_id)
}

fn add_member(group: &mut Group, id: &str, params: &JoinParams, now_ms: i64) {
    if let Some(instance) = &params.group_instance_id {
        group.instances.insert(instance.clone(), id.to_string());
    }
    group.members.insert(
        id.to_string(),
        Member {
            instance_id: params.group_instance_id.clone(),
            client_id: params.client_id.clone(),
            client_host: params.client_host.clone(),
            session_timeout_ms: i64::from(params.session_timeout_ms),
            rebalance_timeout_ms: i64::from(params.rebalance_timeout_ms.max(0)),
            protocols: params.protocols.clone(),
            assignment: bytes::Bytes::new(),
            protocols_charge: None,
            join_waiter: None,
            sync_waiter: None,
            last_seen_ms: now_ms,
        },
    );
}
