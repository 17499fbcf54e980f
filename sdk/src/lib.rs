//! Guest SDK for Sluice stream processors.
//!
//! Plugins are compiled to `wasm32-wasip2` and implement the processor
//! contract in `wit/`. This crate grows the typed helpers (records, JSON,
//! typed configuration) with the processors work; today it carries the record
//! model both sides agree on, so plugins can already be unit-tested on the host.

/// One key/value record as a processor sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Partitioning key; `None` is Kafka's null key.
    pub key: Option<Vec<u8>>,
    /// Payload; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in the order the producer sent them.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Record {
    /// A record with just a value, the common case in tests.
    pub fn from_value(value: impl Into<Vec<u8>>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_value_sets_only_the_value() {
        let record = Record::from_value("hello");
        assert_eq!(record.value.as_deref(), Some(&b"hello"[..]));
        assert!(record.key.is_none());
        assert!(record.headers.is_empty());
    }
}
