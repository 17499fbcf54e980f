//! The slice of WASI 0.2 a plugin is linked against: clocks, random, an
//! empty environment, no preopened directories, stdin empty, stdout and
//! stderr discarded, no sockets (a plugin importing them cannot be
//! instantiated).
//!
//! Waiting is the one thing WASI lets a guest do that epoch interruption
//! cannot reach: a blocking `poll` parks the host thread outside wasm, so
//! `std::thread::sleep(1 hour)` would outlast any time limit, pin a
//! blocking-pool thread, and hold `remove`, redeploy and shutdown until it
//! woke. So the monotonic clock is ours, not wasmtime-wasi's: a timer
//! (`subscribe-duration`, `subscribe-instant`) that would fire after the
//! current call's deadline traps at once with "time limit exceeded"; a
//! shorter one is waited out on the spot (the call's own thread, bounded by
//! the time remaining) and handed back already ready. Timers are the only
//! pollables that can be pending here (stdin is closed, stdout and stderr
//! are sinks, there are no files or sockets), so no `poll` ever blocks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::DynPollable;

use super::host::HostState;

/// When the running call (`init` or `process`) must end, and the wait that
/// was refused because it would have ended later.
#[derive(Debug)]
pub(crate) struct CallDeadline {
    pub(crate) at: Instant,
    pub(crate) refused_wait: Option<Duration>,
}

impl CallDeadline {
    pub(crate) fn new(time_max: Duration) -> Self {
        Self {
            at: Instant::now() + time_max,
            refused_wait: None,
        }
    }

    /// Waits `wait` on this thread if the call's deadline allows it;
    /// otherwise records the refusal and returns the trap. Ends early,
    /// with a trap, when `interrupt` is set (checked every
    /// [`INTERRUPT_CHECK`]).
    fn wait(&mut self, wait: Duration, interrupt: &AtomicBool) -> wasmtime::Result<()> {
        // A wait too long to represent is past any deadline.
        if Instant::now()
            .checked_add(wait)
            .is_none_or(|end| end > self.at)
        {
            self.refused_wait = Some(wait);
            return Err(wasmtime::format_err!(
                "time limit exceeded (a wait past the deadline)"
            ));
        }
        let end = Instant::now() + wait;
        loop {
            if interrupt.load(Ordering::Relaxed) {
                return Err(wasmtime::Trap::Interrupt.into());
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(INTERRUPT_CHECK));
        }
    }
}

/// How often a guest's wait looks whether its task is stopping.
const INTERRUPT_CHECK: Duration = Duration::from_millis(10);

impl monotonic_clock::Host for HostState {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        monotonic_clock::Host::now(&mut self.clocks())
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        monotonic_clock::Host::resolution(&mut self.clocks())
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<wasmtime::component::Resource<DynPollable>> {
        let now = monotonic_clock::Host::now(&mut self.clocks())?;
        self.subscribe_duration(when.saturating_sub(now))
    }

    fn subscribe_duration(
        &mut self,
        nanoseconds: monotonic_clock::Duration,
    ) -> wasmtime::Result<wasmtime::component::Resource<DynPollable>> {
        self.deadline
            .wait(Duration::from_nanos(nanoseconds), &self.interrupt)?;
        monotonic_clock::Host::subscribe_duration(&mut self.clocks(), 0)
    }
}

/// Links the inert slice of WASI described in the module docs.
pub(super) fn link(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::WasiClocks;
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::sync as wasi;
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    use wasmtime_wasi::random::WasiRandom;
    let l = linker;
    let io = |e: wasmtime::Error| anyhow::anyhow!("linking WASI: {e:#}");
    link_io(l).map_err(io)?;
    clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(
        l,
        <HostState as WasiClocksView>::clocks,
    )
    .map_err(io)?;
    // Our own monotonic clock: its timers cannot outlast the time limit.
    clocks::monotonic_clock::add_to_linker::<HostState, HasSelf<HostState>>(l, |t| t)
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
fn link_io(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_past_the_deadline_are_refused_at_once_and_shorter_ones_served() {
        let mut deadline = CallDeadline::new(Duration::from_secs(10));
        let running = AtomicBool::new(false);
        deadline.wait(Duration::ZERO, &running).unwrap();
        deadline.wait(Duration::from_millis(1), &running).unwrap();
        assert_eq!(deadline.refused_wait, None);
        let error = deadline
            .wait(Duration::from_secs(3_600), &running)
            .unwrap_err();
        assert!(error.to_string().contains("time limit exceeded"), "{error}");
        assert_eq!(deadline.refused_wait, Some(Duration::from_secs(3_600)));
        // The guest's largest duration neither panics nor waits.
        deadline
            .wait(Duration::from_nanos(u64::MAX), &running)
            .unwrap_err();
        deadline.wait(Duration::MAX, &running).unwrap_err();
    }

    #[test]
    fn a_wait_ends_when_its_task_stops() {
        let mut deadline = CallDeadline::new(Duration::from_secs(600));
        let stopping = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stopping.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            flag.store(true, Ordering::Relaxed);
        });
        // Were the flag not looked at, this would wait five minutes.
        let error = deadline
            .wait(Duration::from_secs(300), &stopping)
            .unwrap_err();
        assert!(
            matches!(error.downcast_ref(), Some(wasmtime::Trap::Interrupt)),
            "{error}"
        );
        assert_eq!(deadline.refused_wait, None);
        stopper.join().unwrap();
    }
}
