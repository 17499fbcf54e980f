//! A scratch pipeline for benchmarks and tests: the broker's own log
//! store, group coordinator and partition loop in a temporary folder, with
//! no broker around them.

use std::sync::Arc;

use super::host::Factory;
use super::spec::Deployment;
use super::status::PartitionStats;
use super::worker::PartitionTask;
use crate::group::GroupCoordinator;
use crate::log::LogStore;

/// A scratch pipeline for benchmarks and tests: an unsynced log store and a
/// group coordinator in a folder, with topics `in` and `out` of one
/// partition each. `pub` for the `sluice-bench` crate's end-to-end
/// processor benchmark, which runs the broker's own loop through it.
pub struct Scratch {
    /// The log store, in `<dir>/data`, with `flush=never`.
    pub store: Arc<LogStore>,
    /// The group coordinator the tasks commit to, in `<dir>/groups`.
    pub(crate) groups: Arc<GroupCoordinator>,
}

impl Scratch {
    /// Opens (or creates) the pipeline in `dir`, which the caller owns and
    /// removes.
    pub fn open(dir: &std::path::Path) -> anyhow::Result<Self> {
        use crate::group::offsets::OffsetStore;
        use crate::group::GroupConfig;
        use crate::log::{FlushPolicy, StdIo, StoreOptions, SystemClock};
        let options = StoreOptions {
            flush: FlushPolicy::Never,
            ..StoreOptions::default()
        };
        let store = Arc::new(LogStore::open(
            &dir.join("data"),
            options,
            Arc::new(StdIo),
            Arc::new(SystemClock),
        )?);
        let offsets = OffsetStore::open(Arc::new(StdIo), &dir.join("groups"))?;
        let groups = Arc::new(GroupCoordinator::new(
            GroupConfig::default(),
            Arc::new(SystemClock),
            offsets,
        ));
        store.create_topic("in", 1, Default::default())?;
        store.create_topic("out", 1, Default::default())?;
        Ok(Self { store, groups })
    }

    /// The task of processor `name` (from `in` to `out`, policy `fail`) on
    /// partition `in`/0, from offset 0.
    pub fn task(&self, name: &str, factory: Factory, limits: super::spec::Limits) -> PartitionTask {
        self.task_at(name, factory, limits, 0)
    }

    /// Like [`Scratch::task`], starting at committed offset `position`.
    pub(crate) fn task_at(
        &self,
        name: &str,
        factory: Factory,
        limits: super::spec::Limits,
        position: i64,
    ) -> PartitionTask {
        let deployment = Arc::new(Deployment {
            name: name.into(),
            inputs: vec!["in".into()],
            outputs: vec!["out".into()],
            config: Vec::new(),
            on_error: "fail".into(),
            limits,
            wasm_sha256: String::new(),
            wasm_bytes: 0,
            deployed_at_ms: 0,
            paused: false,
            stores: Vec::new(),
            guarantee: Default::default(),
            commit_interval_ms: super::spec::COMMIT_INTERVAL_MS_DEFAULT,
            idle_advance_ms: None,
            tables: Vec::new(),
        });
        let stats = Arc::new(PartitionStats::new("in", 0));
        PartitionTask::new(
            self.store.clone(),
            self.groups.clone(),
            factory,
            deployment,
            stats,
            position,
        )
    }
}
