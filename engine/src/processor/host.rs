//! The WebAssembly host: one wasmtime [`Engine`] per broker, components
//! compiled once and cached on disk by content hash, and an [`Instance`]
//! (its own `Store`, memory limit and time limit) per processor partition.
//!
//! Plugins are linked against the contract in `wit/` (bindings generated
//! below by `bindgen!`) and a deliberately inert slice of WASI 0.2: clocks,
//! random, an empty environment, no preopened directories, stdin empty,
//! stdout and stderr discarded. Sockets are not linked at all, so a plugin
//! that imports them cannot be instantiated. Panics reach the broker through
//! the SDK's panic hook, which logs the message before the trap.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasmtime::component::{Component, Func, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::spec::Limits;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "processor",
});

pub(crate) use self::sluice::processor::log::Level;
pub(crate) use self::sluice::processor::types::Batch as WitBatch;
pub use self::sluice::processor::types::{Header, Output, OutputRecord, Payload, ProcessError};
pub use super::abi::{Batch, InputHeader, InputRecord};

/// The versioned name of the export this host knows how to drive.
pub(crate) const HANDLER_EXPORT: &str = "sluice:processor/handler@0.1.0";

/// How often the epoch advances; time limits are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Log lines one instance may emit per second before they are dropped.
const LOG_LINES_PER_SECOND_MAX: u32 = 100;

/// Longest log message kept; longer ones are cut.
const LOG_MESSAGE_BYTES_MAX: usize = 4_096;

/// The broker's wasmtime engine, its linker and the epoch ticker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<wasmtime::Cache>,
    ticking: Arc<AtomicBool>,
}

impl Runtime {
    /// An engine with epoch interruption, and a compiled-component cache in
    /// `cache_dir` when one is given.
    pub fn new(cache_dir: Option<&Path>) -> anyhow::Result<Arc<Self>> {
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
        let cache = match cache_dir {
            Some(dir) => {
                let mut cache_config = wasmtime::CacheConfig::new();
                cache_config.with_directory(dir);
                let cache = wasmtime::Cache::new(cache_config)
                    .map_err(|e| anyhow::anyhow!("{e:#}"))
                    .with_context(|| format!("opening the compile cache in {}", dir.display()))?;
                config.cache(Some(cache.clone()));
                Some(cache)
            }
            None => None,
        };
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut linker = Linker::new(&engine);
        link_wasi(&mut linker)?;
        Processor::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
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
        }))
    }

    /// Compiles (or loads from the cache) a component and checks that it
    /// exports a handler version this broker supports.
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<Plugin> {
        if !wasm.starts_with(b"\0asm") {
            anyhow::bail!("not a WebAssembly file (no \\0asm header)");
        }
        let component = Component::new(&self.engine, wasm).map_err(|error| {
            anyhow::anyhow!(
                "not a valid WebAssembly component (build plugins for wasm32-wasip2): {error:#}"
            )
        })?;
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        if !exports.iter().any(|name| name == HANDLER_EXPORT) {
            anyhow::bail!(
                "the component does not export {HANDLER_EXPORT} (it exports: {}); \
                 this broker runs processor contract 0.1 plugins built with sluice-sdk",
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
        let pre = ProcessorPre::new(pre).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(Plugin { pre })
    }

    /// Components loaded from the compile cache, and compiled afresh.
    pub(crate) fn cache_stats(&self) -> (usize, usize) {
        self.cache
            .as_ref()
            .map_or((0, 0), |cache| (cache.cache_hits(), cache.cache_misses()))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

/// Links the inert slice of WASI described in the module docs.
fn link_wasi(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::sync as wasi;
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    use wasmtime_wasi::random::WasiRandom;
    let l = linker;
    let io = |e: wasmtime::Error| anyhow::anyhow!("linking WASI: {e:#}");
    wasmtime_wasi_io_link(l).map_err(io)?;
    clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(
        l,
        <HostState as WasiClocksView>::clocks,
    )
    .map_err(io)?;
    clocks::monotonic_clock::add_to_linker::<HostState, WasiClocks>(
        l,
        <HostState as WasiClocksView>::clocks,
    )
    .map_err(io)?;
    random::random::add_to_linker::<HostState, WasiRandom>(l, |t| t.wasi.random()).map_err(io)?;
    random::insecure::add_to_linker::<HostState, WasiRandom>(l, |t| t.wasi.random()).map_err(io)?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(l, |t| t.wasi.random())
        .map_err(io)?;
    cli::exit::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)
        .map_err(io)?;
    cli::environment::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)
        .map_err(io)?;
    cli::stdin::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)
        .map_err(io)?;
    cli::stdout::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)
        .map_err(io)?;
    cli::stderr::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)
        .map_err(io)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)
        .map_err(io)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)
        .map_err(io)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)
        .map_err(io)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)
        .map_err(io)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, <HostState as WasiCliView>::cli)
        .map_err(io)?;
    // No preopens: the filesystem interfaces exist (std imports them) but
    // there is no directory to open anything in.
    filesystem::preopens::add_to_linker::<HostState, WasiFilesystem>(
        l,
        <HostState as WasiFilesystemView>::filesystem,
    )
    .map_err(io)?;
    wasi::filesystem::types::add_to_linker::<HostState, WasiFilesystem>(
        l,
        <HostState as WasiFilesystemView>::filesystem,
    )
    .map_err(io)?;
    Ok(())
}

/// wasi:io (error, poll, streams), synchronous flavour.
fn wasmtime_wasi_io_link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::sync::io;
    struct HasIo;
    impl wasmtime::component::HasData for HasIo {
        type Data<'a> = &'a mut ResourceTable;
    }
    wasmtime_wasi::p2::bindings::io::error::add_to_linker::<HostState, HasIo>(linker, |t| {
        &mut t.table
    })?;
    io::poll::add_to_linker::<HostState, HasIo>(linker, |t| &mut t.table)?;
    io::streams::add_to_linker::<HostState, HasIo>(linker, |t| &mut t.table)?;
    Ok(())
}

/// A compiled, linked component, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    pre: ProcessorPre<HostState>,
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
}

impl InvokeError {
    /// The message for status and dead-letter headers.
    pub(crate) fn message(&self) -> &str {
        match self {
            Self::Rejected { message, .. } | Self::Trap { message } => message,
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

/// Who an instance logs as.
#[derive(Debug, Clone)]
pub struct Label {
    pub processor: Arc<str>,
    pub topic: Arc<str>,
    pub partition: i32,
}

/// Per-instance host state: WASI context, limits, and the log import.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    label: Label,
    /// Last error-level line the guest logged (its panic message, through
    /// the SDK's panic hook) during the current call.
    last_error_log: Option<String>,
    log_window: (Instant, u32),
    logs_dropped: u64,
}

impl sluice::processor::types::Host for HostState {}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl sluice::processor::log::Host for HostState {
    fn log(&mut self, level: Level, mut message: String) {
        if message.len() > LOG_MESSAGE_BYTES_MAX {
            let mut cut = LOG_MESSAGE_BYTES_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
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

/// Memory limit that remembers why a grow failed, for a clear message.
struct MemoryLimiter {
    memory_bytes_max: usize,
    memory_bytes: usize,
    refused: Option<usize>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.refused = Some(desired);
            return Err(wasmtime::format_err!("memory limit exceeded"));
        }
        self.memory_bytes = self.memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

/// Something that processes batches: a sandboxed [`Instance`], or a native
/// closure (the benchmark's baseline runs through the same loop).
pub trait Invoke: Send {
    /// Runs one batch.
    fn process(&mut self, batch: Batch<'_>) -> Result<Vec<Output>, InvokeError>;

    /// Peak linear memory, for the status (0 when not sandboxed).
    fn memory_bytes(&self) -> usize {
        0
    }
}

/// Makes a fresh processing instance (after a trap, or to start).
pub type Factory = Arc<dyn Fn() -> Result<Box<dyn Invoke>, InvokeError> + Send + Sync>;

impl Plugin {
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
    fn process(&mut self, batch: Batch<'_>) -> Result<Vec<Output>, InvokeError> {
        Instance::process(self, batch)
    }

    fn memory_bytes(&self) -> usize {
        Instance::memory_bytes(self)
    }
}

/// One sandboxed instance: a store, the plugin's exports, its limits.
pub struct Instance {
    store: Store<HostState>,
    bindings: Processor,
    /// The `process` export, called with the hand-lowered batch (`abi`).
    process: Func,
    limits: Limits,
}

impl Instance {
    /// Instantiates `plugin` and calls its `init` with `config`.
    pub fn new(
        plugin: &Plugin,
        limits: Limits,
        config: &[(String, String)],
        label: Label,
    ) -> Result<Self, InvokeError> {
        let engine = plugin.pre.engine();
        let wasi = WasiCtxBuilder::new()
            .stdin(wasmtime_wasi::p2::pipe::ClosedInputStream)
            .stdout(wasmtime_wasi::p2::pipe::SinkOutputStream)
            .stderr(wasmtime_wasi::p2::pipe::SinkOutputStream)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                memory_bytes_max: usize::try_from(limits.memory_bytes_max).unwrap_or(usize::MAX),
                memory_bytes: 0,
                refused: None,
            },
            label,
            last_error_log: None,
            log_window: (Instant::now(), 0),
            logs_dropped: 0,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(&limits));
        let instantiated = plugin
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .and_then(|instance| {
                let bindings = Processor::new(&mut store, &instance)?;
                let process = instance
                    .get_export_index(&mut store, None, HANDLER_EXPORT)
                    .and_then(|handler| {
                        instance.get_export_index(&mut store, Some(&handler), "process")
                    })
                    .and_then(|process| instance.get_func(&mut store, process))
                    .ok_or_else(|| wasmtime::format_err!("no {HANDLER_EXPORT}#process export"))?;
                // A plugin whose `process` has another shape fails here, at
                // instantiation; `process` repeats this check per batch
                // (about 2k instructions, a rounding error per record).
                process.typed::<(Batch<'_>,), (Result<Vec<Output>, ProcessError>,)>(&store)?;
                Ok((bindings, process))
            });
        let (bindings, process) = instantiated
            .map_err(|error| trap_error(&mut store, &limits, "instantiating the plugin", error))?;
        let mut instance = Self {
            store,
            bindings,
            process,
            limits,
        };
        instance.init(config)?;
        Ok(instance)
    }

    fn init(&mut self, config: &[(String, String)]) -> Result<(), InvokeError> {
        self.store.set_epoch_deadline(deadline_ticks(&self.limits));
        self.store.data_mut().last_error_log = None;
        let handler = self.bindings.sluice_processor_handler();
        match handler.call_init(&mut self.store, config) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(InvokeError::Trap {
                message: format!("init failed: {message}"),
            }),
            Err(error) => Err(trap_error(&mut self.store, &self.limits, "init", error)),
        }
    }

    /// Runs one batch under the time limit.
    pub(crate) fn process(&mut self, batch: Batch<'_>) -> Result<Vec<Output>, InvokeError> {
        self.store.set_epoch_deadline(deadline_ticks(&self.limits));
        self.store.data_mut().last_error_log = None;
        let called = self
            .process
            .typed::<(Batch<'_>,), (Result<Vec<Output>, ProcessError>,)>(&self.store)
            .and_then(|process| process.call(&mut self.store, (batch,)));
        match called.map(|(result,)| result) {
            Ok(Ok(outputs)) => Ok(outputs),
            Ok(Err(error)) => Err(InvokeError::Rejected {
                message: error.message,
                source: error.source,
            }),
            Err(error) => Err(trap_error(&mut self.store, &self.limits, "process", error)),
        }
    }

    /// Largest linear memory the instance has grown to, in bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory_bytes
    }
}

fn deadline_ticks(limits: &Limits) -> u64 {
    let tick_ms = EPOCH_TICK.as_millis() as u64;
    limits.process_time_ms_max.div_ceil(tick_ms).max(1)
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
    let message = if let Some(bytes) = state.limiter.refused.take() {
        format!(
            "memory limit exceeded during {during}: the plugin tried to grow its memory to {bytes} bytes, \
             the limit is {} bytes (memory_bytes_max)",
            limits.memory_bytes_max
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
    InvokeError::Trap { message }
}
