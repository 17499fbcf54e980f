//! Staying in a group and leaving it: Heartbeat, LeaveGroup, the periodic
//! `tick` that expires sessions, pending member ids, rebalance deadlines
//! and (past the offsets retention) the committed offsets of idle groups,
//! and `keep_alive` for the broker's own memberless processor groups.

use std::collections::HashSet;

use super::coordinator::{GroupCoordinator, Groups};
use super::state::{Group, GroupState};
use super::GroupError;

/// A member named in LeaveGroup: by member id, or (v3+) by static
/// instance id, or both.
#[derive(Debug, Clone)]
pub(crate) struct LeavingMember {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
}

impl GroupCoordinator {
    pub(crate) fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<(), GroupError> {
        let now_ms = self.clock.now_ms();
        let mut groups = self.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let member = group
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        member.last_seen_ms = now_ms;
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration {
                generation,
                current: group.generation,
            });
        }
        match group.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Handles LeaveGroup; answers for each member in order, or refuses the
    /// whole request for an unknown group.
    pub(crate) fn leave(
        &self,
        group_id: &str,
        members: Vec<LeavingMember>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let now_ms = self.clock.now_ms();
        let mut groups = self.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let results = members
            .into_iter()
            .map(|member| leave_one(group, group_id, member))
            .collect();
        group.members_changed(now_ms, self.config.initial_rebalance_delay_ms);
        Ok(results)
    }

    /// Enforces session timeouts and rebalance deadlines, and forgets the
    /// offsets of groups empty for longer than the retention.
    pub(crate) fn tick(&self) {
        let now_ms = self.clock.now_ms();
        let expired_groups = {
            let mut groups = self.lock();
            self.expire_sessions(&mut groups, now_ms)
        };
        self.expire_offsets(&expired_groups, now_ms);
    }

    /// Removes members whose session ran out and moves rebalances along;
    /// returns (and forgets) the groups empty past the offsets retention.
    fn expire_sessions(&self, groups: &mut Groups, now_ms: i64) -> Vec<String> {
        let mut expired_groups = Vec::new();
        for (group_id, group) in groups.iter_mut() {
            group.pending.retain(|_, deadline_ms| *deadline_ms > now_ms);
            // Members waiting in JoinGroup or SyncGroup are alive.
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none()
                        && m.sync_waiter.is_none()
                        && now_ms >= m.last_seen_ms + m.session_timeout_ms
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                tracing::info!(group = %group_id, member = %id, "member session expired");
                group.remove_member(id);
            }
            if !expired.is_empty() {
                group.members_changed(now_ms, self.config.initial_rebalance_delay_ms);
            }
            group.try_complete_join(now_ms);
            if group.state == GroupState::Empty
                && now_ms - group.empty_since_ms > self.config.offsets_retention_ms
            {
                expired_groups.push(group_id.clone());
            }
        }
        for group_id in &expired_groups {
            groups.remove(group_id);
        }
        expired_groups
    }

    /// Deletes the committed offsets of `expired_groups`, and of groups
    /// the coordinator no longer holds whose last commit is older than the
    /// retention (offsets replayed at startup).
    fn expire_offsets(&self, expired_groups: &[String], now_ms: i64) {
        // Lock order is groups, then offsets: take the snapshot first.
        let live: HashSet<String> = self.lock().keys().cloned().collect();
        let retention_ms = self.config.offsets_retention_ms;
        let offsets = self.offsets();
        let retained: Vec<String> = offsets
            .groups()
            .into_iter()
            .filter(|(group, last_commit_ms)| {
                expired_groups.contains(group)
                    || (!live.contains(group) && last_commit_ms + retention_ms < now_ms)
            })
            .map(|(group, _)| group)
            .collect();
        for group in retained {
            tracing::info!(group = %group, "deleting committed offsets of a group empty past offsets retention");
            if let Err(error) = offsets.delete_group(&group) {
                tracing::error!(group = %group, %error, "deleting expired offsets failed");
            }
        }
    }

    /// Keeps a memberless group and its offsets from expiring: the broker's
    /// own processors call this for their groups, which may sit idle (no
    /// commits) for longer than the offsets retention.
    pub(crate) fn keep_alive(&self, group_id: &str) {
        let now_ms = self.clock.now_ms();
        let mut groups = self.lock();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(now_ms));
        if group.state == GroupState::Empty {
            group.empty_since_ms = now_ms;
        }
    }
}

/// Removes one leaving member (or forgets its pending id).
fn leave_one(group: &mut Group, group_id: &str, member: LeavingMember) -> Result<(), GroupError> {
    let LeavingMember {
        member_id,
        group_instance_id,
    } = member;
    let id = match &group_instance_id {
        Some(instance) => match group.instances.get(instance) {
            Some(id) if member_id.is_empty() || *id == member_id => id.clone(),
            Some(_) => return Err(GroupError::FencedInstanceId),
            None => return Err(GroupError::UnknownMemberId),
        },
        None => member_id,
    };
    if group.pending.remove(&id).is_some() {
        return Ok(());
    }
    if !group.members.contains_key(&id) {
        return Err(GroupError::UnknownMemberId);
    }
    group.remove_member(&id);
    tracing::info!(group = group_id, member = %id, "member left");
    Ok(())
}
