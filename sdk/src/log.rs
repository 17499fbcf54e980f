//! Logging into the broker's structured log.
//!
//! On WebAssembly each call goes to the contract's `log` import: the broker
//! tags it with the processor, topic and partition, and rate-limits it. On the
//! host (unit tests, the engine's native baseline) it goes to stderr and is
//! kept for [`testing::take_logs`](crate::testing::take_logs). Log what
//! happened, never payloads.

use std::fmt;

/// How important a log message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Lifecycle events.
    Info,
    /// Something unexpected that the processor handled.
    Warn,
    /// Something failed.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        })
    }
}

/// Logs `message` at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::sluice::processor::log as wit;
        let level = match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    host::log(level, message);
}

/// Logs `message` at trace level.
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message.as_ref());
}

/// Logs `message` at debug level.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message.as_ref());
}

/// Logs `message` at info level.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message.as_ref());
}

/// Logs `message` at warn level.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message.as_ref());
}

/// Logs `message` at error level.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message.as_ref());
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod host {
    //! Host logging: stderr, plus a bounded per-thread copy for tests.

    use std::cell::RefCell;

    use super::Level;

    /// How many messages a thread keeps for `take_logs`; later ones are
    /// only printed (a benchmark logging per record must not grow memory).
    const CAPTURED_MAX: usize = 1_000;

    thread_local! {
        static CAPTURED: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn log(level: Level, message: &str) {
        eprintln!("[sluice-sdk {level}] {message}");
        CAPTURED.with_borrow_mut(|captured| {
            if captured.len() < CAPTURED_MAX {
                captured.push((level, message.to_owned()));
            }
        });
    }

    pub(crate) fn take() -> Vec<(Level, String)> {
        CAPTURED.with_borrow_mut(std::mem::take)
    }
}
