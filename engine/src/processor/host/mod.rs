//! The WebAssembly host: one wasmtime [`Engine`] per broker, components
//! compiled once and cached on disk, verified before they load (`cache`),
//! and an [`Instance`]
//! (its own `Store`, memory limit and time limit) per processor partition.
//!
//! Plugins are linked against the contract in `wit/` (bindings generated
//! below by `bindgen!`) and a deliberately inert slice of WASI 0.2
//! (`processor::wasi`: no files, sockets or environment, and no wait that
//! can outlast the time limit). Panics reach the broker through the SDK's
//! panic hook, which logs the message before the trap.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasmtime::component::{Component, Func, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::lift::{with_output_bytes_max, OutputLimitExceeded, Outputs};
pub use super::lift::{Header, Output, OutputRecord, Payload};
use super::spec::Limits;
use super::wasi::CallDeadline;
use bindings::{v01, v02, HANDLER_EXPORT_V01, HANDLER_EXPORT_V02, TIMERS_EXPORT_V02};
use limits::{MemoryBudget, MemoryLimiter, Reservation};

pub(crate) mod bindings;
mod cache;
mod limits;
mod stateful;

use super::abi::packed::Packed;
pub use super::abi::{Batch, InputHeader, InputRecord};
pub(crate) use crate::random::hex;
pub use crate::state::{Domain, Timer};
pub use stateful::TaskContext;
pub(crate) use v01::sluice::processor::log::Level;
pub(crate) use v01::sluice::processor::types::Batch as WitBatch;
pub use v01::sluice::processor::types::ProcessError;
pub(crate) use v02::exports::sluice::processor::timers::Timer as WitTimer;
pub(crate) use v02::sluice::processor::clock::Domain as WitDomain;

/// What `process` and `on-timer` return, as the host lifts it.
type ProcessResult = (Result<Outputs, ProcessError>,);

/// How often the epoch advances; time limits are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Log lines one instance may emit per second before they are dropped.
const LOG_LINES_PER_SECOND_MAX: u32 = 100;

/// Longest log message kept; longer ones are cut.
const LOG_MESSAGE_BYTES_MAX: usize = 4_096;

/// Longest error message kept from a plugin (a `process-error`, an `init`
/// error, a trap or panic text). It is logged per record, kept in the
/// status and copied into every dead letter's `sluice.error` header, so an
/// unbounded one could fill the log or make the dead letter unwritable.
pub(crate) const ERROR_MESSAGE_BYTES_MAX: usize = 1_024;

/// `message` cut to at most `bytes_max` bytes (on a character boundary),
/// with a marker saying how long it was.
pub(crate) fn truncate_message(mut message: String, bytes_max: usize) -> String {
    if message.len() <= bytes_max {
        return message;
    }
    let length = message.len();
    let marker = format!("… (truncated, {length} bytes)");
    let mut cut = bytes_max.saturating_sub(marker.len());
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(&marker);
    message
}

/// The broker's wasmtime engine, its linker and the epoch ticker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<cache::ComponentCache>,
    ticking: Arc<AtomicBool>,
    /// Plugin memory of every instance of this runtime together.
    memory: Arc<MemoryBudget>,
}

impl Runtime {
    /// An engine with epoch interruption, and a compiled-component cache in
    /// `cache_dir` when one is given; no cap on its instances' memory
    /// together beyond each one's own limit.
    pub fn new(cache_dir: Option<&Path>) -> anyhow::Result<Arc<Self>> {
        Self::with_memory_max(cache_dir, u64::MAX)
    }

    /// Like [`Runtime::new`], and the memory limits of all live instances
    /// together may not exceed `memory_bytes_max`
    /// (`processors.memory_bytes_max`).
    pub(crate) fn with_memory_max(
        cache_dir: Option<&Path>,
        memory_bytes_max: u64,
    ) -> anyhow::Result<Arc<Self>> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // `--features wasm-profiling`: JIT code named in `perf` profiles
        // (SLUICE_WASM_PERFMAP=1 writes /tmp/perf-PID.map).
        #[cfg(feature = "wasm-profiling")]
        if std::env::var_os("SLUICE_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // wasmtime's default memory reservation (4 GiB of address space per
        // memory, plus guard pages) is kept on purpose: it lets Cranelift
        // drop bounds checks from every load and store. The memory limit is
        // enforced by the limiter, not by the reservation.
        let cache = cache_dir
            .map(|dir| {
                cache::ComponentCache::open(dir)
                    .with_context(|| format!("opening the compile cache in {}", dir.display()))
            })
            .transpose()?;
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut linker = Linker::new(&engine);
        super::wasi::link(&mut linker)?;
        v01::Processor::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        v02::Processor::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let ticking = Arc::new(AtomicBool::new(true));
        let ticker_engine = engine.weak();
        let running = ticking.clone();
        std::thread::Builder::new()
            .name("sluice-wasm-epoch".into())
            .spawn(move || {
                while running.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })?;
        Ok(Arc::new(Self {
            engine,
            linker,
            cache,
            ticking,
            memory: Arc::new(MemoryBudget::new(memory_bytes_max)),
        }))
    }

    /// Compiles a component and checks that it exports a handler version
    /// this broker supports.
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<Plugin> {
        check_header(wasm)?;
        self.plugin(cache::compile(&self.engine, wasm)?)
    }

    /// Like [`Runtime::compile`], through the compile cache when there is
    /// one: its artifact is loaded only if it hashes to `artifact_sha256`
    /// (recorded with the deployment). Returns the plugin and the hash of
    /// the artifact now cached, to record.
    pub(crate) fn compile_cached(
        &self,
        wasm: &[u8],
        artifact_sha256: Option<&str>,
    ) -> anyhow::Result<(Plugin, Option<String>)> {
        check_header(wasm)?;
        let Some(cache) = &self.cache else {
            return Ok((self.compile(wasm)?, None));
        };
        let cached = cache.load_or_compile(&self.engine, wasm, artifact_sha256)?;
        Ok((self.plugin(cached.component)?, Some(cached.artifact_sha256)))
    }

    /// Deletes cached artifacts of plugin binaries no deployment uses.
    pub(crate) fn retain_cached(&self, wasm_sha256s: &[String]) {
        if let Some(cache) = &self.cache {
            cache.retain(wasm_sha256s);
        }
    }

    /// A compiled component as a plugin, if it exports a handler version
    /// this broker supports and links.
    fn plugin(&self, component: Component) -> anyhow::Result<Plugin> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let v02 = exports.iter().any(|name| name == HANDLER_EXPORT_V02);
        if !v02 && !exports.iter().any(|name| name == HANDLER_EXPORT_V01) {
            anyhow::bail!(
                "the component exports neither {HANDLER_EXPORT_V02} nor {HANDLER_EXPORT_V01} \
                 (it exports: {}); this broker runs processor contract 0.2 and 0.1 plugins \
                 built with sluice-sdk",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            );
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|error| anyhow::anyhow!("the component cannot be linked: {error:#}"))?;
        let pre = if v02 {
            PluginPre::V02(v02::ProcessorPre::new(pre).map_err(|e| anyhow::anyhow!("{e:#}"))?)
        } else {
            PluginPre::V01(v01::ProcessorPre::new(pre).map_err(|e| anyhow::anyhow!("{e:#}"))?)
        };
        Ok(Plugin {
            pre,
            memory: self.memory.clone(),
        })
    }

    /// Components loaded from the compile cache, and compiled afresh.
    pub(crate) fn cache_stats(&self) -> (usize, usize) {
        self.cache
            .as_ref()
            .map_or((0, 0), cache::ComponentCache::stats)
    }
}

fn check_header(wasm: &[u8]) -> anyhow::Result<()> {
    if !wasm.starts_with(b"\0asm") {
        anyhow::bail!("not a WebAssembly file (no \\0asm header)");
    }
    Ok(())
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

/// A compiled, linked component, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    pre: PluginPre,
    memory: Arc<MemoryBudget>,
}

/// A component linked with the bindings of the contract version it
/// exports.
#[derive(Clone)]
enum PluginPre {
    V01(v01::ProcessorPre<HostState>),
    V02(v02::ProcessorPre<HostState>),
}

impl PluginPre {
    fn instance_pre(&self) -> &wasmtime::component::InstancePre<HostState> {
        match self {
            Self::V01(pre) => pre.instance_pre(),
            Self::V02(pre) => pre.instance_pre(),
        }
    }

    fn handler_export(&self) -> &'static str {
        match self {
            Self::V01(_) => HANDLER_EXPORT_V01,
            Self::V02(_) => HANDLER_EXPORT_V02,
        }
    }
}

/// An instance's exports, by contract version.
enum Bindings {
    V01(v01::Processor),
    V02(v02::Processor),
}

/// What a failed call was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// The plugin returned an error; the instance is still good.
    Rejected {
        message: String,
        source: Option<u32>,
    },
    /// The instance trapped, ran out of time or memory, or broke the
    /// contract; it must be replaced before the next call.
    Trap { message: String },
    /// The broker failed under the call (its state storage): nothing of
    /// the call counts, and the task stops whatever the error policy.
    Host { message: String },
    /// The task's uncommitted state changes are full: nothing of the call
    /// counts; the task commits and makes the call again (not the
    /// records' fault).
    CommitFirst { message: String },
}

impl InvokeError {
    /// The message for status and dead-letter headers.
    pub(crate) fn message(&self) -> &str {
        match self {
            Self::Rejected { message, .. }
            | Self::Trap { message }
            | Self::Host { message }
            | Self::CommitFirst { message } => message,
        }
    }
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

// Not derived with thiserror: `Rejected::source` is the plugin's index of
// the failing record, not an underlying error.
impl std::error::Error for InvokeError {}

/// Who an instance is: what it logs as, and the stores it may open.
#[derive(Debug, Clone)]
pub struct Label {
    pub processor: Arc<str>,
    pub topic: Arc<str>,
    /// The input partition.
    pub partition: i32,
    /// The task whose state the instance's stores are (the input partition,
    /// or a repartition partition's own task id).
    pub task: u32,
    /// The stores the deployment declares (contract 0.2's `store.open`).
    pub stores: Arc<[String]>,
    /// Its tables: read-only stores shared by every partition.
    pub tables: Arc<[String]>,
}

/// Per-instance host state: WASI context, limits, and the log import.
pub(crate) struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    /// When the running call must end (the guest's timers are held to it).
    pub(super) deadline: CallDeadline,
    limiter: MemoryLimiter,
    label: Label,
    /// Last error-level line the guest logged (its panic message, through
    /// the SDK's panic hook) during the current call.
    last_error_log: Option<String>,
    log_window: (Instant, u32),
    logs_dropped: u64,
    /// The calling task's state and clock, lent for the call (0.2).
    pub(super) task: TaskContext,
    /// Set when the task stops: the running call ends at the next epoch
    /// tick, or within a tick of a guest's wait (see `Invoke::interrupt_on`).
    pub(super) interrupt: Arc<AtomicBool>,
    /// The stores the plugin opened as windowed (`open-windowed`), each
    /// once: at most the deployment's stores.
    pub(super) windowed: Vec<String>,
}

impl v01::sluice::processor::types::Host for HostState {}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl v01::sluice::processor::log::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let message = truncate_message(message, LOG_MESSAGE_BYTES_MAX);
        if matches!(level, Level::Error) {
            self.last_error_log = Some(message.clone());
        }
        let now = Instant::now();
        if now.duration_since(self.log_window.0) >= Duration::from_secs(1) {
            if self.logs_dropped > 0 {
                tracing::warn!(processor = %self.label.processor, dropped = self.logs_dropped,
                    "plugin log lines dropped (more than {LOG_LINES_PER_SECOND_MAX} per second)");
                self.logs_dropped = 0;
            }
            self.log_window = (now, 0);
        }
        if self.log_window.1 >= LOG_LINES_PER_SECOND_MAX {
            self.logs_dropped += 1;
            return;
        }
        self.log_window.1 += 1;
        let Label {
            processor,
            topic,
            partition,
            ..
        } = &self.label;
        match level {
            Level::Trace => tracing::trace!(%processor, %topic, partition, "plugin: {message}"),
            Level::Debug => tracing::debug!(%processor, %topic, partition, "plugin: {message}"),
            Level::Info => tracing::info!(%processor, %topic, partition, "plugin: {message}"),
            Level::Warn => tracing::warn!(%processor, %topic, partition, "plugin: {message}"),
            Level::Error => tracing::error!(%processor, %topic, partition, "plugin: {message}"),
        }
    }
}

/// Something that processes batches: a sandboxed [`Instance`], or a native
/// closure (the benchmark's baseline runs through the same loop).
pub trait Invoke: Send {
    /// Runs one batch, with the task's state and clock.
    fn process(
        &mut self,
        batch: Batch<'_>,
        task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError>;

    /// Runs due timers (contract 0.2); outputs' `source` index `timers`.
    fn on_timer(
        &mut self,
        timers: &[Timer],
        task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        let _ = (timers, task);
        Ok(Vec::new())
    }

    /// Peak linear memory, for the status (0 when not sandboxed).
    fn memory_bytes(&self) -> usize {
        0
    }

    /// Ends a running call soon after `flag` is set (the task is being
    /// stopped: removed, redeployed, or the broker shutting down), as the
    /// time limit would, rather than letting it run to its limit.
    fn interrupt_on(&mut self, flag: Arc<AtomicBool>) {
        let _ = flag;
    }

    /// The stores the instance opened as windowed (contract 0.2's
    /// `open-windowed`): their entries are the task's open windows.
    fn windowed_stores(&self) -> &[String] {
        &[]
    }
}

/// Makes a fresh processing instance (after a trap, or to start).
pub type Factory = Arc<dyn Fn() -> Result<Box<dyn Invoke>, InvokeError> + Send + Sync>;

impl Plugin {
    /// This plugin with its instances outside the broker-wide memory cap:
    /// for a deploy's trial instance, which lives for one `init` while the
    /// instances of the deployment it replaces still hold their share.
    pub(crate) fn outside_memory_cap(&self) -> Self {
        Self {
            pre: self.pre.clone(),
            memory: Arc::new(MemoryBudget::new(u64::MAX)),
        }
    }

    /// A factory of sandboxed instances of this plugin.
    pub fn factory(&self, limits: Limits, config: Vec<(String, String)>, label: Label) -> Factory {
        let plugin = self.clone();
        Arc::new(move || {
            Instance::new(&plugin, limits, &config, label.clone())
                .map(|instance| Box::new(instance) as Box<dyn Invoke>)
        })
    }
}

impl Invoke for Instance {
    fn process(
        &mut self,
        batch: Batch<'_>,
        task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        self.lend(task, |instance| instance.process(batch))
    }

    fn on_timer(
        &mut self,
        timers: &[Timer],
        task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        self.lend(task, |instance| instance.on_timer(timers))
    }

    fn memory_bytes(&self) -> usize {
        Instance::memory_bytes(self)
    }

    fn interrupt_on(&mut self, flag: Arc<AtomicBool>) {
        self.store.data_mut().interrupt = flag;
    }

    fn windowed_stores(&self) -> &[String] {
        &self.store.data().windowed
    }
}

/// One sandboxed instance: a store, the plugin's exports, its limits.
pub struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    /// The `process` export, called with the hand-lowered batch (`abi`:
    /// 0.1's list of records, or 0.2's buffer).
    process: Func,
    /// The `on-timer` export (0.2 plugins).
    on_timer: Option<Func>,
    limits: Limits,
    /// This instance's share of the broker-wide plugin memory.
    _reservation: Reservation,
}

impl Instance {
    /// Instantiates `plugin` and calls its `init` with `config`.
    pub fn new(
        plugin: &Plugin,
        limits: Limits,
        config: &[(String, String)],
        label: Label,
    ) -> Result<Self, InvokeError> {
        let reservation = plugin
            .memory
            .reserve(limits.memory_bytes_max)
            .map_err(|message| InvokeError::Trap { message })?;
        let engine = plugin.pre.instance_pre().engine();
        let wasi = WasiCtxBuilder::new()
            .stdin(wasmtime_wasi::p2::pipe::ClosedInputStream)
            .stdout(wasmtime_wasi::p2::pipe::SinkOutputStream)
            .stderr(wasmtime_wasi::p2::pipe::SinkOutputStream)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(
                usize::try_from(limits.memory_bytes_max).unwrap_or(usize::MAX),
            ),
            deadline: CallDeadline::new(call_time_max(&limits)),
            label,
            last_error_log: None,
            log_window: (Instant::now(), 0),
            logs_dropped: 0,
            task: TaskContext::default(),
            interrupt: Arc::new(AtomicBool::new(false)),
            windowed: Vec::new(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        // Every epoch tick: past the call's deadline, or the task stopping,
        // ends the call (a trap the caller tells apart by its own flag).
        store.epoch_deadline_callback(|store| {
            let state = store.data();
            if state.interrupt.load(Ordering::Relaxed) || Instant::now() >= state.deadline.at {
                return Err(Trap::Interrupt.into());
            }
            Ok(UpdateDeadline::Continue(1))
        });
        arm_deadline(&mut store, &limits);
        let instantiated = plugin
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .and_then(|instance| {
                let bindings = match &plugin.pre {
                    PluginPre::V01(_) => Bindings::V01(v01::Processor::new(&mut store, &instance)?),
                    PluginPre::V02(_) => Bindings::V02(v02::Processor::new(&mut store, &instance)?),
                };
                let export = plugin.pre.handler_export();
                let process = export_func(&instance, &mut store, export, "process")?;
                // A plugin whose `process` has another shape fails here, at
                // instantiation; `process` repeats this check per batch
                // (about 2k instructions, a rounding error per record).
                match &bindings {
                    Bindings::V01(_) => {
                        process.typed::<(Batch<'_>,), ProcessResult>(&store)?;
                    }
                    Bindings::V02(_) => {
                        process.typed::<(Packed<'_>,), ProcessResult>(&store)?;
                    }
                }
                let on_timer = match &plugin.pre {
                    PluginPre::V01(_) => None,
                    PluginPre::V02(_) => {
                        let func =
                            export_func(&instance, &mut store, TIMERS_EXPORT_V02, "on-timer")?;
                        func.typed::<(Vec<WitTimer>,), ProcessResult>(&store)?;
                        Some(func)
                    }
                };
                Ok((bindings, process, on_timer))
            });
        let (bindings, process, on_timer) = instantiated
            .map_err(|error| trap_error(&mut store, &limits, "instantiating the plugin", error))?;
        let mut instance = Self {
            store,
            bindings,
            process,
            on_timer,
            limits,
            _reservation: reservation,
        };
        instance.init(config)?;
        Ok(instance)
    }

    fn init(&mut self, config: &[(String, String)]) -> Result<(), InvokeError> {
        arm_deadline(&mut self.store, &self.limits);
        self.store.data_mut().last_error_log = None;
        let called = match &self.bindings {
            Bindings::V01(bindings) => bindings
                .sluice_processor_handler()
                .call_init(&mut self.store, config),
            Bindings::V02(bindings) => bindings
                .sluice_processor_handler()
                .call_init(&mut self.store, config),
        };
        match called {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(InvokeError::Trap {
                message: truncate_message(
                    format!("init failed: {message}"),
                    ERROR_MESSAGE_BYTES_MAX,
                ),
            }),
            Err(error) => Err(trap_error(&mut self.store, &self.limits, "init", error)),
        }
    }

    /// Lends `task` to the instance for `call`.
    fn lend<R>(&mut self, task: &mut TaskContext, call: impl FnOnce(&mut Self) -> R) -> R {
        std::mem::swap(&mut self.store.data_mut().task, task);
        let result = call(self);
        std::mem::swap(&mut self.store.data_mut().task, task);
        result
    }

    /// Runs one batch under the time limit.
    fn process(&mut self, batch: Batch<'_>) -> Result<Vec<Output>, InvokeError> {
        self.arm();
        // 0.1 takes the batch as a list of records, 0.2 as one buffer.
        let called = match self.bindings {
            Bindings::V01(_) => self.call(self.process, (batch,)),
            Bindings::V02(_) => self.call(self.process, (Packed(batch),)),
        };
        self.finish(called, "process")
    }

    /// Runs due timers under the time limit.
    fn on_timer(&mut self, timers: &[Timer]) -> Result<Vec<Output>, InvokeError> {
        let Some(on_timer) = self.on_timer else {
            return Ok(Vec::new());
        };
        self.arm();
        let timers: Vec<WitTimer> = timers
            .iter()
            .map(|timer| WitTimer {
                domain: match timer.domain {
                    Domain::EventTime => WitDomain::EventTime,
                    Domain::ProcessingTime => WitDomain::ProcessingTime,
                },
                key: timer.key.clone(),
                at: timer.at,
            })
            .collect();
        let called = self.call(on_timer, (timers,));
        self.finish(called, "on-timer")
    }

    /// Calls `func` with `params`, its outputs lifted within
    /// `output_bytes_per_batch_max`.
    fn call<P>(&mut self, func: Func, params: P) -> wasmtime::Result<Result<Outputs, ProcessError>>
    where
        P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower,
    {
        let bytes_max = self.limits.output_bytes_per_batch_max;
        let typed = func.typed::<P, ProcessResult>(&self.store)?;
        let (result,) = with_output_bytes_max(bytes_max, || typed.call(&mut self.store, params))?;
        Ok(result)
    }

    fn arm(&mut self) {
        arm_deadline(&mut self.store, &self.limits);
        let state = self.store.data_mut();
        state.last_error_log = None;
        state.task.failure = None;
    }

    fn finish(
        &mut self,
        called: wasmtime::Result<Result<Outputs, ProcessError>>,
        during: &str,
    ) -> Result<Vec<Output>, InvokeError> {
        match called {
            Ok(Ok(Outputs(outputs))) => Ok(outputs),
            Ok(Err(error)) => Err(InvokeError::Rejected {
                message: truncate_message(error.message, ERROR_MESSAGE_BYTES_MAX),
                source: error.source,
            }),
            Err(error) => Err(trap_error(&mut self.store, &self.limits, during, error)),
        }
    }

    /// Most memory (all linear memories and tables) the instance has
    /// grown to, in bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory_bytes_peak
    }
}

/// The function `name` of export `interface` of `instance`.
fn export_func(
    instance: &wasmtime::component::Instance,
    store: &mut Store<HostState>,
    interface: &str,
    name: &str,
) -> wasmtime::Result<Func> {
    instance
        .get_export_index(&mut *store, None, interface)
        .and_then(|export| instance.get_export_index(&mut *store, Some(&export), name))
        .and_then(|func| instance.get_func(&mut *store, func))
        .ok_or_else(|| wasmtime::format_err!("no {interface}#{name} export"))
}

/// Starts a call's time limit: a wall-clock deadline, checked at every
/// epoch tick for running code and held to by the guest's timers.
fn arm_deadline(store: &mut Store<HostState>, limits: &Limits) {
    store.set_epoch_deadline(1);
    store.data_mut().deadline = CallDeadline::new(call_time_max(limits));
}

fn call_time_max(limits: &Limits) -> Duration {
    Duration::from_millis(limits.process_time_ms_max)
}

/// Turns a wasmtime error into a message saying what happened, in terms
/// of the limits and the plugin's own last words.
fn trap_error(
    store: &mut Store<HostState>,
    limits: &Limits,
    during: &str,
    error: wasmtime::Error,
) -> InvokeError {
    let state = store.data_mut();
    let panic = state.last_error_log.take();
    if let Some(failure) = state.task.failure.take() {
        let message = truncate_message(
            format!("{during} failed: {failure}"),
            ERROR_MESSAGE_BYTES_MAX,
        );
        return if failure.is_storage() {
            InvokeError::Host { message }
        } else if failure.is_commit_first() {
            InvokeError::CommitFirst { message }
        } else {
            InvokeError::Trap { message }
        };
    }
    let message = if let Some(refused) = error.downcast_ref::<OutputLimitExceeded>() {
        refused.to_string()
    } else if let Some(bytes) = state.limiter.refused.take() {
        format!(
            "memory limit exceeded during {during}: the plugin tried to grow its memory \
             (all memories and tables) to {bytes} bytes, the limit is {} bytes (memory_bytes_max)",
            limits.memory_bytes_max
        )
    } else if let Some(wait) = state.deadline.refused_wait.take() {
        format!(
            "time limit exceeded: {during} tried to wait {} ms (a sleep or timer), past its limit \
             of {} ms (process_time_ms_max); a plugin cannot wait beyond its time limit",
            wait.as_millis(),
            limits.process_time_ms_max
        )
    } else if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        format!(
            "time limit exceeded: {during} ran longer than {} ms (process_time_ms_max)",
            limits.process_time_ms_max
        )
    } else if let Some(panic) = panic {
        format!("plugin trapped during {during}: {panic}")
    } else {
        let trap = error
            .downcast_ref::<Trap>()
            .map_or_else(|| format!("{error:#}"), |trap| trap.to_string());
        format!("plugin trapped during {during}: {trap}")
    };
    InvokeError::Trap {
        message: truncate_message(message, ERROR_MESSAGE_BYTES_MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_with_a_marker() {
        assert_eq!(truncate_message("short".into(), 10), "short");
        let cut = truncate_message("é".repeat(10_000), ERROR_MESSAGE_BYTES_MAX);
        assert!(cut.len() <= ERROR_MESSAGE_BYTES_MAX, "{}", cut.len());
        assert!(cut.ends_with("… (truncated, 20000 bytes)"), "{cut}");
        assert!(cut.starts_with("éé"));
    }
}
