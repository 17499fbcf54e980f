//! `noop`: keeps the records with an even offset, without reading them.
//!
//! A benchmark plugin: it keeps about half of the records, like the
//! `filter-json` benchmark's condition, so the same benchmark run over it
//! measures what a `process` call costs around the filter itself (lowering
//! the batch, the SDK's per-record glue, lifting the outputs). It accepts
//! and ignores any config.

use std::collections::BTreeMap;

use sluice_sdk::{Record, Result};

/// Any `--config` pairs, ignored.
pub type Config = BTreeMap<String, String>;

/// Keeps records with an even offset.
pub fn keep(record: &Record, _config: &Config) -> Result<bool> {
    Ok(record.offset % 2 == 0)
}

sluice_sdk::filter!(keep);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn keeps_even_offsets_whatever_the_config() {
        let records = testing::records(&["a", "b", "c", "d"]);
        let outputs = testing::run_filter(keep, &[("field", "x")], records).unwrap();
        let kept: Vec<u32> = outputs.iter().map(|o| o.source).collect();
        assert_eq!(kept, [0, 2]);
    }
}
