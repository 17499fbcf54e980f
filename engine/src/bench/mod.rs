//! `sluice bench`: measurements whose figures go in the README. Each one
//! runs the physical limit (raw disk) beside Sluice in the same run and
//! reports medians and ratios, because these machines are noisy.

pub mod kafka;
pub mod log;
pub mod processor;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// A `sluice serve` child of this process on ephemeral loopback ports,
/// stopped with SIGTERM when dropped.
pub(crate) struct Serve {
    child: Child,
    /// The Kafka listener's address.
    pub(crate) kafka: String,
}

impl Serve {
    /// Starts `sluice serve` on `data_dir` and waits for its ready line.
    pub(crate) fn start(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting sluice serve")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
        let Some(kafka) = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("kafka="))
        else {
            anyhow::bail!("sluice serve did not report ready: {line:?}");
        };
        Ok(Self {
            kafka: kafka.to_string(),
            child,
        })
    }

    /// The broker's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// The median of `samples` (sorted in place); 0 when empty.
pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let middle = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[middle]
    } else {
        (samples[middle - 1] + samples[middle]) / 2.0
    }
}
