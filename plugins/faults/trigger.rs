//! Which records a fault plugin misbehaves on, shared by every fault plugin
//! (each includes this file with `#[path]`).

use sluice_sdk::Record;

/// The default `trigger` text.
pub fn default_trigger() -> String {
    "boom".to_owned()
}

/// Whether `record`'s value contains `trigger`.
pub fn is_triggered(record: &Record, trigger: &str) -> bool {
    let needle = trigger.as_bytes();
    record.value.as_deref().is_some_and(|value| {
        needle.is_empty() || value.windows(needle.len()).any(|window| window == needle)
    })
}
