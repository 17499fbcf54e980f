//! `fault-loop` (tests only): forwards records unchanged, but spins forever
//! on records whose value contains the `trigger` text. Tests use it to check
//! that the host's deadline (epoch interruption or fuel) stops the instance.

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

/// Keeps every record; never returns on a trigger record.
pub fn spin(record: &Record, config: &Config) -> Result<bool> {
    if is_triggered(record, &config.trigger) {
        let mut turns = 0_u64;
        loop {
            // `black_box` keeps the optimiser from proving the loop
            // side-effect free and removing it.
            turns = std::hint::black_box(turns.wrapping_add(1));
        }
    }
    Ok(true)
}

sluice_sdk::filter!(spin);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn forwards_normal_records() {
        let outputs = testing::run_filter(spin, &[], testing::records(&["a", "b"])).unwrap();
        assert_eq!(outputs.len(), 2);
    }
}
