//! `{{name}}`: a Sluice router. It forwards records whose value contains
//! `word` to the `matched` topic and the others to `unmatched`; change
//! `route` to pick the topic you need (`None` drops the record). Every topic
//! it names must be one of the processor's outputs.

use serde::Deserialize;
use sluice_sdk::{Record, Result};

/// The processor's `--config key=value` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The text that sends a record to `matched`.
    #[serde(default = "default_word")]
    pub word: String,
    /// Where records containing `word` go.
    #[serde(default = "default_matched")]
    pub matched: String,
    /// Where the other records go.
    #[serde(default = "default_unmatched")]
    pub unmatched: String,
}

fn default_word() -> String {
    "urgent".to_owned()
}

fn default_matched() -> String {
    "matched".to_owned()
}

fn default_unmatched() -> String {
    "unmatched".to_owned()
}

/// The topic `record` is forwarded to, unchanged; `None` drops it. An error
/// fails the batch and names this record.
pub fn route(record: &Record, config: &Config) -> Result<Option<String>> {
    if record.value.is_none() {
        return Ok(None); // a tombstone
    }
    let topic = if record.value_str()?.contains(&config.word) {
        &config.matched
    } else {
        &config.unmatched
    };
    Ok(Some(topic.clone()))
}

sluice_sdk::route!(route);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn routes_by_word() {
        let records = testing::records(&["urgent: disk full", "all good"]);
        let config = [("matched", "alerts"), ("unmatched", "events")];
        let outputs = testing::run_route(route, &config, records).unwrap();
        let topics: Vec<_> = outputs
            .iter()
            .map(|output| output.topic.as_deref())
            .collect();
        assert_eq!(topics, [Some("alerts"), Some("events")]);
        assert!(outputs.iter().all(|output| output.forwarded));
    }
}
