//! WebAssembly processors: the wasmtime host, deployments, and the
//! read → invoke → write → commit loop that runs each input partition.

mod abi;
pub mod host;
pub(crate) mod output;
pub(crate) mod registry;
pub mod spec;
pub(crate) mod status;
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
    /// Keep compiled components in `<data-dir>/processors/cache` so a
    /// restart does not recompile them.
    pub(crate) compile_cache: bool,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            limits: spec::Limits::default(),
            processors_max: 64,
            wasm_bytes_max: 64 << 20,
            compile_cache: true,
        }
    }
}
