//! `{{name}}`: a Sluice flat-map. It splits each record's value on
//! `separator` and writes one record per non-empty piece; change `split` to
//! write the records you need (none, one or many per input).

use serde::Deserialize;
use sluice_sdk::{Output, Record, Result};

/// The processor's `--config key=value` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What the value is split on; any whitespace when not set.
    #[serde(default)]
    pub separator: Option<String>,
}

/// The records to write for `record`. An error fails the batch and names
/// this record.
pub fn split(record: Record, config: &Config) -> Result<Vec<Output>> {
    if record.value.is_none() {
        return Ok(Vec::new()); // a tombstone: nothing to split
    }
    let text = record.value_str()?;
    let pieces: Vec<&str> = match &config.separator {
        Some(separator) => text.split(separator.as_str()).collect(),
        None => text.split_whitespace().collect(),
    };
    let outputs = pieces
        .into_iter()
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let output = Output::value(piece);
            match &record.key {
                Some(key) => output.key(key.clone()),
                None => output,
            }
        })
        .collect();
    Ok(outputs)
}

sluice_sdk::flat_map!(split);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn one_record_per_piece() {
        let records = testing::records(&["a,b", "c"]);
        let outputs = testing::run_flat_map(split, &[("separator", ",")], records).unwrap();
        let pieces: Vec<_> = outputs
            .iter()
            .map(|output| (output.source, output.value_str()))
            .collect();
        assert_eq!(pieces, [(0, Ok("a")), (0, Ok("b")), (1, Ok("c"))]);
    }
}
