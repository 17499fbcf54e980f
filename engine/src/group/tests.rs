//! The coordinator driven through its verbs, on a manual clock: time moves
//! only when a test advances it, so expiry is tested without sleeping.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::log::{ManualClock, StdIo};
use offsets::OffsetStore;
use state::GroupState;

impl GroupCoordinator {
    /// Generation and state of a group.
    fn generation(&self, group_id: &str) -> Option<(i32, GroupState)> {
        self.lock().get(group_id).map(|g| (g.generation, g.state))
    }
}

const START_MS: i64 = 1_000;

fn coordinator_with(
    dir: &std::path::Path,
    config: GroupConfig,
) -> (Arc<GroupCoordinator>, Arc<ManualClock>) {
    let offsets = OffsetStore::open(Arc::new(StdIo), dir).unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let groups = GroupCoordinator::new(config, clock.clone(), offsets);
    (Arc::new(groups), clock)
}

fn coordinator(dir: &std::path::Path) -> Arc<GroupCoordinator> {
    let config = GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    };
    coordinator_with(dir, config).0
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
        protocols: vec![Protocol {
            name: "range".into(),
            metadata: Bytes::from_static(b"sub"),
        }],
        require_known_member_id: true,
    }
}

fn offset(partition: i32, offset: i64, metadata: &str) -> Vec<OffsetCommit> {
    vec![OffsetCommit {
        topic: "t".into(),
        partition,
        offset,
        leader_epoch: -1,
        metadata: metadata.into(),
    }]
}

fn assign(member_id: &str, assignment: &'static [u8]) -> Vec<Assignment> {
    vec![Assignment {
        member_id: member_id.into(),
        assignment: Bytes::from_static(assignment),
    }]
}

fn illegal_generation(generation: i32, current: i32) -> GroupError {
    GroupError::IllegalGeneration {
        generation,
        current,
    }
}

/// Joins through the MEMBER_ID_REQUIRED round trip; returns the outcome.
async fn join_new(groups: &GroupCoordinator) -> Joined {
    let Err(GroupError::MemberIdRequired { member_id }) = groups.join(params("", 6000)).await
    else {
        panic!("a new member first learns its id");
    };
    groups.join(params(&member_id, 6000)).await.unwrap()
}

#[tokio::test]
async fn two_members_rebalance_sync_and_fence_old_generations() {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path());
    let a = join_new(&groups).await;
    assert_eq!(a.generation, 1);
    assert_eq!(a.leader, a.member_id);
    assert_eq!(a.members.len(), 1);
    let synced = groups
        .sync("g", 1, &a.member_id, assign(&a.member_id, b"all"))
        .await
        .unwrap();
    assert_eq!(synced.assignment, Bytes::from_static(b"all"));
    assert_eq!(groups.generation("g"), Some((1, GroupState::Stable)));

    // A second member joins: the first learns of it by heartbeat and rejoins.
    let second = {
        let groups = groups.clone();
        tokio::spawn(async move { join_new(&groups).await })
    };
    while groups.heartbeat("g", 1, &a.member_id) != Err(GroupError::RebalanceInProgress) {
        tokio::task::yield_now().await;
    }
    let a2 = groups.join(params(&a.member_id, 6000)).await.unwrap();
    let b = second.await.unwrap();
    assert_eq!((a2.generation, b.generation), (2, 2));
    assert_eq!(a2.members.len(), 2, "the leader sees both subscriptions");
    assert!(b.members.is_empty());
    // The old generation is fenced everywhere.
    assert_eq!(
        groups.heartbeat("g", 1, &a.member_id),
        Err(illegal_generation(1, 2))
    );
    let results = groups.commit("g", 1, &a.member_id, offset(0, 5, ""));
    assert_eq!(results, vec![Err(illegal_generation(1, 2))]);
    assert_eq!(
        groups.sync("g", 1, &b.member_id, vec![]).await.unwrap_err(),
        illegal_generation(1, 2)
    );
    // The follower waits for the leader's assignment.
    let follower = {
        let groups = groups.clone();
        let id = b.member_id.clone();
        tokio::spawn(async move { groups.sync("g", 2, &id, vec![]).await })
    };
    let leader = groups
        .sync("g", 2, &a.member_id, assign(&b.member_id, b"half"))
        .await
        .unwrap();
    assert_eq!(leader.assignment, Bytes::new());
    assert_eq!(
        follower.await.unwrap().unwrap().assignment,
        Bytes::from_static(b"half")
    );
    let results = groups.commit("g", 2, &b.member_id, offset(0, 5, "meta"));
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(groups.committed("g")[&("t".to_string(), 0)].offset, 5);

    // Leaving sends the group back to a rebalance; the survivor rejoins alone.
    let leaving = LeavingMember {
        member_id: b.member_id.clone(),
        group_instance_id: None,
    };
    assert_eq!(groups.leave("g", vec![leaving]), Ok(vec![Ok(())]));
    assert_eq!(
        groups.heartbeat("g", 2, &a.member_id),
        Err(GroupError::RebalanceInProgress)
    );
    let alone = groups.join(params(&a.member_id, 6000)).await.unwrap();
    assert_eq!((alone.generation, alone.members.len()), (3, 1));
}

#[test]
fn idle_groups_expire_unless_kept_alive() {
    let dir = tempfile::tempdir().unwrap();
    let config = GroupConfig {
        offsets_retention_ms: 10_000,
        ..GroupConfig::default()
    };
    let (groups, clock) = coordinator_with(dir.path(), config);
    for group in ["idle", "kept"] {
        assert_eq!(groups.commit(group, -1, "", offset(0, 5, "")), vec![Ok(())]);
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

#[test]
fn offsets_replayed_without_a_group_expire_by_their_commit_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = GroupConfig {
        offsets_retention_ms: 10_000,
        ..GroupConfig::default()
    };
    {
        let (groups, _) = coordinator_with(dir.path(), config.clone());
        assert_eq!(groups.commit("old", -1, "", offset(0, 5, "")), vec![Ok(())]);
    }
    // After a restart the group exists only in the offsets store.
    let (groups, clock) = coordinator_with(dir.path(), config);
    clock.advance(10_000);
    groups.tick();
    assert_eq!(groups.committed("old").len(), 1, "not yet past retention");
    clock.advance(1);
    groups.tick();
    assert!(groups.committed("old").is_empty());
}

#[tokio::test]
async fn unknown_members_simple_commits_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path());
    assert_eq!(
        groups.heartbeat("g", 1, "nobody"),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        groups.join(params("nobody", 6000)).await.unwrap_err(),
        GroupError::UnknownMemberId
    );
    assert!(matches!(
        groups.join(params("", 10)).await,
        Err(GroupError::InvalidSessionTimeout { .. })
    ));
    // A group without members takes simple commits (generation -1).
    assert_eq!(
        groups.commit("solo", -1, "", offset(1, 9, "")),
        vec![Ok(())]
    );
    assert_eq!(groups.describe("solo").unwrap().state, GroupState::Empty);
    assert_eq!(groups.delete("solo"), Ok(()));
    assert!(groups.committed("solo").is_empty());
    assert_eq!(groups.delete("solo"), Err(GroupError::GroupIdNotFound));
    // A group with a member refuses deletion and simple commits.
    join_new(&groups).await;
    assert_eq!(
        groups.delete("g"),
        Err(GroupError::NonEmptyGroup { members: 1 })
    );
    assert_eq!(
        groups.commit("g", -1, "", offset(0, 1, "")),
        vec![Err(GroupError::UnknownMemberId)]
    );
    let too_long = "m".repeat(GroupConfig::default().offset_metadata_bytes_max + 1);
    assert!(matches!(
        groups.commit("solo", -1, "", offset(0, 1, &too_long))[..],
        [Err(GroupError::OffsetMetadataTooLarge { .. })]
    ));
    assert_eq!(
        groups.commit("", -1, "", offset(0, 1, "")),
        vec![Err(GroupError::InvalidGroupId)]
    );
}

#[tokio::test]
async fn expired_sessions_leave_the_group_and_static_members_keep_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let groups = coordinator(dir.path());
    let mut static_params = params("", 6000);
    static_params.group_instance_id = Some("instance-1".into());
    let first = groups
        .join(static_params.clone())
        .await
        .expect("static members skip MEMBER_ID_REQUIRED");
    assert_eq!(first.generation, 1);
    groups
        .sync("g", 1, &first.member_id, assign(&first.member_id, b"p0"))
        .await
        .unwrap();
    // The same instance restarts: new id, old one fenced.
    let restarted = groups.join(static_params).await.unwrap();
    assert_ne!(restarted.member_id, first.member_id);
    assert_eq!(
        groups.heartbeat("g", restarted.generation, &first.member_id),
        Err(GroupError::UnknownMemberId)
    );

    // Session expiry, driven by tick() on the manual clock, empties the group.
    let config = GroupConfig {
        initial_rebalance_delay_ms: 0,
        session_timeout_min_ms: 1,
        ..GroupConfig::default()
    };
    let (short, clock) = coordinator_with(&dir.path().join("short"), config);
    let Err(GroupError::MemberIdRequired { member_id }) = short.join(params("", 6000)).await else {
        panic!("a new member first learns its id");
    };
    let member = short.join(params(&member_id, 50)).await.unwrap();
    short
        .sync("g", member.generation, &member.member_id, vec![])
        .await
        .unwrap();
    clock.advance(49);
    short.tick();
    assert_eq!(short.generation("g"), Some((1, GroupState::Stable)));
    clock.advance(1);
    short.tick();
    assert_eq!(short.generation("g"), Some((2, GroupState::Empty)));
    assert_eq!(
        short.heartbeat("g", member.generation, &member.member_id),
        Err(GroupError::UnknownMemberId)
    );
}

#[tokio::test]
async fn pending_member_ids_expire_with_their_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (groups, clock) = coordinator_with(dir.path(), GroupConfig::default());
    let Err(GroupError::MemberIdRequired { member_id }) = groups.join(params("", 6000)).await
    else {
        panic!("a new member first learns its id");
    };
    clock.advance(6_000);
    groups.tick();
    assert_eq!(
        groups.join(params(&member_id, 6000)).await.unwrap_err(),
        GroupError::UnknownMemberId,
        "the id was forgotten after its session timeout"
    );
}

/// An `Io` whose file syncs wait for the test to release them once armed.
struct GatedIo {
    gate: Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    /// (armed, syncs waiting)
    state: std::sync::Mutex<(bool, usize)>,
    changed: std::sync::Condvar,
}

struct GatedFile {
    inner: Arc<dyn crate::log::io::IoFile>,
    gate: Arc<Gate>,
}

impl crate::log::io::IoFile for GatedFile {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(buf, position)
    }
    fn write_all_at(&self, data: &[u8], position: u64) -> std::io::Result<()> {
        self.inner.write_all_at(data, position)
    }
    fn sync(&self) -> std::io::Result<()> {
        let mut state = self.gate.state.lock().unwrap();
        state.1 += 1;
        self.gate.changed.notify_all();
        while state.0 {
            state = self.gate.changed.wait(state).unwrap();
        }
        state.1 -= 1;
        drop(state);
        self.inner.sync()
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
}

impl crate::log::io::Io for GatedIo {
    fn open(
        &self,
        path: &std::path::Path,
        mode: crate::log::io::OpenMode,
    ) -> std::io::Result<Arc<dyn crate::log::io::IoFile>> {
        Ok(Arc::new(GatedFile {
            inner: StdIo.open(path, mode)?,
            gate: self.gate.clone(),
        }))
    }
    fn create_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
        StdIo.create_dir_all(path)
    }
    fn read_dir(&self, path: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        StdIo.read_dir(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        StdIo.rename(from, to)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        StdIo.remove_file(path)
    }
    fn remove_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
        StdIo.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &std::path::Path) -> std::io::Result<()> {
        StdIo.sync_dir(path)
    }
    fn exists(&self, path: &std::path::Path) -> bool {
        StdIo.exists(path)
    }
}

#[test]
fn reads_and_ticks_never_wait_for_a_commit_in_its_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let io = Arc::new(GatedIo { gate: gate.clone() });
    let offsets = OffsetStore::open(io, dir.path()).unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let groups = Arc::new(GroupCoordinator::new(
        GroupConfig::default(),
        clock,
        offsets,
    ));
    assert_eq!(groups.commit("a", -1, "", offset(0, 1, "")), vec![Ok(())]);
    gate.state.lock().unwrap().0 = true;
    let committing = groups.clone();
    let commit = std::thread::spawn(move || committing.commit("b", -1, "", offset(0, 2, "")));
    {
        let mut state = gate.state.lock().unwrap();
        while state.1 == 0 {
            state = gate.changed.wait(state).unwrap();
        }
    }
    // The commit of b is inside its fsync: everything else still answers.
    assert_eq!(groups.committed("a")[&("t".to_string(), 0)].offset, 1);
    assert!(
        groups.committed("b").is_empty(),
        "not visible before durable"
    );
    assert_eq!(groups.list().len(), 1);
    assert!(groups.describe("a").is_some());
    groups.tick();
    gate.state.lock().unwrap().0 = false;
    gate.changed.notify_all();
    assert_eq!(commit.join().unwrap(), vec![Ok(())]);
    assert_eq!(groups.committed("b")[&("t".to_string(), 0)].offset, 2);
}

#[tokio::test]
async fn member_metadata_is_charged_to_a_budget_that_leaving_returns() {
    let dir = tempfile::tempdir().unwrap();
    let config = GroupConfig {
        initial_rebalance_delay_ms: 0,
        member_metadata_bytes_max: 20,
        group_metadata_bytes_max: 30,
        ..GroupConfig::default()
    };
    let (groups, _clock) = coordinator_with(dir.path(), config);
    let join = |group: &str, metadata: &'static [u8]| {
        let mut join = params("", 6000);
        join.group_id = group.into();
        join.require_known_member_id = false;
        join.protocols[0].metadata = Bytes::from_static(metadata);
        groups.join(join)
    };
    // "range" (5) + 16 bytes is over the per-member bound.
    let too_large = join("g", b"0123456789abcdef").await.unwrap_err();
    assert!(matches!(
        too_large,
        GroupError::MemberMetadataTooLarge { bytes: 21, .. }
    ));
    // 5 + 10 bytes each: two fit the 30-byte budget, a third does not.
    let a = join("a", b"0123456789").await.unwrap();
    join("b", b"0123456789").await.unwrap();
    let full = join("c", b"0123456789").await.unwrap_err();
    assert!(matches!(full, GroupError::MetadataBudgetExhausted { .. }));
    // An assignment is charged too: 10 bytes do not fit what is left.
    let assignments = assign(&a.member_id, b"0123456789");
    let refused = groups
        .sync("a", a.generation, &a.member_id, assignments)
        .await;
    assert!(matches!(
        refused,
        Err(GroupError::MetadataBudgetExhausted { .. })
    ));
    // Leaving returns the member's bytes.
    let leaving = LeavingMember {
        member_id: a.member_id.clone(),
        group_instance_id: None,
    };
    assert_eq!(groups.leave("a", vec![leaving]), Ok(vec![Ok(())]));
    join("c", b"0123456789").await.unwrap();
    let long_id = "g".repeat(256);
    let mut long = params("", 6000);
    long.group_id = long_id;
    assert!(matches!(
        groups.join(long).await,
        Err(GroupError::GroupIdTooLong { bytes: 256, .. })
    ));
}

/// When the last member leaves, the group's assignments go back to the
/// broker-wide metadata budget with it (an empty group may live on for the
/// whole offsets retention, and must not hold them meanwhile).
#[tokio::test]
async fn an_emptied_group_returns_its_assignments_to_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = GroupConfig {
        initial_rebalance_delay_ms: 0,
        member_metadata_bytes_max: 20,
        group_metadata_bytes_max: 30,
        ..GroupConfig::default()
    };
    let (groups, _clock) = coordinator_with(dir.path(), config);
    let join = |group: &str| {
        let mut join = params("", 6000);
        join.group_id = group.into();
        join.require_known_member_id = false;
        join.protocols[0].metadata = Bytes::from_static(b"0123456789");
        groups.join(join)
    };
    // 15 bytes of subscription, then 10 of assignment: 25 of 30.
    let a = join("a").await.unwrap();
    groups
        .sync(
            "a",
            a.generation,
            &a.member_id,
            assign(&a.member_id, b"0123456789"),
        )
        .await
        .unwrap();
    let leaving = LeavingMember {
        member_id: a.member_id.clone(),
        group_instance_id: None,
    };
    assert_eq!(groups.leave("a", vec![leaving]), Ok(vec![Ok(())]));
    // All 30 bytes are free again: two 15-byte members fit.
    join("b").await.unwrap();
    join("c").await.unwrap();
}
