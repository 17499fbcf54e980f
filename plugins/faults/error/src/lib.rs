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
    /// When set: pad the error message with `x` to this many bytes (tests
    /// of the host's bound on error messages).
    #[serde(default)]
    pub message_bytes: Option<u64>,
}

/// Keeps every record; rejects trigger records with an error.
pub fn reject(record: &Record, config: &Config) -> Result<bool> {
    if is_triggered(record, &config.trigger) {
        let mut message = format!("fault-error: rejected offset {}", record.offset);
        if let Some(bytes) = config.message_bytes {
            let bytes = usize::try_from(bytes)
                .map_err(|_| "fault-error: message_bytes does not fit in memory")?;
            message.extend(std::iter::repeat_n(
                'x',
                bytes.saturating_sub(message.len()),
            ));
        }
        return Err(Error::new(message));
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

    #[test]
    fn pads_the_message_to_message_bytes() {
        let error = testing::run_filter(
            reject,
            &[("message_bytes", "100")],
            testing::records(&["boom"]),
        )
        .unwrap_err();
        assert_eq!(error.message().len(), 100);
        assert!(error
            .message()
            .starts_with("fault-error: rejected offset 0x"));
    }
}
