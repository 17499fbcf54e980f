//! Progress of long CLI work (indicatif), drawn on stderr only when stderr
//! is a terminal and not `--quiet`: piped or scripted runs see just the
//! final summary line, as with kcat and rpk.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// How often a spinner redraws without news.
const TICK: Duration = Duration::from_millis(120);

/// A progress line, or nothing when it is not shown.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

/// Whether progress is drawn: stderr is a terminal and not `quiet`.
pub(crate) fn shown(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

impl Progress {
    /// Nothing drawn.
    pub(crate) fn hidden() -> Self {
        Self { bar: None }
    }

    /// A spinner saying what is going on (`compiling…`).
    pub(crate) fn stage(quiet: bool, message: &str) -> Self {
        Self::styled(quiet, None, "{spinner} {msg} ({elapsed})", message)
    }

    /// Records counted as they go, with their rate (and a bar when the
    /// total is known).
    pub(crate) fn records(quiet: bool, total: Option<u64>, message: &str) -> Self {
        let template = match total {
            Some(_) => "{spinner} {msg} [{bar:30}] {pos}/{len} records ({per_sec}, {elapsed})",
            None => "{spinner} {msg} {pos} records ({per_sec}, {elapsed})",
        };
        Self::styled(quiet, total, template, message)
    }

    fn styled(quiet: bool, total: Option<u64>, template: &str, message: &str) -> Self {
        if !shown(quiet) {
            return Self::hidden();
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        };
        let style = ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(message.to_string());
        bar.enable_steady_tick(TICK);
        Self { bar: Some(bar) }
    }

    /// `records` done so far, `bytes` of them (shown after `label`).
    pub(crate) fn done(&self, records: u64, label: &str, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(records);
            bar.set_message(format!("{label}, {}", HumanBytes(bytes)));
        }
    }

    /// `records` more done.
    pub(crate) fn advance(&self, records: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(records);
        }
    }

    /// Removes the line (the caller prints its own summary).
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
