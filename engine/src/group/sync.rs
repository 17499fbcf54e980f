//! SyncGroup: the leader hands out the assignments it computed; every
//! member's call waits for them and returns its own. A Stable group answers
//! at once with the member's current assignment.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::coordinator::{GroupCoordinator, Groups};
use super::state::{Group, GroupState, SyncWaiter, Synced};
use super::GroupError;

/// One member's assignment in the leader's SyncGroup.
#[derive(Debug, Clone)]
pub(crate) struct Assignment {
    pub(crate) member_id: String,
    /// Encoded by the leader's assignor; opaque to the broker.
    pub(crate) assignment: Bytes,
}

enum Wait {
    Now(Synced),
    Later(oneshot::Receiver<Result<Synced, GroupError>>),
}

impl GroupCoordinator {
    /// Handles SyncGroup; the leader's call completes everyone's.
    pub(crate) async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<Assignment>,
    ) -> Result<Synced, GroupError> {
        let wait = {
            let mut groups = self.lock();
            self.sync_locked(&mut groups, group_id, generation, member_id, assignments)?
        };
        match wait {
            Wait::Now(synced) => Ok(synced),
            Wait::Later(receiver) => receiver.await.unwrap_or(Err(GroupError::UnknownMemberId)),
        }
    }

    fn sync_locked(
        &self,
        groups: &mut Groups,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<Assignment>,
    ) -> Result<Wait, GroupError> {
        let group = groups
            .get_mut(group_id)
            .filter(|group| group.members.contains_key(member_id))
            .ok_or(GroupError::UnknownMemberId)?;
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration {
                generation,
                current: group.generation,
            });
        }
        match group.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::Stable => {
                let assignment = group.members[member_id].assignment.clone();
                Ok(Wait::Now(synced(group, assignment)))
            }
            GroupState::CompletingRebalance => {
                let is_leader = group.leader.as_deref() == Some(member_id);
                let charge = if is_leader {
                    Some(self.charge_assignments(group, &assignments)?)
                } else {
                    None
                };
                let (sender, receiver) = oneshot::channel();
                let member = group.members.get_mut(member_id).expect("checked above");
                member.sync_waiter = Some(sender);
                member.last_seen_ms = self.clock.now_ms();
                if let Some(charge) = charge {
                    hand_out(group, assignments);
                    group.assignments_charge = Some(charge);
                }
                Ok(Wait::Later(receiver))
            }
        }
    }
}

impl GroupCoordinator {
    /// Refuses an assignment over `member_metadata_bytes_max`, and charges
    /// the ones that will be kept (for current members) to the budget.
    fn charge_assignments(
        &self,
        group: &Group,
        assignments: &[Assignment],
    ) -> Result<OwnedSemaphorePermit, GroupError> {
        let bytes_max = self.config.member_metadata_bytes_max;
        if let Some(large) = assignments.iter().find(|a| a.assignment.len() > bytes_max) {
            return Err(GroupError::MemberMetadataTooLarge {
                bytes: large.assignment.len(),
                bytes_max,
            });
        }
        let kept: usize = assignments
            .iter()
            .filter(|a| group.members.contains_key(&a.member_id))
            .map(|a| a.assignment.len())
            .sum();
        self.charge_metadata(kept)
    }
}

fn synced(group: &Group, assignment: Bytes) -> Synced {
    Synced {
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        assignment,
    }
}

/// Stores the leader's assignments, makes the group Stable and answers
/// every waiting SyncGroup.
fn hand_out(group: &mut Group, assignments: Vec<Assignment>) {
    let mut assignments: HashMap<String, Bytes> = assignments
        .into_iter()
        .map(|a| (a.member_id, a.assignment))
        .collect();
    for (id, member) in group.members.iter_mut() {
        member.assignment = assignments.remove(id).unwrap_or_default();
    }
    group.state = GroupState::Stable;
    let ready: Vec<(SyncWaiter, Bytes)> = group
        .members
        .values_mut()
        .filter_map(|m| m.sync_waiter.take().map(|w| (w, m.assignment.clone())))
        .collect();
    for (waiter, assignment) in ready {
        let _ = waiter.send(Ok(synced(group, assignment)));
    }
}
