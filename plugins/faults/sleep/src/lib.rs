//! `fault-sleep` (tests only): forwards records unchanged, but sleeps with
//! `std::thread::sleep` (WASI's monotonic-clock `subscribe-duration` and a
//! blocking `poll`) on records whose value contains the `trigger` text.
//! Tests use it to check that waiting in the guest cannot outlast the
//! time limit, pin a host thread, or hold up `remove` and shutdown.

use fault_trigger::is_triggered;
use serde::Deserialize;
use sluice_sdk::{Record, Result};

/// The config: which records misbehave, and for how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Records whose value contains this text trigger the fault.
    #[serde(default = "fault_trigger::default_trigger")]
    pub trigger: String,
    /// How long to sleep on a trigger record, in seconds.
    #[serde(default = "default_seconds")]
    pub seconds: u64,
}

fn default_seconds() -> u64 {
    3_600
}

/// Keeps every record; sleeps on a trigger record first.
pub fn doze(record: &Record, config: &Config) -> Result<bool> {
    if is_triggered(record, &config.trigger) {
        std::thread::sleep(std::time::Duration::from_secs(config.seconds));
    }
    Ok(true)
}

sluice_sdk::filter!(doze);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn forwards_normal_records() {
        let outputs = testing::run_filter(doze, &[], testing::records(&["a", "b"])).unwrap();
        assert_eq!(outputs.len(), 2);
    }
}
