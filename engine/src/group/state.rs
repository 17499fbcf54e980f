//! One group's state machine, apart from the verbs that drive it: the
//! members, their waiting JoinGroup and SyncGroup calls, and the
//! transitions Kafka defines. Empty → PreparingRebalance (members rejoin) →
//! CompletingRebalance (waiting for the leader's assignment) → Stable; any
//! join, leave or expiry sends a non-empty group back to PreparingRebalance.
//!
//! Every transition takes the time as `now_ms` from the coordinator's one
//! injected clock, so tests move time by hand instead of sleeping.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::GroupError;

/// A group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    /// No members (may still have committed offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's SyncGroup.
    CompletingRebalance,
    /// Assignments handed out.
    Stable,
}

impl GroupState {
    /// Kafka's name for the state (DescribeGroups, ListGroups).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// An assignor a member supports, with its subscription in that
/// assignor's format (opaque to the broker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub(crate) name: String,
    pub(crate) metadata: Bytes,
}

/// A member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinedMember {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    /// The subscription for the chosen protocol.
    pub(crate) metadata: Bytes,
}

/// A successful JoinGroup: the new generation.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    pub(crate) generation: i32,
    /// e.g. "consumer".
    pub(crate) protocol_type: Option<String>,
    /// The chosen assignor.
    pub(crate) protocol_name: String,
    pub(crate) leader: String,
    /// The caller's member id (new members learn theirs here).
    pub(crate) member_id: String,
    /// Every member, for the leader only (it runs the assignor); empty for
    /// the others.
    pub(crate) members: Vec<JoinedMember>,
}

/// A successful SyncGroup.
#[derive(Debug, Clone, Default)]
pub(crate) struct Synced {
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    /// The caller's assignment, as the leader encoded it.
    pub(crate) assignment: Bytes,
}

pub(super) type JoinWaiter = oneshot::Sender<Result<Joined, GroupError>>;
pub(super) type SyncWaiter = oneshot::Sender<Result<Synced, GroupError>>;

pub(super) struct Member {
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout_ms: i64,
    pub(super) rebalance_timeout_ms: i64,
    /// In the member's order of preference.
    pub(super) protocols: Vec<Protocol>,
    pub(super) assignment: Bytes,
    /// The bytes of `protocols`, charged to the coordinator's metadata
    /// budget; returned when the member goes or rejoins.
    pub(super) protocols_charge: Option<OwnedSemaphorePermit>,
    /// A JoinGroup call waiting for the rebalance to complete.
    pub(super) join_waiter: Option<JoinWaiter>,
    /// A SyncGroup call waiting for the leader's assignment.
    pub(super) sync_waiter: Option<SyncWaiter>,
    pub(super) last_seen_ms: i64,
}

impl Member {
    /// The member's subscription for `protocol`.
    pub(super) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }
}

/// The window in which a new group waits for more members before its
/// first rebalance completes (`group.initial.rebalance.delay.ms`).
#[derive(Debug, Clone, Copy)]
pub(super) struct InitialDelay {
    pub(super) started_ms: i64,
    pub(super) until_ms: i64,
}

pub(super) struct Group {
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to
    /// join under them.
    pub(super) pending: HashMap<String, i64>,
    /// Static instance id → member id.
    pub(super) instances: HashMap<String, String>,
    pub(super) rebalance_deadline_ms: Option<i64>,
    pub(super) initial_delay: Option<InitialDelay>,
    /// When the group last became empty: the offsets retention counts from
    /// here.
    pub(super) empty_since_ms: i64,
    /// The bytes of the members' current assignments, charged to the
    /// coordinator's metadata budget until the next generation.
    pub(super) assignments_charge: Option<OwnedSemaphorePermit>,
}

impl Group {
    pub(super) fn new(now_ms: i64) -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            rebalance_deadline_ms: None,
            initial_delay: None,
            empty_since_ms: now_ms,
            assignments_charge: None,
        }
    }

    /// The longest rebalance timeout any member asked for: how long a
    /// rebalance waits for members to rejoin.
    pub(super) fn rebalance_timeout_max_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or_default()
    }

    /// Moves the group to PreparingRebalance: pending syncs are told to
    /// rejoin, and a deadline is set for the members to do so.
    pub(super) fn prepare_rebalance(&mut self, now_ms: i64, initial_rebalance_delay_ms: u64) {
        for member in self.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(Err(GroupError::RebalanceInProgress));
            }
        }
        let timeout_ms = self.rebalance_timeout_max_ms();
        if self.state == GroupState::Empty {
            let delay_ms = i64::try_from(initial_rebalance_delay_ms)
                .unwrap_or(i64::MAX)
                .min(timeout_ms);
            self.initial_delay = Some(InitialDelay {
                started_ms: now_ms,
                until_ms: now_ms + delay_ms,
            });
        }
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline_ms = Some(now_ms + timeout_ms);
    }

    /// Completes the join phase once every member has rejoined (and any
    /// initial delay is over) or the rebalance deadline passed.
    pub(super) fn try_complete_join(&mut self, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.initial_delay.is_some_and(|d| now_ms < d.until_ms) {
            return;
        }
        let all_joined =
            self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty();
        let deadline_passed = self
            .rebalance_deadline_ms
            .is_some_and(|deadline_ms| now_ms >= deadline_ms);
        if !all_joined && !deadline_passed {
            return;
        }
        self.initial_delay = None;
        self.rebalance_deadline_ms = None;
        self.pending.clear();
        // Members that did not rejoin in time are out.
        let stale: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.remove_member(&id);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.become_empty(now_ms);
            return;
        }
        self.start_generation(now_ms);
    }

    /// Picks the protocol and leader of the new generation and answers
    /// every waiting JoinGroup; the group then waits for the leader's
    /// SyncGroup.
    fn start_generation(&mut self, now_ms: i64) {
        let protocol = choose_protocol(self);
        self.protocol = Some(protocol.clone());
        if !self
            .leader
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        self.assignments_charge = None;
        let leader = self.leader.clone().unwrap_or_default();
        let everyone: Vec<JoinedMember> = self
            .members
            .iter()
            .map(|(id, m)| JoinedMember {
                member_id: id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect();
        for (id, member) in self.members.iter_mut() {
            member.assignment = Bytes::new();
            member.last_seen_ms = now_ms;
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(Ok(Joined {
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                }));
            }
        }
    }

    pub(super) fn become_empty(&mut self, now_ms: i64) {
        self.state = GroupState::Empty;
        self.leader = None;
        self.protocol = None;
        self.empty_since_ms = now_ms;
        // No member holds an assignment any more: return its bytes to the
        // broker-wide budget now, not when the group itself expires.
        self.assignments_charge = None;
    }

    /// Drops a member; its waiting calls learn it is unknown.
    pub(super) fn remove_member(&mut self, id: &str) {
        if let Some(mut member) = self.members.remove(id) {
            if let Some(instance) = &member.instance_id {
                self.instances.remove(instance);
            }
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(Err(GroupError::UnknownMemberId));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(Err(GroupError::UnknownMemberId));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// After members left or expired: rebalance the rest, or go empty.
    pub(super) fn members_changed(&mut self, now_ms: i64, initial_rebalance_delay_ms: u64) {
        match self.state {
            GroupState::Empty => {}
            _ if self.members.is_empty() && self.state != GroupState::PreparingRebalance => {
                self.generation += 1;
                self.become_empty(now_ms);
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, initial_rebalance_delay_ms)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
        }
    }
}

/// The protocol every member supports that members rank best: each member
/// votes for its most preferred candidate, most votes wins (Kafka's rule).
pub(super) fn choose_protocol(group: &Group) -> String {
    let supported_by_all = |name: &str| {
        group
            .members
            .values()
            .all(|m| m.protocols.iter().any(|p| p.name == name))
    };
    let candidates: Vec<&String> = group
        .members
        .values()
        .next()
        .map(|first| {
            first
                .protocols
                .iter()
                .map(|p| &p.name)
                .filter(|name| supported_by_all(name))
                .collect()
        })
        .unwrap_or_default();
    let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
    for member in group.members.values() {
        if let Some(protocol) = member
            .protocols
            .iter()
            .find(|p| candidates.contains(&&p.name))
        {
            *votes.entry(&protocol.name).or_default() += 1;
        }
    }
    candidates
        .iter()
        .max_by_key(|name| {
            (
                votes.get(*name).copied().unwrap_or(0),
                std::cmp::Reverse(candidates.iter().position(|c| c == *name)),
            )
        })
        .map(|name| (*name).clone())
        .unwrap_or_default()
}
