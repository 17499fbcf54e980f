//! `fault-error` (tests only): forwards records unchanged, but returns an
//! error (not a trap) for records whose value contains the `trigger` text,
//! naming the record so the host can apply its error policy to it alone.

use fault_trigger::is_triggered;
use serde::Deserialize;
use sluice_sdk::{Error, Record, Result};

/// The config: which records are rejected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Records whose value contains this text are rejected.
    #[serde(default = "fault_trigger::default_trigger")]
    pub trigger: String,
}

/// Keeps every record; rejects trigger records with an error.
pub fn reject(record: &Record, config: &Config) -> Result<bool> {
    if is_triggered(record, &config.trigger) {
        return Err(Error::new(format!(
            "fault-error: rejected offset {}",
            record.offset
        )));
    }
    Ok(true)
}

sluice_sdk::filter!(reject);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn rejects_only_the_trigger_record() {
        assert_eq!(
            testing::run_filter(reject, &[], testing::records(&["a", "b"]))
                .unwrap()
                .len(),
            2
        );
        let error =
            testing::run_filter(reject, &[], testing::records(&["a", "kaboom", "c"])).unwrap_err();
        assert_eq!(error.record_index(), Some(1));
        assert_eq!(error.message(), "fault-error: rejected offset 1");
    }
}
