//! This process as a member of a classic consumer group: JoinGroup with
//! protocol type "consumer" and the "range" assignor (as leader it
//! computes the assignment itself), SyncGroup, heartbeats on a background
//! task, start positions from the committed offsets, commits of what
//! changed, and LeaveGroup.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, SyncGroupRequest,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::consumer::{
    assignment, decode_assignment, decode_versioned, range_assign, subscription,
};
use super::offsets::{commit, fetch_committed, resolve_positions, Offsets};
use super::{check, text, Client, Connection, IsolationLevel, TopicInfo, REQUEST_TIMEOUT};
use crate::start_position::StartPosition;

/// Pause before retrying a join that the coordinator asked to retry.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Session timeout asked for: how long the coordinator keeps a member
/// that stopped heartbeating (one killed with SIGKILL, say).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the coordinator waits for every member to rejoin in a rebalance.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(30);
/// A third of the session timeout, as Kafka's consumer does.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// JoinGroup/SyncGroup round trips before giving up on joining.
const JOIN_ATTEMPTS_MAX: usize = 20;
/// The only assignor offered.
const ASSIGNOR: &str = "range";

/// Stops the heartbeat task.
struct Heartbeat {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// This process as a member of a classic consumer group.
pub(crate) struct Member {
    group: String,
    topic: String,
    /// Its own connection: the leader connections may be mid-fetch.
    coordinator: Connection,
    member_id: String,
    generation: i32,
    /// Partitions of `topic` assigned in this generation, ascending.
    partitions: Vec<i32>,
    /// Set by the heartbeat task when the coordinator wants a rejoin.
    rejoin: Arc<AtomicBool>,
    heartbeat: Option<Heartbeat>,
    /// What was last committed, so unchanged positions are not re-sent.
    committed: Offsets,
    /// The client's TLS and SASL settings, for the heartbeat's own connection.
    security: super::sasl::Security,
}

impl Member {
    /// Finds the coordinator and joins `group` subscribed to `topic`.
    pub(crate) async fn join(client: &mut Client, group: &str, topic: &str) -> Result<Self> {
        let coordinator = client.coordinator(group).await?;
        let security = client.security().clone();
        let mut member = Self {
            group: group.to_string(),
            topic: topic.to_string(),
            coordinator: Connection::open_as(&coordinator.address, &security).await?,
            member_id: String::new(),
            generation: -1,
            partitions: Vec::new(),
            rejoin: Arc::new(AtomicBool::new(false)),
            heartbeat: None,
            committed: Offsets::new(),
            security,
        };
        member.rejoin(client).await?;
        Ok(member)
    }

    pub(crate) fn must_rejoin(&self) -> bool {
        self.rejoin.load(Ordering::SeqCst)
    }

    /// Makes the next [`Member::must_rejoin`] true (a failed commit, say).
    pub(crate) fn request_rejoin(&self) {
        self.rejoin.store(true, Ordering::SeqCst);
    }

    /// JoinGroup + SyncGroup until this member has an assignment.
    pub(crate) async fn rejoin(&mut self, client: &mut Client) -> Result<()> {
        self.stop_heartbeat().await;
        self.committed.clear();
        for _ in 0..JOIN_ATTEMPTS_MAX {
            let joined = self.send_join().await?;
            match ResponseError::try_from_code(joined.error_code) {
                None => {}
                Some(ResponseError::MemberIdRequired) => {
                    self.member_id = joined.member_id.to_string();
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                Some(error) if error.is_retriable() => {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
                Some(_) => check(joined.error_code, None, || {
                    format!("JoinGroup '{}'", self.group)
                })?,
            }
            self.member_id = joined.member_id.to_string();
            self.generation = joined.generation_id;
            if let Some(partitions) = self.sync(client, &joined).await? {
                self.partitions = partitions;
                self.rejoin.store(false, Ordering::SeqCst);
                self.start_heartbeat();
                return Ok(());
            }
        }
        bail!(
            "could not join group '{}' in {JOIN_ATTEMPTS_MAX} attempts",
            self.group
        )
    }

    async fn send_join(&mut self) -> Result<JoinGroupResponse> {
        let metadata = subscription(std::slice::from_ref(&self.topic))?;
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(text(&self.group)))
            .with_session_timeout_ms(SESSION_TIMEOUT.as_millis() as i32)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT.as_millis() as i32)
            .with_member_id(text(&self.member_id))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(text(ASSIGNOR))
                .with_metadata(metadata)]);
        // The coordinator holds JoinGroup until the whole group has joined.
        let deadline = REBALANCE_TIMEOUT + REQUEST_TIMEOUT;
        self.coordinator.call_within(request, deadline).await
    }

    /// SyncGroup (with the assignment, as leader); `None` means join again.
    async fn sync(
        &mut self,
        client: &mut Client,
        joined: &JoinGroupResponse,
    ) -> Result<Option<Vec<i32>>> {
        let assignments = if joined.leader == joined.member_id {
            self.assign(client, joined).await?
        } else {
            Vec::new()
        };
        let version = self.coordinator.version::<SyncGroupRequest>()?;
        let mut request = SyncGroupRequest::default()
            .with_group_id(GroupId(text(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(text(&self.member_id))
            .with_assignments(assignments);
        if version >= 5 {
            request = request
                .with_protocol_type(Some(text("consumer")))
                .with_protocol_name(Some(text(ASSIGNOR)));
        }
        let synced = self
            .coordinator
            .call_within(request, REBALANCE_TIMEOUT + REQUEST_TIMEOUT)
            .await?;
        match ResponseError::try_from_code(synced.error_code) {
            None => {}
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
                return Ok(None)
            }
            Some(ResponseError::UnknownMemberId) => {
                self.member_id.clear();
                return Ok(None);
            }
            Some(error) if error.is_retriable() => {
                tokio::time::sleep(RETRY_BACKOFF).await;
                return Ok(None);
            }
            Some(_) => check(synced.error_code, None, || {
                format!("SyncGroup '{}'", self.group)
            })?,
        }
        let mut assigned =
            decode_assignment(synced.assignment).context("reading the assignment")?;
        let mut partitions = assigned.remove(&self.topic).unwrap_or_default();
        partitions.sort_unstable();
        partitions.dedup();
        Ok(Some(partitions))
    }

    /// The leader's range assignment of every member's subscription.
    async fn assign(
        &self,
        client: &mut Client,
        joined: &JoinGroupResponse,
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut subscriptions = BTreeMap::new();
        for member in &joined.members {
            let subscription: ConsumerProtocolSubscription =
                decode_versioned(member.metadata.clone()).with_context(|| {
                    format!("subscription of member {}", member.member_id.as_str())
                })?;
            let topics: Vec<String> = subscription.topics.iter().map(|t| t.to_string()).collect();
            subscriptions.insert(member.member_id.to_string(), topics);
        }
        let mut topics: Vec<String> = subscriptions.values().flatten().cloned().collect();
        topics.sort();
        topics.dedup();
        let metadata = client.metadata(Some(&topics)).await?;
        let counts: BTreeMap<String, i32> = metadata
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| Some((t.name.as_ref()?.to_string(), t.partitions.len() as i32)))
            .collect();
        range_assign(&subscriptions, &counts)
            .into_iter()
            .map(|(member_id, partitions)| {
                Ok(SyncGroupRequestAssignment::default()
                    .with_member_id(text(member_id))
                    .with_assignment(assignment(&partitions)?))
            })
            .collect()
    }

    /// Committed offsets of the assigned partitions; `from` for the rest
    /// (`latest` meaning the end of the log at `isolation`).
    pub(crate) async fn start_positions(
        &mut self,
        client: &mut Client,
        topic: &TopicInfo,
        from: StartPosition,
        isolation: IsolationLevel,
    ) -> Result<BTreeMap<i32, i64>> {
        if self.partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let asked = BTreeMap::from([(self.topic.clone(), self.partitions.clone())]);
        let committed = fetch_committed(&mut self.coordinator, &self.group, Some(&asked)).await?;
        let mut positions: BTreeMap<i32, i64> = committed
            .iter()
            .map(|((_, partition), offset)| (*partition, *offset))
            .collect();
        let missing: Vec<i32> = self
            .partitions
            .iter()
            .filter(|p| !positions.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            positions.extend(resolve_positions(client, topic, &missing, from, isolation).await?);
        }
        self.committed = committed;
        Ok(positions)
    }

    /// Commits `offsets` that differ from what was last committed.
    pub(crate) async fn commit_changed(&mut self, offsets: &Offsets) -> Result<()> {
        let changed: Offsets = offsets
            .iter()
            .filter(|(key, offset)| self.committed.get(*key) != Some(*offset))
            .map(|(key, offset)| (key.clone(), *offset))
            .collect();
        if changed.is_empty() || self.generation < 0 {
            return Ok(());
        }
        commit(
            &mut self.coordinator,
            &self.group,
            self.generation,
            &self.member_id,
            &changed,
        )
        .await?;
        self.committed.extend(changed);
        Ok(())
    }

    fn start_heartbeat(&mut self) {
        let (stop, mut stopped) = oneshot::channel();
        let address = self.coordinator.address().to_string();
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(text(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(text(&self.member_id));
        let rejoin = self.rejoin.clone();
        let security = self.security.clone();
        let task = tokio::spawn(async move {
            let mut connection = match Connection::open_as(&address, &security).await {
                Ok(connection) => connection,
                Err(error) => {
                    eprintln!("heartbeat: {error:#}");
                    rejoin.store(true, Ordering::SeqCst);
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
                }
                match connection.call(request.clone()).await {
                    Ok(response) if response.error_code == 0 => {}
                    Ok(response) => {
                        // REBALANCE_IN_PROGRESS, or fenced out: join again.
                        tracing::debug!(
                            error_code = response.error_code,
                            "heartbeat asks for a rejoin"
                        );
                        rejoin.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(error) => {
                        eprintln!("heartbeat: {error:#}");
                        rejoin.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
        self.heartbeat = Some(Heartbeat { stop, task });
    }

    async fn stop_heartbeat(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.stop.send(());
            let _ = heartbeat.task.await;
        }
    }

    /// LeaveGroup, so the partitions move to other members at once.
    pub(crate) async fn leave(mut self) -> Result<()> {
        self.stop_heartbeat().await;
        if self.member_id.is_empty() {
            return Ok(());
        }
        let version = self.coordinator.version::<LeaveGroupRequest>()?;
        let request = LeaveGroupRequest::default().with_group_id(GroupId(text(&self.group)));
        let request = if version >= 3 {
            let mut identity = MemberIdentity::default().with_member_id(text(&self.member_id));
            if version >= 5 {
                identity = identity.with_reason(Some(text("the consumer is closing")));
            }
            request.with_members(vec![identity])
        } else {
            request.with_member_id(text(&self.member_id))
        };
        let response = self.coordinator.call(request).await?;
        check(response.error_code, None, || {
            format!("LeaveGroup '{}'", self.group)
        })?;
        for member in &response.members {
            check(member.error_code, None, || {
                format!("LeaveGroup '{}'", self.group)
            })?;
        }
        Ok(())
    }
}
