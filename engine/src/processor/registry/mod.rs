//! The deployed processors of a broker: deploy, redeploy, pause, resume,
//! remove, status, and resuming everything after a restart.
//!
//! Each deployment runs one task per input partition (see `worker`). A
//! background loop notices partitions added to input topics and starts
//! tasks for them. Admin operations are serialised by one async lock; the
//! status reads only atomics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::host::{Instance, Label, Plugin, Runtime};
use super::spec::{self, DeployRequest, Deployment, Guarantee, OnError};
use super::stateful::ProducerIds;
use super::status::{now_ms, ErrorInfo, PartitionState, PartitionStats, PartitionStatus};
use super::ProcessorConfig;
use crate::group::{GroupCoordinator, GroupError, OffsetCommit};
use crate::log::io::{remove_durably, write_atomic};
use crate::log::{LogStore, StdIo};
use crate::shutdown::Shutdown;
use crate::start_position::StartPosition;
use crate::state::StateDb;
use tasks::stop;

/// How often input topics are checked for new partitions.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// An admin operation's failure, mapped to an HTTP status by the API; the
/// message is what the caller sees.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// The request itself is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such processor (404).
    #[error("{0}")]
    NotFound(String),
    /// Refused for now because of something the caller can change (e.g. a
    /// Kafka client in the processor's group) (409).
    #[error("{0}")]
    Conflict(String),
    /// The broker failed (500).
    #[error("{0}")]
    Internal(String),
    /// Not answerable now, but soon without the caller doing anything (a
    /// partition's state being restored) (503).
    #[error("{0}")]
    Unavailable(String),
}

fn internal(error: impl std::fmt::Display) -> AdminError {
    AdminError::Internal(error.to_string())
}

/// What a running deployment's tasks watch.
#[derive(Debug, Clone, Default)]
struct Control {
    paused: bool,
    stopped: bool,
    /// Bumped by `resume`: failed partitions start again.
    restart: u64,
}

/// A deployment with its plugin and tasks.
struct Running {
    deployment: Arc<Deployment>,
    plugin: Plugin,
    /// Resumed at startup with its state gone: tasks rebuild it.
    state_lost: bool,
    /// The deployment's tables, shared by its tasks.
    tables: Option<Arc<crate::processor::tables::Tables>>,
    control: watch::Sender<Control>,
    partitions: Mutex<BTreeMap<(String, i32), Arc<PartitionStats>>>,
    aborts: Mutex<Vec<Arc<std::sync::atomic::AtomicBool>>>,
    tasks: Mutex<JoinSet<()>>,
}

/// The broker's processors.
pub(crate) struct Processors {
    runtime: Arc<Runtime>,
    store: Arc<LogStore>,
    groups: Arc<GroupCoordinator>,
    /// Keyed state and commit records of stateful and exactly-once tasks.
    state: Arc<StateDb>,
    /// The broker's producer id allocator, for exactly-once tasks.
    producer_ids: ProducerIds,
    dir: PathBuf,
    config: ProcessorConfig,
    shutdown: Shutdown,
    running: Mutex<BTreeMap<String, Arc<Running>>>,
    /// Persisted deployments that could not be resumed at startup (plugin
    /// file missing or no longer valid), with why: listed as failed until
    /// redeployed or removed.
    broken: Mutex<BTreeMap<String, String>>,
    admin: tokio::sync::Mutex<()>,
    /// The threads steps run on.
    steps: crate::processor::worker::threads::StepThreads,
}

/// A processor's status, as `GET /v1/processors/{name}` serves it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProcessorStatus {
    pub(crate) name: String,
    pub(crate) state: &'static str,
    pub(crate) group: String,
    pub(crate) wasm_sha256: String,
    pub(crate) wasm_bytes: u64,
    pub(crate) inputs: Vec<String>,
    pub(crate) outputs: Vec<String>,
    pub(crate) config: Vec<(String, String)>,
    pub(crate) on_error: String,
    pub(crate) limits: spec::Limits,
    pub(crate) stores: Vec<String>,
    pub(crate) guarantee: Guarantee,
    pub(crate) commit_interval_ms: u64,
    pub(crate) idle_advance_ms: Option<u64>,
    /// State changes also go to the changelog topics (`--changelog`).
    pub(crate) changelog: bool,
    pub(crate) deployed_at_ms: i64,
    pub(crate) records_in: u64,
    pub(crate) records_out: u64,
    pub(crate) errors: u64,
    pub(crate) skipped: u64,
    pub(crate) dead_lettered: u64,
    /// Records the plugin dropped as late (stateful processors).
    pub(crate) late_dropped: u64,
    pub(crate) lag: i64,
    pub(crate) last_error: Option<ErrorInfo>,
    pub(crate) partitions: Vec<PartitionStatus>,
}

impl Processors {
    /// Opens `<data-dir>/processors`, and starts every persisted deployment
    /// from its committed offsets.
    pub(crate) fn open(
        data_dir: &std::path::Path,
        config: ProcessorConfig,
        store: Arc<LogStore>,
        groups: Arc<GroupCoordinator>,
        (state, producer_ids): (Arc<StateDb>, ProducerIds),
        shutdown: Shutdown,
    ) -> anyhow::Result<Arc<Self>> {
        let dir = data_dir.join("processors");
        std::fs::create_dir_all(dir.join("plugins"))?;
        // The compile cache wants an absolute path.
        let dir = std::fs::canonicalize(&dir)?;
        // Before compiled plugins were verified, wasmtime's own cache
        // lived here: nothing from it is loaded any more.
        let unverified = dir.join("cache");
        if unverified.exists() {
            std::fs::remove_dir_all(&unverified)?;
        }
        let cache = config.compile_cache.then(|| dir.join("compiled"));
        let runtime = Runtime::with_memory_max(cache.as_deref(), config.memory_bytes_max)?;
        let steps = crate::processor::worker::threads::StepThreads::new(config.nice)?;
        state.set_commit_nice(config.nice);
        let processors = Arc::new(Self {
            runtime,
            store,
            groups,
            state,
            producer_ids,
            dir,
            config,
            shutdown,
            running: Mutex::new(BTreeMap::new()),
            broken: Mutex::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
            steps,
        });
        super::stateful::end_all_open(&processors.store, &processors.state)
            .map_err(anyhow::Error::msg)
            .context("ending processors' open transactions")?;
        processors.load()?;
        Ok(processors)
    }

    /// The wasmtime runtime (for `plugin run` and benchmarks).
    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Memory of all processor state now (RocksDB's cache, and the
    /// tasks' staged writes), and its bound.
    pub(crate) fn state_memory(&self) -> (usize, usize, u64) {
        (
            self.state.memory_bytes(),
            self.state.staged_bytes(),
            self.state.config().memory_bytes_max,
        )
    }

    /// Largest upload accepted.
    pub(crate) fn wasm_bytes_max(&self) -> u64 {
        self.config.wasm_bytes_max
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("plugins").join(format!("{sha256}.wasm"))
    }

    fn spec_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Checks for new input partitions until shutdown.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            self.reconcile();
            tokio::select! {
                _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
                _ = shutdown.changed() => break,
            }
        }
        let running = self.snapshot();
        for running in running {
            stop(&running).await;
        }
    }

    /// The running deployments, outside the registry lock.
    fn snapshot(&self) -> Vec<Arc<Running>> {
        self.running
            .lock()
            .expect("registry lock")
            .values()
            .cloned()
            .collect()
    }

    fn reconcile(self: &Arc<Self>) {
        let running = self.snapshot();
        for running in running {
            self.spawn_missing(&running);
        }
    }

    /// Runs `deployment`. `state_lost`: it is being resumed at startup, has
    /// stores, and its state is gone (its tasks rebuild it).
    fn start(self: &Arc<Self>, deployment: Arc<Deployment>, plugin: Plugin, state_lost: bool) {
        let (control, _) = watch::channel(Control {
            paused: deployment.paused,
            ..Control::default()
        });
        let tables = if deployment.tables.is_empty() {
            None
        } else {
            let opened = self
                .state
                .processor(&deployment.name)
                .map_err(|e| e.to_string())
                .and_then(|state| {
                    crate::processor::tables::Tables::open(
                        self.store.clone(),
                        state,
                        deployment.tables.clone(),
                    )
                });
            match opened {
                Ok(tables) => Some(tables),
                Err(error) => {
                    tracing::error!(processor = %deployment.name, %error, "opening the processor's tables failed");
                    None
                }
            }
        };
        let running = Arc::new(Running {
            deployment: deployment.clone(),
            plugin,
            state_lost,
            tables,
            control,
            partitions: Mutex::new(BTreeMap::new()),
            aborts: Mutex::new(Vec::new()),
            tasks: Mutex::new(JoinSet::new()),
        });
        self.running
            .lock()
            .expect("registry lock")
            .insert(deployment.name.clone(), running.clone());
        self.spawn_missing(&running);
    }

    /// Deploys `name`, or redeploys it keeping its committed offsets unless
    /// `from` says where to start.
    pub(crate) async fn deploy(
        self: &Arc<Self>,
        name: &str,
        request: DeployRequest,
        wasm: Bytes,
    ) -> Result<ProcessorStatus, AdminError> {
        let _admin = self.admin.lock().await;
        let deployment = self.validate(name, &request, &wasm)?;
        let from = request
            .from
            .as_deref()
            .map(StartPosition::parse)
            .transpose()
            .map_err(AdminError::BadRequest)?;
        let runtime = self.runtime.clone();
        let trial = deployment.clone();
        let compiled = wasm.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            let (plugin, artifact_sha256) = runtime
                .compile_cached(&compiled, None)
                .map_err(|e| AdminError::BadRequest(format!("{e:#}")))?;
            // A trial instance runs init with the config, so a bad config
            // is refused here rather than failing every partition later.
            let label = Label {
                processor: trial.name.as_str().into(),
                topic: "(deploy)".into(),
                partition: -1,
                task: u32::MAX,
                stores: trial.stores.clone().into(),
                tables: trial.tables.iter().map(|t| t.store.clone()).collect(),
            };
            // Outside the broker-wide cap, which `validate` checked: a
            // redeploy near the cap must not count the old and new twice.
            Instance::new(
                &plugin.outside_memory_cap(),
                trial.limits,
                &trial.config,
                label,
            )
            .map_err(|e| AdminError::BadRequest(e.to_string()))?;
            Ok::<_, AdminError>((plugin, artifact_sha256))
        })
        .await
        .map_err(internal)??;
        let (plugin, artifact_sha256) = compiled;
        if let OnError::DeadLetter(topic) = deployment.policy() {
            self.ensure_dead_letter_topic(&topic, &deployment)?;
        }
        let blob = self.blob_path(&deployment.wasm_sha256);
        if !blob.exists() {
            write_atomic(&StdIo, &blob, &wasm).map_err(internal)?;
        }
        let previous = self.running.lock().expect("registry lock").remove(name);
        if let Some(previous) = &previous {
            stop(previous).await;
        }
        let mut deployment = deployment;
        deployment.artifact_sha256 = artifact_sha256;
        if let Some(previous) = &previous {
            deployment.paused = previous.control.borrow().paused;
        }
        let json = serde_json::to_vec_pretty(&deployment).map_err(internal)?;
        write_atomic(&StdIo, &self.spec_path(name), &json).map_err(internal)?;
        if let Some(from) = from {
            // The commit records hold the position of stateful tasks: a new
            // start position throws them away (validated: with the state
            // only when --reset-state says so).
            self.state.drop_processor(name).map_err(internal)?;
            self.delete_repartition_topic(&deployment)?;
            self.delete_changelog_topics(&deployment)?;
            self.reset_offsets(&deployment, from)?;
        } else if !deployment.is_stateful() {
            // Redeployed without state: the old state and its commit
            // records would be stale by the time stores came back (the
            // stateless version moves the consumer group on), and resuming
            // from them would apply records twice.
            self.state.drop_processor(name).map_err(internal)?;
            self.delete_repartition_topic(&deployment)?;
            self.delete_changelog_topics(&deployment)?;
        } else if !deployment.changelog {
            // Turned off: a changelog left behind would miss the changes
            // from now on, and restore stale state if turned on again.
            self.delete_changelog_topics(&deployment)?;
        }
        self.broken.lock().expect("registry lock").remove(name);
        tracing::info!(processor = name, sha256 = %deployment.wasm_sha256, inputs = ?deployment.inputs,
            outputs = ?deployment.outputs, "processor deployed");
        // The state's column family exists from now on: a task without a
        // commit record starts afresh, it has not lost its state.
        if deployment.is_stateful() {
            self.state.processor(name).map_err(internal)?;
        }
        self.start(Arc::new(deployment), plugin, false);
        self.status(name)
    }

    fn ensure_dead_letter_topic(
        &self,
        topic: &str,
        deployment: &Deployment,
    ) -> Result<(), AdminError> {
        if self.store.topic(topic).is_some() {
            return Ok(());
        }
        let partitions = deployment
            .inputs
            .iter()
            .filter_map(|t| self.store.topic(t))
            .map(|t| t.partition_count())
            .max()
            .unwrap_or(1);
        self.store
            .create_topic(topic, partitions, Default::default())
            .map(|_| tracing::info!(topic, partitions, "created dead-letter topic"))
            .map_err(|e| AdminError::BadRequest(format!("creating dead-letter topic {topic}: {e}")))
    }

    /// Commits the start position `from` for every input partition.
    fn reset_offsets(
        &self,
        deployment: &Deployment,
        from: StartPosition,
    ) -> Result<(), AdminError> {
        let mut commits = Vec::new();
        for topic in &deployment.inputs {
            let count = self.store.topic(topic).map_or(0, |t| t.partition_count());
            for id in 0..count {
                let partition = self.store.partition(topic, id).map_err(internal)?;
                // Latest is what a read_committed consumer starts at: the LSO.
                let (start, end) = (partition.log_start_offset(), partition.last_stable_offset());
                let offset = match from {
                    StartPosition::Earliest => start,
                    StartPosition::Latest => end,
                    StartPosition::Offset(offset) => offset.clamp(start, end),
                    StartPosition::Timestamp(ms) => partition
                        .offset_for_timestamp(ms)
                        .map_err(internal)?
                        .map_or(end, |(offset, _)| offset),
                };
                commits.push(OffsetCommit {
                    topic: topic.clone(),
                    partition: id,
                    offset,
                    leader_epoch: -1,
                    metadata: String::new(),
                });
            }
        }
        let results = self.groups.commit(&deployment.group(), -1, "", commits);
        match results.into_iter().find_map(Result::err) {
            Some(error) => Err(AdminError::Internal(format!(
                "resetting offsets of group {} failed ({error}); \
                 is a Kafka consumer a member of that group?",
                deployment.group()
            ))),
            None => Ok(()),
        }
    }

    /// Stops and forgets `name`, its committed offsets and (if no other
    /// deployment uses it) its stored plugin. The offsets go first: when
    /// they cannot be deleted (a Kafka client is a member of the group, or
    /// the offsets log failed) the processor stays deployed and running and
    /// the error says why, since a later deploy under the same name would
    /// otherwise resume from them.
    pub(crate) async fn remove(self: &Arc<Self>, name: &str) -> Result<(), AdminError> {
        let _admin = self.admin.lock().await;
        let group = spec::group_name(name);
        if self
            .broken
            .lock()
            .expect("registry lock")
            .contains_key(name)
        {
            self.delete_offsets(name, &group)?;
            remove_durably(&StdIo, &self.spec_path(name)).map_err(internal)?;
            self.state.drop_processor(name).map_err(internal)?;
            self.broken.lock().expect("registry lock").remove(name);
            tracing::info!(processor = name, "processor removed");
            return Ok(());
        }
        let running = self.get(name)?;
        // Refused before anything stops, in the common case.
        let members = self.groups.describe(&group).map_or(0, |g| g.members.len());
        if members > 0 {
            let error = GroupError::NonEmptyGroup { members };
            return Err(offsets_kept(name, &group, &error));
        }
        // The tasks commit offsets: stop them before deleting.
        stop(&running).await;
        if let Err(error) = self.delete_offsets(name, &group) {
            let mut deployment = (*running.deployment).clone();
            deployment.paused = running.control.borrow().paused;
            self.start(Arc::new(deployment), running.plugin.clone(), false);
            return Err(error);
        }
        self.running.lock().expect("registry lock").remove(name);
        remove_durably(&StdIo, &self.spec_path(name)).map_err(internal)?;
        if let Err(error) = self.state.drop_processor(name) {
            tracing::error!(processor = name, %error, "deleting the processor's state failed");
        }
        if let Err(error) = self.delete_repartition_topic(&running.deployment) {
            tracing::error!(processor = name, %error, "deleting the repartition topic failed");
        }
        if let Err(error) = self.delete_changelog_topics(&running.deployment) {
            tracing::error!(processor = name, %error, "deleting the changelog topics failed");
        }
        let sha = &running.deployment.wasm_sha256;
        let shared = self
            .running
            .lock()
            .expect("registry lock")
            .values()
            .any(|r| &r.deployment.wasm_sha256 == sha);
        if !shared {
            // A blob left behind by a failure is only unused space.
            let _ = remove_durably(&StdIo, &self.blob_path(sha));
        }
        tracing::info!(processor = name, "processor removed");
        Ok(())
    }

    /// Deletes the processor's repartition topic, if it has one: records in
    /// it belong to the state being thrown away.
    fn delete_repartition_topic(&self, deployment: &Deployment) -> Result<(), AdminError> {
        let topic = deployment.repartition_topic();
        if self.store.topic(&topic).is_none() {
            return Ok(());
        }
        self.store
            .delete_topic(&topic, None)
            .map_err(|e| internal(format!("deleting {topic}: {e}")))
    }

    /// Deletes the processor's changelog topics, if it has them: they
    /// describe the state being thrown away.
    fn delete_changelog_topics(&self, deployment: &Deployment) -> Result<(), AdminError> {
        for topic in deployment.changelog_topics() {
            if self.store.topic(&topic).is_some() {
                self.store
                    .delete_topic(&topic, None)
                    .map_err(|e| internal(format!("deleting {topic}: {e}")))?;
            }
        }
        Ok(())
    }

    /// Deletes the committed offsets of processor `name`'s `group` (none
    /// committed yet is fine).
    fn delete_offsets(&self, name: &str, group: &str) -> Result<(), AdminError> {
        match self.groups.delete(group) {
            Ok(()) | Err(GroupError::GroupIdNotFound) => Ok(()),
            Err(error) => Err(offsets_kept(name, group, &error)),
        }
    }

    /// Pauses (`true`) or resumes a processor; resuming also restarts
    /// failed partitions.
    pub(crate) async fn set_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<ProcessorStatus, AdminError> {
        let _admin = self.admin.lock().await;
        let running = self.get(name)?;
        let mut deployment = (*running.deployment).clone();
        deployment.paused = paused;
        let json = serde_json::to_vec_pretty(&deployment).map_err(internal)?;
        write_atomic(&StdIo, &self.spec_path(name), &json).map_err(internal)?;
        running.control.send_modify(|control| {
            control.paused = paused;
            if !paused {
                control.restart += 1;
            }
        });
        if !paused {
            // Until each task has looked again (milliseconds), it is
            // starting, not still paused.
            let partitions = running.partitions.lock().expect("status lock");
            for stats in partitions.values() {
                if stats.state() == PartitionState::Paused {
                    stats.set_state(PartitionState::Starting);
                }
            }
        }
        tracing::info!(
            processor = name,
            paused,
            "processor {}",
            if paused { "paused" } else { "resumed" }
        );
        self.status_of(&running, paused)
    }

    fn get(&self, name: &str) -> Result<Arc<Running>, AdminError> {
        self.running
            .lock()
            .expect("registry lock")
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))
    }

    /// Status of every processor, by name.
    pub(crate) fn list(&self) -> Vec<ProcessorStatus> {
        let running = self.snapshot();
        let mut list: Vec<ProcessorStatus> = running
            .iter()
            .filter_map(|r| self.status_of(r, r.control.borrow().paused).ok())
            .collect();
        let broken = self.broken.lock().expect("registry lock").clone();
        list.extend(
            broken
                .iter()
                .map(|(name, message)| broken_status(name, message)),
        );
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Each running processor's name and its tasks' counters (`/metrics`
    /// reads their histograms).
    pub(crate) fn partition_stats(&self) -> Vec<(String, Vec<Arc<PartitionStats>>)> {
        (self.snapshot().iter())
            .map(|running| {
                let partitions = running.partitions.lock().expect("status lock");
                let stats = partitions.values().cloned().collect();
                (running.deployment.name.clone(), stats)
            })
            .collect()
    }

    /// Status of one processor.
    pub(crate) fn status(&self, name: &str) -> Result<ProcessorStatus, AdminError> {
        if let Some(message) = self.broken.lock().expect("registry lock").get(name) {
            return Ok(broken_status(name, message));
        }
        let running = self.get(name)?;
        let paused = running.control.borrow().paused;
        self.status_of(&running, paused)
    }

    fn status_of(&self, running: &Running, paused: bool) -> Result<ProcessorStatus, AdminError> {
        let deployment = &running.deployment;
        let stats: Vec<_> = running
            .partitions
            .lock()
            .expect("status lock")
            .values()
            .cloned()
            .collect();
        let state = deployment
            .is_stateful()
            .then(|| self.state.existing(&deployment.name))
            .flatten();
        let partitions: Vec<PartitionStatus> = stats
            .iter()
            .map(|s| self.partition_status(s, paused, (deployment, state.as_ref())))
            .collect();
        let sum = |f: fn(&PartitionStatus) -> u64| partitions.iter().map(f).sum::<u64>();
        let failed = partitions
            .iter()
            .filter(|p| p.state == PartitionState::Failed)
            .count();
        let state = if paused {
            "paused"
        } else if failed > 0 && failed == partitions.len() {
            "failed"
        } else if failed > 0 {
            "degraded"
        } else {
            "running"
        };
        let last_error = partitions
            .iter()
            .filter_map(|p| p.last_error.clone())
            .max_by_key(|e| e.at_ms);
        let mut tasks = std::collections::HashSet::new();
        Ok(ProcessorStatus {
            name: deployment.name.clone(),
            state,
            group: deployment.group(),
            wasm_sha256: deployment.wasm_sha256.clone(),
            wasm_bytes: deployment.wasm_bytes,
            inputs: deployment.inputs.clone(),
            outputs: deployment.outputs.clone(),
            config: deployment.config.clone(),
            on_error: deployment.on_error.clone(),
            limits: deployment.limits,
            stores: deployment.stores.clone(),
            guarantee: deployment.guarantee,
            commit_interval_ms: deployment.commit_interval_ms,
            idle_advance_ms: deployment.idle_advance_ms,
            changelog: deployment.changelog,
            deployed_at_ms: deployment.deployed_at_ms,
            // Per task: the input partitions of one task show its figures.
            late_dropped: partitions
                .iter()
                .filter(|p| tasks.insert(deployment.task_id(&p.topic, p.partition)))
                .filter_map(|p| p.stateful.as_ref())
                .map(|s| s.late_dropped)
                .sum(),
            records_in: sum(|p| p.records_in),
            records_out: sum(|p| p.records_out),
            errors: sum(|p| p.errors),
            skipped: sum(|p| p.skipped),
            dead_lettered: sum(|p| p.dead_lettered),
            lag: partitions.iter().map(|p| p.lag).sum(),
            last_error,
            partitions,
        })
    }

    fn partition_status(
        &self,
        stats: &PartitionStats,
        paused: bool,
        (deployment, processor_state): (&Deployment, Option<&crate::state::ProcessorState>),
    ) -> PartitionStatus {
        let high_watermark = self
            .store
            .partition(&stats.topic, stats.partition)
            .map_or(-1, |p| p.high_watermark());
        let committed_offset = stats.committed_offset.load(Ordering::Relaxed);
        let mut state = stats.state();
        if paused && state != PartitionState::Running {
            state = PartitionState::Paused;
        }
        PartitionStatus {
            topic: stats.topic.clone(),
            partition: stats.partition,
            state,
            committed_offset,
            high_watermark,
            lag: (high_watermark - committed_offset).max(0),
            records_in: PartitionStats::get(&stats.records_in),
            records_out: PartitionStats::get(&stats.records_out),
            errors: PartitionStats::get(&stats.errors),
            skipped: PartitionStats::get(&stats.skipped),
            dead_lettered: PartitionStats::get(&stats.dead_lettered),
            memory_bytes: PartitionStats::get(&stats.memory_bytes),
            stateful: processor_state.map(|state| {
                let mut figures = stats.stateful();
                let task = deployment.task_id(&stats.topic, stats.partition);
                figures.state_bytes = state.approximate_bytes(task).unwrap_or(0);
                figures
            }),
            last_error: stats.last_error(),
        }
    }
}

/// The status of a deployment that could not be resumed.
fn broken_status(name: &str, message: &str) -> ProcessorStatus {
    ProcessorStatus {
        name: name.to_string(),
        state: "failed",
        group: spec::group_name(name),
        wasm_sha256: String::new(),
        wasm_bytes: 0,
        inputs: Vec::new(),
        outputs: Vec::new(),
        config: Vec::new(),
        on_error: String::new(),
        limits: spec::Limits::default(),
        stores: Vec::new(),
        guarantee: Guarantee::AtLeastOnce,
        commit_interval_ms: 0,
        idle_advance_ms: None,
        changelog: false,
        deployed_at_ms: 0,
        records_in: 0,
        records_out: 0,
        errors: 1,
        skipped: 0,
        dead_lettered: 0,
        late_dropped: 0,
        lag: 0,
        last_error: Some(ErrorInfo {
            message: message.to_string(),
            topic: String::new(),
            partition: -1,
            offset: None,
            at_ms: now_ms(),
        }),
        partitions: Vec::new(),
    }
}

/// Why `remove` kept processor `name` deployed: its group's offsets could
/// not be deleted.
fn offsets_kept(name: &str, group: &str, error: &GroupError) -> AdminError {
    match error {
        GroupError::NonEmptyGroup { members } => AdminError::Conflict(format!(
            "cannot remove processor {name}: its consumer group {group} has {members} \
             member(s) (a Kafka client joined it), so its committed offsets cannot be \
             deleted and a processor deployed later as {name} would resume from them; \
             stop that client (or wait for its session to expire) and remove again. \
             The processor is still deployed"
        )),
        other => AdminError::Internal(format!(
            "cannot remove processor {name}: deleting the committed offsets of its \
             consumer group {group} failed ({other}); the processor is still deployed, \
             remove again"
        )),
    }
}

fn not_found(name: &str) -> AdminError {
    AdminError::NotFound(format!("no processor named {name:?}"))
}

fn dedup(topics: &[String]) -> Vec<String> {
    let mut seen = Vec::new();
    for topic in topics {
        if !seen.contains(topic) {
            seen.push(topic.clone());
        }
    }
    seen
}

use super::host::hex;

pub(crate) mod query;
mod startup;
mod tasks;
#[cfg(test)]
mod tests;
mod validate;
