//! `fault-alloc` (tests only): forwards records unchanged, but allocates
//! without bound on records whose value contains the `trigger` text. Tests
//! use it to check that the host's memory limit stops the instance.

use fault_trigger::is_triggered;
use serde::Deserialize;
use sluice_sdk::{Record, Result};

/// The config: which records misbehave.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Records whose value contains this text trigger the fault.
    #[serde(default = "fault_trigger::default_trigger")]
    pub trigger: String,
}

/// How much each step allocates.
const CHUNK_BYTES: usize = 1 << 20;

/// Keeps every record; on a trigger record, allocates 1 MiB chunks (writing
/// to every page of each) until memory runs out.
pub fn hoard(record: &Record, config: &Config) -> Result<bool> {
    if is_triggered(record, &config.trigger) {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0_u8; CHUNK_BYTES];
            for page in chunk.iter_mut().step_by(4096) {
                *page = 1;
            }
            chunks.push(std::hint::black_box(chunk));
        }
    }
    Ok(true)
}

sluice_sdk::filter!(hoard);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn forwards_normal_records() {
        let outputs =
            testing::run_filter(hoard, &[("trigger", "x")], testing::records(&["a", "boom"]))
                .unwrap();
        assert_eq!(outputs.len(), 2);
    }
}
