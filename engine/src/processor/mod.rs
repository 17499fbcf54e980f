//! WebAssembly processors: the wasmtime host, deployments, and the
//! read → invoke → write → commit loop that runs each input partition.

mod abi;
pub mod host;
pub mod output;
pub mod registry;
pub mod spec;
pub mod status;
pub mod worker;

use serde::{Deserialize, Serialize};

pub use registry::{AdminError, Processors};

/// Processor settings (`[processors]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Default limits of every processor instance (`[processors.limits]`);
    /// a deployment may override each.
    pub limits: spec::Limits,
    /// Processors one broker runs at most.
    pub processors_max: usize,
    /// Largest plugin upload, in bytes.
    pub wasm_bytes_max: u64,
    /// Keep compiled components in `<data-dir>/processors/cache` so a
    /// restart does not recompile them.
    pub compile_cache: bool,
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
