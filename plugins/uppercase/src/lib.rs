//! `uppercase`: the smallest Sluice processor. A map that upper-cases each
//! record's value (UTF-8) and keeps its key, headers and timestamp.

use sluice_sdk::{NoConfig, Output, Record, Result};

/// The record with its value upper-cased. A tombstone is forwarded
/// unchanged; a value that is not UTF-8 is an error.
pub fn uppercase(mut record: Record, _config: &NoConfig) -> Result<Output> {
    let Some(value) = record.value.take() else {
        return Ok(Output::forward());
    };
    let mut text = String::from_utf8(value)?;
    if text.is_ascii() {
        // In place: no second buffer for the common case.
        text.make_ascii_uppercase();
    } else {
        text = text.to_uppercase();
    }
    record.value = Some(text.into_bytes());
    Ok(Output::from_record(record))
}

sluice_sdk::map!(uppercase);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing;

    use super::*;

    #[test]
    fn upper_cases_ascii_and_unicode() {
        let output = uppercase(Record::new("hello, world"), &NoConfig).unwrap();
        assert_eq!(
            output.record().unwrap().value.as_deref(),
            Some(&b"HELLO, WORLD"[..])
        );
        let output = uppercase(Record::new("straße"), &NoConfig).unwrap();
        assert_eq!(
            output.record().unwrap().value.as_deref(),
            Some("STRASSE".as_bytes())
        );
    }

    #[test]
    fn keeps_key_headers_and_timestamp() {
        let record = Record::new("a")
            .with_key("k")
            .with_header("h", "v")
            .with_timestamp(42);
        let outputs = testing::run_map(uppercase, &[], vec![record]).unwrap();
        assert_eq!(outputs[0].value_str(), Ok("A"));
        assert_eq!(outputs[0].key_str(), Ok("k"));
        assert_eq!(outputs[0].header_str("h"), Some("v"));
        assert_eq!(outputs[0].timestamp, 42);
    }

    #[test]
    fn forwards_tombstones_and_rejects_binary() {
        let records = vec![Record::tombstone(), Record::new(vec![0xc3, 0x28])];
        let error = testing::run_map(uppercase, &[], records).unwrap_err();
        assert_eq!(error.record_index(), Some(1));
        assert!(error.message().contains("UTF-8"), "{error}");
        let outputs = testing::run_map(uppercase, &[], vec![Record::tombstone()]).unwrap();
        assert!(outputs[0].forwarded);
    }

    #[test]
    fn refuses_config() {
        assert!(testing::run_map(uppercase, &[("x", "1")], vec![]).is_err());
    }
}
