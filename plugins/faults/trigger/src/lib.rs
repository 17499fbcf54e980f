//! Which records a fault plugin misbehaves on, shared by every fault plugin
//! (`plugins/faults/*`): those whose value contains the config's `trigger`
//! text. A library, not a plugin: it exports no processor.

use sluice_sdk::Record;

/// The default `trigger` text, for `#[serde(default = "…")]` on a fault
/// plugin's config.
pub fn default_trigger() -> String {
    "boom".to_owned()
}

/// Whether `record`'s value contains `trigger`. An empty `trigger` matches
/// every record with a value; a tombstone never matches.
pub fn is_triggered(record: &Record, trigger: &str) -> bool {
    let needle = trigger.as_bytes();
    record.value.as_deref().is_some_and(|value| {
        needle.is_empty() || value.windows(needle.len()).any(|window| window == needle)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_values_containing_the_trigger() {
        assert!(!is_triggered(&Record::new("a"), "boom"));
        assert!(is_triggered(&Record::new("kaboom!"), "boom"));
        assert!(is_triggered(&Record::new("boom"), &default_trigger()));
        assert!(!is_triggered(&Record::new("bo"), "boom"));
    }

    #[test]
    fn empty_trigger_matches_every_value_but_no_tombstone() {
        assert!(is_triggered(&Record::new(""), ""));
        assert!(is_triggered(&Record::new("x"), ""));
        assert!(!is_triggered(&Record::tombstone(), ""));
        assert!(!is_triggered(&Record::tombstone(), "boom"));
    }
}
