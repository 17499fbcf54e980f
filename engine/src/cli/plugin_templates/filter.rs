//! `{{name}}`: a Sluice filter. It keeps the records whose value is at least
//! `threshold` characters long; change `keep` to decide what to keep.

use serde::Deserialize;
use sluice_sdk::{Record, Result};

/// The processor's `--config key=value` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The shortest value kept, in characters.
    #[serde(default = "default_threshold")]
    pub threshold: usize,
}

fn default_threshold() -> usize {
    1
}

/// Whether to keep `record`: `true` forwards it unchanged, `false` drops it.
/// An error fails the batch and names this record.
pub fn keep(record: &Record, config: &Config) -> Result<bool> {
    if record.value.is_none() {
        return Ok(false); // a tombstone
    }
    Ok(record.value_str()?.chars().count() >= config.threshold)
}

sluice_sdk::filter!(keep);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn keeps_long_enough_values() {
        let records = testing::records(&["a", "bb", "ccc"]);
        let outputs = testing::run_filter(keep, &[("threshold", "2")], records).unwrap();
        let kept: Vec<_> = outputs.iter().map(|output| output.value_str()).collect();
        assert_eq!(kept, [Ok("bb"), Ok("ccc")]);
    }

    #[test]
    fn binary_values_are_errors() {
        let config = testing::config::<Config>(&[]).unwrap();
        assert!(keep(&Record::new(vec![0xff]), &config).is_err());
    }
}
