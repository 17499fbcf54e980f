//! A `sluice serve` started by a benchmark: the real broker binary as a
//! child process on ephemeral loopback ports, so its CPU time is its own
//! (read from `/proc/<pid>/stat`) and not mixed with the load generator's.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// The `sluice` binary to start: `explicit` (`--sluice FILE`) if given,
/// else the `sluice` next to this executable (`cargo build --release -p
/// sluice -p sluice-bench` puts both in `target/release/`).
pub(crate) fn sluice_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(path.is_file(), "--sluice {}: no such file", path.display());
        return Ok(path.to_path_buf());
    }
    let exe = std::env::current_exe().context("locating sluice-bench itself")?;
    let sibling = exe.with_file_name(format!("sluice{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        sibling.is_file(),
        "no sluice binary at {}: build it beside sluice-bench \
         (cargo build --release -p sluice -p sluice-bench) or pass --sluice FILE",
        sibling.display()
    );
    Ok(sibling)
}

/// A `sluice serve` child of this process on ephemeral loopback ports,
/// stopped with SIGTERM when dropped.
pub(crate) struct Serve {
    child: Child,
    /// The Kafka listener's address.
    pub(crate) kafka: String,
}

impl Serve {
    /// Starts `binary serve` on `data_dir` and waits for its ready line.
    pub(crate) fn start(
        binary: &Path,
        data_dir: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
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
            .with_context(|| format!("starting {} serve", binary.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
        let Some(kafka) = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("kafka="))
        else {
            let _ = child.kill();
            let _ = child.wait();
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
