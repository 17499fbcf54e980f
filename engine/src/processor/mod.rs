//! WebAssembly processors: the wasmtime host, deployments, and the
//! read → invoke → write → commit loop that runs each input partition.

mod abi;
pub mod host;
mod lift;
pub(crate) mod output;
pub(crate) mod registry;
pub mod scratch;
pub mod spec;
pub(crate) mod stateful;
pub(crate) mod status;
pub(crate) mod tables;
#[cfg(test)]
mod tests;
mod wasi;
pub mod worker;

use serde::{Deserialize, Serialize};

pub(crate) use registry::{AdminError, Processors};

/// Processor settings (`[processors]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ProcessorConfig {
    /// Default limits of every processor instance (`[processors.limits]`);
    /// a deployment may override each.
    pub(crate) limits: spec::Limits,
    /// Processors one broker runs at most.
    pub(crate) processors_max: usize,
    /// Largest plugin upload, in bytes.
    pub(crate) wasm_bytes_max: u64,
    /// Keep compiled components in `<data-dir>/processors/compiled` so a
    /// restart does not recompile them (each verified against the hash
    /// recorded with its deployment before it loads).
    pub(crate) compile_cache: bool,
    /// Plugin memory of the whole broker, in bytes: the memory limits of
    /// all instances together (one per input partition of each processor,
    /// `memory_bytes_max` each). A deploy that would exceed it is refused;
    /// an instance that would exceed it is not created.
    pub(crate) memory_bytes_max: u64,
    /// Plugins compiled at once when the broker starts (compiling is
    /// CPU-bound and runs on blocking threads, off the async workers).
    pub(crate) compiles_max: usize,
    /// The nice value of the threads processor steps run on (0 to 19; 0:
    /// the broker's own priority): processing takes the CPU that Kafka
    /// requests and queries leave (`worker/threads.rs`).
    pub(crate) nice: i32,
}

impl ProcessorConfig {
    /// Checks values that parse but make no sense.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if !(0..=19).contains(&self.nice) {
            anyhow::bail!(
                "[processors] nice = {} is outside 0..=19 (0: the broker's own priority)",
                self.nice
            );
        }
        Ok(())
    }
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            limits: spec::Limits::default(),
            processors_max: 64,
            wasm_bytes_max: 64 << 20,
            compile_cache: true,
            memory_bytes_max: 4 << 30,
            compiles_max: 2,
            nice: worker::threads::NICE_DEFAULT,
        }
    }
}
