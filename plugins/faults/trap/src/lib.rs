//! `fault-trap` (tests only): forwards records unchanged, but panics (a
//! WebAssembly trap) on records whose value contains the `trigger` text.
//! Tests use it to check that a trapping instance affects only the
//! offending record.

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

/// Keeps every record; panics on a trigger record.
pub fn trap(record: &Record, config: &Config) -> Result<bool> {
    if is_triggered(record, &config.trigger) {
        panic!("fault-trap: triggered by offset {}", record.offset);
    }
    Ok(true)
}

sluice_sdk::filter!(trap);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn forwards_normal_records() {
        let outputs = testing::run_filter(trap, &[], testing::records(&["a", "b"])).unwrap();
        assert_eq!(outputs.len(), 2);
        assert!(outputs.iter().all(|output| output.forwarded));
    }

    #[test]
    #[should_panic(expected = "fault-trap: triggered by offset 1")]
    fn panics_on_the_trigger() {
        let _ = testing::run_filter(
            trap,
            &[("trigger", "bang")],
            testing::records(&["a", "big bang"]),
        );
    }
}
