//! `fault-huge-output` (tests only): forwards records unchanged, but answers
//! a record whose value contains the `trigger` text with far too much
//! output: `copies` copies of its value, or with `bytes` set, one value of
//! that many bytes. Tests use it to check the host's output limits.

use fault_trigger::is_triggered;
use serde::Deserialize;
use sluice_sdk::{Output, Record, Result};

/// The config: which records misbehave, and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Records whose value contains this text trigger the fault.
    #[serde(default = "fault_trigger::default_trigger")]
    pub trigger: String,
    /// How many copies of the trigger record's value to emit.
    #[serde(default = "default_copies")]
    pub copies: u64,
    /// When set: emit one output with a value of this many bytes instead.
    #[serde(default)]
    pub bytes: Option<u64>,
}

fn default_copies() -> u64 {
    // Far over the default outputs_per_record_max (1000), well under the
    // default memory limit (64 MiB), so the output limit is what trips.
    100_000
}

/// Forwards normal records; floods on trigger records.
pub fn flood(record: Record, config: &Config) -> Result<Vec<Output>> {
    if !is_triggered(&record, &config.trigger) {
        return Ok(vec![Output::forward()]);
    }
    if let Some(bytes) = config.bytes {
        let length = usize::try_from(bytes)
            .map_err(|_| "fault-huge-output: bytes does not fit in memory")?;
        return Ok(vec![Output::value(vec![b'x'; length])]);
    }
    let value = record.value.unwrap_or_default();
    let copies =
        usize::try_from(config.copies).map_err(|_| "fault-huge-output: too many copies")?;
    Ok((0..copies).map(|_| Output::value(value.clone())).collect())
}

sluice_sdk::flat_map!(flood);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn forwards_normal_records_and_floods_on_the_trigger() {
        let outputs = testing::run_flat_map(
            flood,
            &[("copies", "3")],
            testing::records(&["a", "boom", "c"]),
        )
        .unwrap();
        let sources: Vec<_> = outputs
            .iter()
            .map(|output| (output.source, output.forwarded))
            .collect();
        assert_eq!(
            sources,
            [(0, true), (1, false), (1, false), (1, false), (2, true)]
        );
        assert!(outputs[1..4]
            .iter()
            .all(|output| output.value_str() == Ok("boom")));
    }

    #[test]
    fn one_big_value_with_bytes() {
        let outputs =
            testing::run_flat_map(flood, &[("bytes", "100000")], testing::records(&["boom"]))
                .unwrap();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].value.as_ref().map(Vec::len), Some(100_000));
    }

    #[test]
    fn default_is_a_hundred_thousand_copies() {
        let config: Config = testing::config(&[]).unwrap();
        assert_eq!(
            (config.trigger.as_str(), config.copies, config.bytes),
            ("boom", 100_000, None)
        );
    }
}
