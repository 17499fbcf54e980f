//! The group coordinator. All state sits behind one std mutex that is never
//! held across an await: a JoinGroup or SyncGroup that must wait registers a
//! oneshot and awaits it after releasing the lock. Timeouts (sessions,
//! rebalance deadlines, the initial join delay) are enforced by `tick`,
//! which the broker calls every 100 ms.
//!
//! States, as in Kafka: Empty → PreparingRebalance (members rejoin) →
//! CompletingRebalance (waiting for the leader's assignment) → Stable; any
//! join, leave or expiry sends a non-empty group back to PreparingRebalance.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::offsets::{Committed, OffsetStore};
use crate::log::Clock;

/// Group settings (`[groups]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// How long a new group waits for more members before its first
    /// rebalance completes (`group.initial.rebalance.delay.ms`). Default 3000.
    pub initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a member may ask for. Default 6000.
    pub session_timeout_min_ms: i32,
    /// Largest session timeout a member may ask for. Default 1 800 000.
    pub session_timeout_max_ms: i32,
    /// Committed offsets of a group that has been empty this long are
    /// deleted (`offsets.retention.minutes`). Default 7 days.
    pub offsets_retention_ms: i64,
    /// Largest commit metadata string. Default 4096 bytes.
    pub offset_metadata_bytes_max: usize,
    /// Members of one group. Default 1000.
    pub members_max: usize,
    /// Groups with live members or offsets. Default 100 000.
    pub groups_max: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3000,
            session_timeout_min_ms: 6000,
            session_timeout_max_ms: 1_800_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offset_metadata_bytes_max: 4096,
            members_max: 1000,
            groups_max: 100_000,
        }
    }
}

/// A group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
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
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// What JoinGroup answers.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    /// Kafka error code, 0 for none.
    pub error: i16,
    /// New generation.
    pub generation: i32,
    /// e.g. "consumer".
    pub protocol_type: Option<String>,
    /// The chosen assignor.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// The caller's member id.
    pub member_id: String,
    /// For the leader only: every member's id, instance id and metadata.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// What SyncGroup answers.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    /// Kafka error code.
    pub error: i16,
    /// e.g. "consumer".
    pub protocol_type: Option<String>,
    /// The chosen assignor.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// A JoinGroup request, version-independent.
#[derive(Debug, Clone)]
pub struct JoinParams {
    /// Group.
    pub group_id: String,
    /// Empty for a new member.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client's id and host, for DescribeGroups.
    pub client_id: String,
    /// Client's address.
    pub client_host: String,
    /// Session timeout asked for.
    pub session_timeout_ms: i32,
    /// Rebalance timeout asked for.
    pub rebalance_timeout_ms: i32,
    /// e.g. "consumer".
    pub protocol_type: String,
    /// (assignor name, subscription metadata), in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new member must first learn its id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

/// One member in DescribeGroups.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
    /// Current assignment.
    pub assignment: Bytes,
}

/// A group in DescribeGroups.
#[derive(Debug, Clone)]
pub struct Describe {
    /// State name.
    pub state: GroupState,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    last_seen: Instant,
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join.
    pending: HashMap<String, Instant>,
    /// Static instance id → member id.
    instances: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    initial_delay: Option<(Instant, Instant)>,
    /// Wall-clock ms when the group last became empty.
    empty_since_ms: i64,
}

impl Group {
    fn new(now_ms: i64) -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            rebalance_deadline: None,
            initial_delay: None,
            empty_since_ms: now_ms,
        }
    }
}

/// The coordinator of every group on this broker.
pub struct GroupCoordinator {
    config: GroupConfig,
    clock: Arc<dyn Clock>,
    groups: Mutex<HashMap<String, Group>>,
    offsets: Mutex<OffsetStore>,
}

fn error(error: ResponseError) -> i16 {
    error.code()
}

fn join_error(code: i16, member_id: &str) -> JoinOutcome {
    JoinOutcome {
        error: code,
        generation: -1,
        member_id: member_id.to_string(),
        ..JoinOutcome::default()
    }
}

fn sync_error(code: i16) -> SyncOutcome {
    SyncOutcome {
        error: code,
        ..SyncOutcome::default()
    }
}

fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", uuid::Uuid::new_v4())
}

enum Wait<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

impl GroupCoordinator {
    /// A coordinator over `offsets`.
    pub fn new(config: GroupConfig, clock: Arc<dyn Clock>, offsets: OffsetStore) -> Self {
        Self {
            config,
            clock,
            groups: Mutex::default(),
            offsets: Mutex::new(offsets),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().expect("group lock")
    }

    /// Handles JoinGroup; waits until the rebalance completes.
    pub async fn join(&self, params: JoinParams) -> JoinOutcome {
        let wait = {
            let mut groups = self.lock();
            self.join_locked(&mut groups, params)
        };
        match wait {
            Wait::Now(outcome) => outcome,
            // The sender is dropped only when the member is removed while
            // waiting (left, fenced, or the group deleted).
            Wait::Later(receiver) => receiver
                .await
                .unwrap_or_else(|_| join_error(error(ResponseError::UnknownMemberId), "")),
        }
    }

    fn join_locked(
        &self,
        groups: &mut HashMap<String, Group>,
        params: JoinParams,
    ) -> Wait<JoinOutcome> {
        let now = Instant::now();
        let member_id = params.member_id.clone();
        if params.group_id.is_empty() {
            return Wait::Now(join_error(error(ResponseError::InvalidGroupId), &member_id));
        }
        if params.session_timeout_ms < self.config.session_timeout_min_ms
            || params.session_timeout_ms > self.config.session_timeout_max_ms
        {
            return Wait::Now(join_error(
                error(ResponseError::InvalidSessionTimeout),
                &member_id,
            ));
        }
        if params.protocol_type.is_empty() || params.protocols.is_empty() {
            return Wait::Now(join_error(
                error(ResponseError::InconsistentGroupProtocol),
                &member_id,
            ));
        }
        if !groups.contains_key(&params.group_id) && groups.len() >= self.config.groups_max {
            return Wait::Now(join_error(
                error(ResponseError::CoordinatorNotAvailable),
                &member_id,
            ));
        }
        let now_ms = self.clock.now_ms();
        let group = groups
            .entry(params.group_id.clone())
            .or_insert_with(|| Group::new(now_ms));
        if !group.members.is_empty() {
            let same_type = group.protocol_type.as_deref() == Some(params.protocol_type.as_str());
            let common = params.protocols.iter().any(|(name, _)| {
                group
                    .members
                    .values()
                    .all(|m| m.protocols.iter().any(|(other, _)| other == name))
            });
            if !same_type || !common {
                return Wait::Now(join_error(
                    error(ResponseError::InconsistentGroupProtocol),
                    &member_id,
                ));
            }
        }
        let member_id = match self.admit(group, &params, now) {
            Ok(id) => id,
            Err(outcome) => return Wait::Now(*outcome),
        };
        let (sender, receiver) = oneshot::channel();
        let member = group
            .members
            .get_mut(&member_id)
            .expect("admitted member exists");
        member.join_waiter = Some(sender);
        member.last_seen = now;
        member.protocols = params.protocols;
        member.session_timeout = Duration::from_millis(params.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(params.rebalance_timeout_ms.max(0) as u64);
        group.protocol_type = Some(params.protocol_type);
        if group.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(group, now);
        } else if let Some((started, until)) = group.initial_delay {
            // Each newcomer during the initial delay extends it, up to the
            // rebalance timeout.
            let cap = started + self.max_rebalance_timeout(group);
            let extended = now + Duration::from_millis(self.config.initial_rebalance_delay_ms);
            group.initial_delay = Some((started, extended.min(cap).max(until)));
        }
        self.try_complete_join(group, now);
        Wait::Later(receiver)
    }

    /// Finds or creates the caller's member entry; returns its id.
    fn admit(
        &self,
        group: &mut Group,
        params: &JoinParams,
        now: Instant,
    ) -> Result<String, Box<JoinOutcome>> {
        if let Some(instance) = &params.group_instance_id {
            if let Some(existing) = group.instances.get(instance).cloned() {
                if !params.member_id.is_empty() && params.member_id != existing {
                    return Err(Box::new(join_error(
                        error(ResponseError::FencedInstanceId),
                        &params.member_id,
                    )));
                }
                if params.member_id.is_empty() {
                    // A static member restarted: it takes over its old entry
                    // (and assignment) under a new id; the old id is fenced.
                    let new_id = new_member_id(&params.client_id);
                    if let Some(mut member) = group.members.remove(&existing) {
                        if let Some(waiter) = member.join_waiter.take() {
                            let _ = waiter.send(join_error(
                                error(ResponseError::FencedInstanceId),
                                &existing,
                            ));
                        }
                        group.members.insert(new_id.clone(), member);
                    }
                    if group.leader.as_deref() == Some(existing.as_str()) {
                        group.leader = Some(new_id.clone());
                    }
                    group.instances.insert(instance.clone(), new_id.clone());
                    return Ok(new_id);
                }
                return Ok(existing);
            }
        }
        if params.member_id.is_empty() {
            if group.members.len() + group.pending.len() >= self.config.members_max {
                return Err(Box::new(join_error(
                    error(ResponseError::GroupMaxSizeReached),
                    "",
                )));
            }
            let id = new_member_id(&params.client_id);
            if params.require_known_member_id && params.group_instance_id.is_none() {
                group.pending.insert(
                    id.clone(),
                    now + Duration::from_millis(params.session_timeout_ms as u64),
                );
                return Err(Box::new(join_error(
                    error(ResponseError::MemberIdRequired),
                    &id,
                )));
            }
            self.add_member(group, &id, params, now);
            return Ok(id);
        }
        if group.pending.remove(&params.member_id).is_some() {
            self.add_member(group, &params.member_id, params, now);
            return Ok(params.member_id.clone());
        }
        if group.members.contains_key(&params.member_id) {
            return Ok(params.member_id.clone());
        }
        Err(Box::new(join_error(
            error(ResponseError::UnknownMemberId),
            &params.member_id,
        )))
    }

    fn add_member(&self, group: &mut Group, id: &str, params: &JoinParams, now: Instant) {
        if let Some(instance) = &params.group_instance_id {
            group.instances.insert(instance.clone(), id.to_string());
        }
        group.members.insert(
            id.to_string(),
            Member {
                instance_id: params.group_instance_id.clone(),
                client_id: params.client_id.clone(),
                client_host: params.client_host.clone(),
                session_timeout: Duration::from_millis(params.session_timeout_ms as u64),
                rebalance_timeout: Duration::from_millis(params.rebalance_timeout_ms.max(0) as u64),
                protocols: params.protocols.clone(),
                assignment: Bytes::new(),
                join_waiter: None,
                sync_waiter: None,
                last_seen: now,
            },
        );
    }

    fn max_rebalance_timeout(&self, group: &Group) -> Duration {
        group
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// Moves the group to PreparingRebalance: pending syncs are told to
    /// rejoin, and a deadline is set for the members to do so.
    fn prepare_rebalance(&self, group: &mut Group, now: Instant) {
        for member in group.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(sync_error(error(ResponseError::RebalanceInProgress)));
            }
        }
        let timeout = self.max_rebalance_timeout(group);
        if group.state == GroupState::Empty {
            let delay = Duration::from_millis(self.config.initial_rebalance_delay_ms).min(timeout);
            group.initial_delay = Some((now, now + delay));
        }
        group.state = GroupState::PreparingRebalance;
        group.rebalance_deadline = Some(now + timeout);
    }

    /// Completes the join phase once every member has rejoined (and any
    /// initial delay is over) or the rebalance deadline passed.
    fn try_complete_join(&self, group: &mut Group, now: Instant) {
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        if group.initial_delay.is_some_and(|(_, until)| now < until) {
            return;
        }
        let all_joined =
            group.members.values().all(|m| m.join_waiter.is_some()) && group.pending.is_empty();
        let deadline_passed = group
            .rebalance_deadline
            .is_some_and(|deadline| now >= deadline);
        if !all_joined && !deadline_passed {
            return;
        }
        group.initial_delay = None;
        group.rebalance_deadline = None;
        group.pending.clear();
        // Members that did not rejoin in time are out.
        let stale: Vec<String> = group
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.remove_member(group, &id);
        }
        group.generation += 1;
        if group.members.is_empty() {
            self.become_empty(group);
            return;
        }
        let protocol = choose_protocol(group);
        group.protocol = Some(protocol.clone());
        if !group
            .leader
            .as_ref()
            .is_some_and(|leader| group.members.contains_key(leader))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.state = GroupState::CompletingRebalance;
        let leader = group.leader.clone().unwrap_or_default();
        let everyone: Vec<(String, Option<String>, Bytes)> = group
            .members
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    m.instance_id.clone(),
                    metadata_for(m, &protocol),
                )
            })
            .collect();
        for (id, member) in group.members.iter_mut() {
            member.assignment = Bytes::new();
            member.last_seen = now;
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinOutcome {
                    error: 0,
                    generation: group.generation,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    fn become_empty(&self, group: &mut Group) {
        group.state = GroupState::Empty;
        group.leader = None;
        group.protocol = None;
        group.empty_since_ms = self.clock.now_ms();
    }

    fn remove_member(&self, group: &mut Group, id: &str) {
        if let Some(mut member) = group.members.remove(id) {
            if let Some(instance) = &member.instance_id {
                group.instances.remove(instance);
            }
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(join_error(error(ResponseError::UnknownMemberId), id));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(sync_error(error(ResponseError::UnknownMemberId)));
            }
        }
        if group.leader.as_deref() == Some(id) {
            group.leader = None;
        }
    }

    /// After members left or expired: rebalance the rest, or go empty.
    fn members_changed(&self, group: &mut Group, now: Instant) {
        match group.state {
            GroupState::Empty => {}
            _ if group.members.is_empty() && group.state != GroupState::PreparingRebalance => {
                group.generation += 1;
                self.become_empty(group);
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(group, now)
            }
            GroupState::PreparingRebalance => self.try_complete_join(group, now),
        }
    }

    /// Handles SyncGroup; the leader's call completes everyone's.
    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let wait = {
            let mut groups = self.lock();
            self.sync_locked(&mut groups, group_id, generation, member_id, assignments)
        };
        match wait {
            Wait::Now(outcome) => outcome,
            Wait::Later(receiver) => receiver
                .await
                .unwrap_or_else(|_| sync_error(error(ResponseError::UnknownMemberId))),
        }
    }

    fn sync_locked(
        &self,
        groups: &mut HashMap<String, Group>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Wait<SyncOutcome> {
        let Some(group) = groups.get_mut(group_id) else {
            return Wait::Now(sync_error(error(ResponseError::UnknownMemberId)));
        };
        if !group.members.contains_key(member_id) {
            return Wait::Now(sync_error(error(ResponseError::UnknownMemberId)));
        }
        if generation != group.generation {
            return Wait::Now(sync_error(error(ResponseError::IllegalGeneration)));
        }
        let outcome = |group: &Group, assignment: Bytes| SyncOutcome {
            error: 0,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            assignment,
        };
        match group.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                Wait::Now(sync_error(error(ResponseError::RebalanceInProgress)))
            }
            GroupState::Stable => {
                Wait::Now(outcome(group, group.members[member_id].assignment.clone()))
            }
            GroupState::CompletingRebalance => {
                let (sender, receiver) = oneshot::channel();
                let now = Instant::now();
                let member = group.members.get_mut(member_id).expect("checked above");
                member.sync_waiter = Some(sender);
                member.last_seen = now;
                if group.leader.as_deref() == Some(member_id) {
                    let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, member) in group.members.iter_mut() {
                        member.assignment = assignments.remove(id).unwrap_or_default();
                    }
                    group.state = GroupState::Stable;
                    let ready: Vec<(oneshot::Sender<SyncOutcome>, Bytes)> = group
                        .members
                        .values_mut()
                        .filter_map(|m| m.sync_waiter.take().map(|w| (w, m.assignment.clone())))
                        .collect();
                    for (waiter, assignment) in ready {
                        let _ = waiter.send(outcome(group, assignment));
                    }
                }
                Wait::Later(receiver)
            }
        }
    }

    /// Handles Heartbeat.
    pub fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return error(ResponseError::UnknownMemberId);
        };
        let Some(member) = group.members.get_mut(member_id) else {
            return error(ResponseError::UnknownMemberId);
        };
        member.last_seen = Instant::now();
        if generation != group.generation {
            return error(ResponseError::IllegalGeneration);
        }
        match group.state {
            GroupState::PreparingRebalance => error(ResponseError::RebalanceInProgress),
            _ => 0,
        }
    }

    /// Handles LeaveGroup for members given by id or (v3+) instance id;
    /// returns each one's error code.
    pub fn leave(
        &self,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Result<Vec<i16>, i16> {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return Err(error(ResponseError::UnknownMemberId));
        };
        let now = Instant::now();
        let codes = members
            .into_iter()
            .map(|(member_id, instance)| {
                let id = match &instance {
                    Some(instance) => match group.instances.get(instance) {
                        Some(id) if member_id.is_empty() || *id == member_id => id.clone(),
                        Some(_) => return error(ResponseError::FencedInstanceId),
                        None => return error(ResponseError::UnknownMemberId),
                    },
                    None => member_id,
                };
                if group.pending.remove(&id).is_some() {
                    return 0;
                }
                if !group.members.contains_key(&id) {
                    return error(ResponseError::UnknownMemberId);
                }
                self.remove_member(group, &id);
                tracing::info!(group = group_id, member = %id, "member left");
                0
            })
            .collect();
        self.members_changed(group, now);
        Ok(codes)
    }

    /// Enforces session timeouts and rebalance deadlines, and forgets the
    /// offsets of groups empty for longer than the retention.
    pub fn tick(&self) {
        let now = Instant::now();
        let now_ms = self.clock.now_ms();
        let mut expired_groups = Vec::new();
        {
            let mut groups = self.lock();
            for (group_id, group) in groups.iter_mut() {
                group.pending.retain(|_, deadline| *deadline > now);
                // Members waiting in JoinGroup or SyncGroup are alive.
                let expired: Vec<String> = group
                    .members
                    .iter()
                    .filter(|(_, m)| {
                        m.join_waiter.is_none()
                            && m.sync_waiter.is_none()
                            && now >= m.last_seen + m.session_timeout
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &expired {
                    tracing::info!(group = %group_id, member = %id, "member session expired");
                    self.remove_member(group, id);
                }
                if !expired.is_empty() {
                    self.members_changed(group, now);
                }
                self.try_complete_join(group, now);
                if group.state == GroupState::Empty
                    && now_ms - group.empty_since_ms > self.config.offsets_retention_ms
                {
                    expired_groups.push(group_id.clone());
                }
            }
            for group_id in &expired_groups {
                groups.remove(group_id);
            }
        }
        // Lock order is groups, then offsets: take the snapshot first.
        let live: std::collections::HashSet<String> = self.lock().keys().cloned().collect();
        let mut offsets = self.offsets.lock().expect("offsets lock");
        let retained: Vec<String> = offsets
            .all()
            .iter()
            .filter(|(group, partitions)| {
                expired_groups.contains(group)
                    || (!live.contains(*group)
                        && partitions
                            .values()
                            .map(|c| c.commit_timestamp_ms)
                            .max()
                            .unwrap_or(0)
                            + self.config.offsets_retention_ms
                            < now_ms)
            })
            .map(|(group, _)| group.clone())
            .collect();
        for group in retained {
            tracing::info!(group = %group, "deleting committed offsets of a group empty past offsets retention");
            if let Err(error) = offsets.delete_group(&group) {
                tracing::error!(group = %group, %error, "deleting expired offsets failed");
            }
        }
    }

    /// Checks that a commit may happen: simple (no generation) commits only
    /// for groups without members; member commits must match the
    /// generation.
    fn check_commit(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            return if generation < 0 {
                0
            } else {
                error(ResponseError::IllegalGeneration)
            };
        };
        if generation < 0 && member_id.is_empty() {
            return if group.members.is_empty() {
                0
            } else {
                error(ResponseError::UnknownMemberId)
            };
        }
        if !group.members.contains_key(member_id) {
            return error(ResponseError::UnknownMemberId);
        }
        if generation != group.generation {
            return error(ResponseError::IllegalGeneration);
        }
        if group.state == GroupState::CompletingRebalance {
            return error(ResponseError::RebalanceInProgress);
        }
        0
    }

    /// Commits offsets durably. Returns a code per input entry.
    pub fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        commits: Vec<(String, i32, i64, i32, String)>,
    ) -> Vec<i16> {
        if group_id.is_empty() {
            return vec![error(ResponseError::InvalidGroupId); commits.len()];
        }
        let check = self.check_commit(group_id, generation, member_id);
        if check != 0 {
            return vec![check; commits.len()];
        }
        let now_ms = self.clock.now_ms();
        let mut codes = Vec::with_capacity(commits.len());
        let mut accepted = Vec::new();
        for (topic, partition, offset, leader_epoch, metadata) in commits {
            if metadata.len() > self.config.offset_metadata_bytes_max {
                codes.push(error(ResponseError::OffsetMetadataTooLarge));
                continue;
            }
            codes.push(0);
            accepted.push((
                topic,
                partition,
                Committed {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp_ms: now_ms,
                },
            ));
        }
        if accepted.is_empty() {
            return codes;
        }
        if let Err(failure) = self
            .offsets
            .lock()
            .expect("offsets lock")
            .commit(group_id, accepted)
        {
            tracing::error!(group = group_id, error = %failure, "committing offsets failed");
            return codes
                .iter()
                .map(|_| error(ResponseError::KafkaStorageError))
                .collect();
        }
        // A commit from outside any generation keeps an empty group alive.
        self.lock()
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(now_ms))
            .empty_since_ms = now_ms;
        codes
    }

    /// Keeps a memberless group and its offsets from expiring: the broker's
    /// own processors call this for their groups, which may sit idle (no
    /// commits) for longer than the offsets retention.
    pub fn keep_alive(&self, group_id: &str) {
        let now_ms = self.clock.now_ms();
        let mut groups = self.lock();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(now_ms));
        if group.state == GroupState::Empty {
            group.empty_since_ms = now_ms;
        }
    }

    /// Committed offsets of a group.
    pub fn committed(&self, group_id: &str) -> BTreeMap<(String, i32), Committed> {
        self.offsets
            .lock()
            .expect("offsets lock")
            .group(group_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every known group with its protocol type and state.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let groups = self.lock();
        let mut listed: Vec<(String, String, GroupState)> = groups
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect();
        for group in self.offsets.lock().expect("offsets lock").all().keys() {
            if !groups.contains_key(group) {
                listed.push((group.clone(), String::new(), GroupState::Empty));
            }
        }
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        listed
    }

    /// A group's description; `None` if unknown.
    pub fn describe(&self, group_id: &str) -> Option<Describe> {
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            let known = self
                .offsets
                .lock()
                .expect("offsets lock")
                .group(group_id)
                .is_some();
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
                    metadata: metadata_for(m, &protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Deletes an empty group and its offsets.
    pub fn delete(&self, group_id: &str) -> i16 {
        let mut groups = self.lock();
        let has_offsets = self
            .offsets
            .lock()
            .expect("offsets lock")
            .group(group_id)
            .is_some();
        match groups.get(group_id) {
            None if !has_offsets => return error(ResponseError::GroupIdNotFound),
            Some(group) if !group.members.is_empty() => return error(ResponseError::NonEmptyGroup),
            _ => {}
        }
        groups.remove(group_id);
        match self
            .offsets
            .lock()
            .expect("offsets lock")
            .delete_group(group_id)
        {
            Ok(()) => 0,
            Err(failure) => {
                tracing::error!(group = group_id, error = %failure, "deleting group offsets failed");
                error(ResponseError::KafkaStorageError)
            }
        }
    }

    /// Generation and state of a group, for tools.
    pub fn generation(&self, group_id: &str) -> Option<(i32, GroupState)> {
        self.lock().get(group_id).map(|g| (g.generation, g.state))
    }
}

fn metadata_for(member: &Member, protocol: &str) -> Bytes {
    member
        .protocols
        .iter()
        .find(|(name, _)| name == protocol)
        .map(|(_, metadata)| metadata.clone())
        .unwrap_or_default()
}

/// The protocol every member supports that members rank best: each member
/// votes for its most preferred candidate, most votes wins (Kafka's rule).
fn choose_protocol(group: &Group) -> String {
    let candidates: Vec<&String> = group
        .members
        .values()
        .next()
        .map(|first| {
            first
                .protocols
                .iter()
                .map(|(name, _)| name)
                .filter(|name| {
                    group
                        .members
                        .values()
                        .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
    for member in group.members.values() {
        if let Some((name, _)) = member
            .protocols
            .iter()
            .find(|(name, _)| candidates.contains(&name))
        {
            *votes.entry(name).or_default() += 1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{StdIo, SystemClock};

    fn coordinator(dir: &std::path::Path) -> Arc<GroupCoordinator> {
        let offsets = OffsetStore::open(Arc::new(StdIo), dir).unwrap();
        let config = GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        };
        Arc::new(GroupCoordinator::new(
            config,
            Arc::new(SystemClock),
            offsets,
        ))
    }

    fn params(member_id: &str, session_timeout_ms: i32) -> JoinParams {
        JoinParams {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            require_known_member_id: true,
        }
    }

    /// Joins through the MEMBER_ID_REQUIRED round trip; returns the outcome.
    async fn join_new(groups: &GroupCoordinator) -> JoinOutcome {
        let first = groups.join(params("", 6000)).await;
        assert_eq!(first.error, ResponseError::MemberIdRequired.code());
        groups.join(params(&first.member_id, 6000)).await
    }

    #[tokio::test]
    async fn two_members_rebalance_sync_and_fence_old_generations() {
        let dir = tempfile::tempdir().unwrap();
        let groups = coordinator(dir.path());
        let a = join_new(&groups).await;
        assert_eq!((a.error, a.generation), (0, 1));
        assert_eq!(a.leader, a.member_id);
        assert_eq!(a.members.len(), 1);
        let synced = groups
            .sync(
                "g",
                1,
                &a.member_id,
                vec![(a.member_id.clone(), Bytes::from_static(b"all"))],
            )
            .await;
        assert_eq!(synced.assignment, Bytes::from_static(b"all"));
        assert_eq!(groups.generation("g"), Some((1, GroupState::Stable)));

        // A second member joins: the first learns of it by heartbeat and rejoins.
        let second = {
            let groups = groups.clone();
            tokio::spawn(async move { join_new(&groups).await })
        };
        while groups.heartbeat("g", 1, &a.member_id) != ResponseError::RebalanceInProgress.code() {
            tokio::task::yield_now().await;
        }
        let a2 = groups.join(params(&a.member_id, 6000)).await;
        let b = second.await.unwrap();
        assert_eq!((a2.generation, b.generation), (2, 2));
        assert_eq!(a2.members.len(), 2, "the leader sees both subscriptions");
        assert!(b.members.is_empty());
        // The old generation is fenced everywhere.
        assert_eq!(
            groups.heartbeat("g", 1, &a.member_id),
            ResponseError::IllegalGeneration.code()
        );
        let codes = groups.commit(
            "g",
            1,
            &a.member_id,
            vec![("t".into(), 0, 5, -1, String::new())],
        );
        assert_eq!(codes, vec![ResponseError::IllegalGeneration.code()]);
        assert_eq!(
            groups.sync("g", 1, &b.member_id, vec![]).await.error,
            ResponseError::IllegalGeneration.code()
        );
        // The follower waits for the leader's assignment.
        let follower = {
            let groups = groups.clone();
            let id = b.member_id.clone();
            tokio::spawn(async move { groups.sync("g", 2, &id, vec![]).await })
        };
        let leader = groups
            .sync(
                "g",
                2,
                &a.member_id,
                vec![(b.member_id.clone(), Bytes::from_static(b"half"))],
            )
            .await;
        assert_eq!(leader.assignment, Bytes::new());
        assert_eq!(
            follower.await.unwrap().assignment,
            Bytes::from_static(b"half")
        );
        let codes = groups.commit(
            "g",
            2,
            &b.member_id,
            vec![("t".into(), 0, 5, -1, "meta".into())],
        );
        assert_eq!(codes, vec![0]);
        assert_eq!(groups.committed("g")[&("t".to_string(), 0)].offset, 5);

        // Leaving sends the group back to a rebalance; the survivor rejoins alone.
        assert_eq!(
            groups
                .leave("g", vec![(b.member_id.clone(), None)])
                .unwrap(),
            vec![0]
        );
        assert_eq!(
            groups.heartbeat("g", 2, &a.member_id),
            ResponseError::RebalanceInProgress.code()
        );
        let alone = groups.join(params(&a.member_id, 6000)).await;
        assert_eq!((alone.generation, alone.members.len()), (3, 1));
    }

    #[test]
    fn idle_groups_expire_unless_kept_alive() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(crate::log::ManualClock::new(1_000));
        let offsets = OffsetStore::open(Arc::new(StdIo), dir.path()).unwrap();
        let config = GroupConfig {
            offsets_retention_ms: 10_000,
            ..GroupConfig::default()
        };
        let groups = GroupCoordinator::new(config, clock.clone(), offsets);
        for group in ["idle", "kept"] {
            let commit = vec![("t".into(), 0, 5, -1, String::new())];
            assert_eq!(groups.commit(group, -1, "", commit), vec![0]);
        }
        for _ in 0..3 {
            clock.advance(6_000);
            groups.keep_alive("kept");
            groups.tick();
        }
        assert!(
            groups.committed("idle").is_empty(),
            "expired past retention"
        );
        assert_eq!(groups.committed("kept")[&("t".to_string(), 0)].offset, 5);
    }

    #[tokio::test]
    async fn unknown_members_simple_commits_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let groups = coordinator(dir.path());
        assert_eq!(
            groups.heartbeat("g", 1, "nobody"),
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(
            groups.join(params("nobody", 6000)).await.error,
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(
            groups.join(params("", 10)).await.error,
            ResponseError::InvalidSessionTimeout.code()
        );
        // A group without members takes simple commits (generation -1).
        assert_eq!(
            groups.commit("solo", -1, "", vec![("t".into(), 1, 9, -1, String::new())]),
            vec![0]
        );
        assert_eq!(groups.describe("solo").unwrap().state, GroupState::Empty);
        assert_eq!(groups.delete("solo"), 0);
        assert!(groups.committed("solo").is_empty());
        assert_eq!(groups.delete("solo"), ResponseError::GroupIdNotFound.code());
        // A group with a member refuses deletion and simple commits.
        let a = join_new(&groups).await;
        assert_eq!(groups.delete("g"), ResponseError::NonEmptyGroup.code());
        assert_eq!(
            groups.commit("g", -1, "", vec![("t".into(), 0, 1, -1, String::new())]),
            vec![ResponseError::UnknownMemberId.code()]
        );
        assert_eq!(a.error, 0);
    }

    #[tokio::test]
    async fn expired_sessions_leave_the_group_and_static_members_keep_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let groups = coordinator(dir.path());
        let mut static_params = params("", 6000);
        static_params.group_instance_id = Some("instance-1".into());
        let first = groups.join(static_params.clone()).await;
        assert_eq!(
            (first.error, first.generation),
            (0, 1),
            "static members skip MEMBER_ID_REQUIRED"
        );
        groups
            .sync(
                "g",
                1,
                &first.member_id,
                vec![(first.member_id.clone(), Bytes::from_static(b"p0"))],
            )
            .await;
        // The same instance restarts: new id, old one fenced.
        let restarted = groups.join(static_params).await;
        assert_eq!(restarted.error, 0);
        assert_ne!(restarted.member_id, first.member_id);
        assert_eq!(
            groups.heartbeat("g", restarted.generation, &first.member_id),
            ResponseError::UnknownMemberId.code()
        );

        // Session expiry, driven by tick(), empties the group.
        let short = GroupCoordinator::new(
            GroupConfig {
                initial_rebalance_delay_ms: 0,
                session_timeout_min_ms: 1,
                ..GroupConfig::default()
            },
            Arc::new(SystemClock),
            OffsetStore::open(Arc::new(StdIo), &dir.path().join("short")).unwrap(),
        );
        let first = short.join(params("", 6000)).await;
        let member = short.join(params(&first.member_id, 50)).await;
        short
            .sync("g", member.generation, &member.member_id, vec![])
            .await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while short.generation("g").map(|(_, state)| state) != Some(GroupState::Empty) {
            assert!(Instant::now() < deadline, "session never expired");
            short.tick();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            short.heartbeat("g", member.generation, &member.member_id),
            ResponseError::UnknownMemberId.code()
        );
    }
}
