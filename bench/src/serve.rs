//! A `sluice serve` started by a benchmark: the real broker binary as a
//! child process on ephemeral loopback ports, so its CPU time is its own
//! (read from `/proc/<pid>/stat`) and not mixed with the load generator's.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

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

/// The broker's last warning and error lines kept for a failure report.
const LOG_LINES_KEPT: usize = 20;
/// Each kept line is cut to this many bytes.
const LOG_LINE_BYTES: usize = 1024;

/// A `sluice serve` child of this process on ephemeral loopback ports,
/// stopped with SIGTERM when dropped.
pub(crate) struct Serve {
    child: Child,
    /// The Kafka listener's address.
    pub(crate) kafka: String,
    /// The last [`LOG_LINES_KEPT`] lines the broker logged (warnings and
    /// errors), read by a thread that ends with the broker's stderr.
    log: Arc<Mutex<VecDeque<String>>>,
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
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} serve", binary.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_LINES_KEPT)));
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn({
            let log = log.clone();
            move || keep_last_lines(stderr, &log)
        });
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
            log,
        })
    }

    /// `result`, its error followed by what the broker last logged (a
    /// full disk, a refused request), if it logged anything.
    pub(crate) fn explained<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        result.map_err(|error| {
            let log = self.log.lock().expect("broker log lock");
            if log.is_empty() {
                return error;
            }
            let lines: Vec<&str> = log.iter().map(String::as_str).collect();
            anyhow::anyhow!(
                "{error:#}\nthe broker's last log lines:\n  {}",
                lines.join("\n  ")
            )
        })
    }

    /// The broker's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Reads `stderr` to its end, keeping its last [`LOG_LINES_KEPT`] lines.
fn keep_last_lines(stderr: impl std::io::Read, log: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::with_capacity(LOG_LINE_BYTES);
    loop {
        line.clear();
        let mut limited = (&mut reader).take(LOG_LINE_BYTES as u64);
        if !matches!(limited.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            break;
        }
        // The rest of a longer line is skipped.
        if line.last() != Some(&b'\n') && reader.skip_until(b'\n').is_err() {
            break;
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let mut log = log.lock().expect("broker log lock");
        if log.len() == LOG_LINES_KEPT {
            log.pop_front();
        }
        log.push_back(text);
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
