//! `{{name}}`: a Sluice map. It upper-cases each record's value and puts
//! `prefix` in front; change `transform` to make the record you need.

use serde::Deserialize;
use sluice_sdk::{Output, Record, Result};

/// The processor's `--config key=value` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Text put in front of every value.
    #[serde(default)]
    pub prefix: String,
}

/// The record to write for `record`. `Output::from_record` keeps its key,
/// headers and timestamp; `Output::value` would start from scratch. An
/// error fails the batch and names this record.
pub fn transform(record: Record, config: &Config) -> Result<Output> {
    if record.value.is_none() {
        return Ok(Output::forward()); // a tombstone, passed on unchanged
    }
    let value = format!("{}{}", config.prefix, record.value_str()?.to_uppercase());
    Ok(Output::from_record(record)
        .with_value(value)
        .header("processed-by", "{{name}}"))
}

sluice_sdk::map!(transform);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn upper_cases_and_prefixes() {
        let record = Record::new("hello").with_key("k");
        let outputs = testing::run_map(transform, &[("prefix", "> ")], vec![record]).unwrap();
        assert_eq!(outputs[0].value_str(), Ok("> HELLO"));
        assert_eq!(outputs[0].key_str(), Ok("k"));
        assert_eq!(outputs[0].header_str("processed-by"), Some("{{name}}"));
    }
}
