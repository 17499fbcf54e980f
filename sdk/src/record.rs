//! The records a processor reads: [`Record`], [`Header`] and the [`Batch`]
//! they arrive in.
//!
//! A record owns its key, value and headers: on WebAssembly they are copied
//! out of the one buffer the batch crossed the boundary in, as each record
//! is taken (a copy inside the guest costs far less than a crossing). The batch's topic is shared by all its records through one
//! `Arc<str>`, so knowing its topic costs a record a reference count, not a
//! string.

use std::sync::Arc;

use serde::Deserialize;

use crate::{Error, Result};

/// A Kafka record header. Kafka allows a null header value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// The header's value; `None` is Kafka's null.
    pub value: Option<Vec<u8>>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// One record read from an input partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The key; `None` is Kafka's null key.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in the order the producer wrote them.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The record's offset in its partition.
    pub offset: i64,
    /// The topic the record was read from (shared by the whole batch).
    pub topic: Arc<str>,
    /// The partition the record was read from.
    pub partition: i32,
}

impl Record {
    /// A record with just a value, the common case in tests.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A record with a null value (a tombstone).
    pub fn tombstone() -> Self {
        Self::default()
    }

    /// This record with a key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// This record with one more header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// This record with a timestamp (milliseconds since the Unix epoch).
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// This record with an offset.
    pub fn with_offset(mut self, offset: i64) -> Self {
        self.offset = offset;
        self
    }

    /// The value as UTF-8 text. Errors on a tombstone or invalid UTF-8, and
    /// the error says which: a `Result`, not an `Option`, so that `?` works
    /// in a plugin and an `unwrap` in a test says why. [`TestOutput`]'s
    /// `value_str` is the same.
    ///
    /// [`TestOutput`]: crate::testing::TestOutput
    pub fn value_str(&self) -> Result<&str> {
        utf8(
            self.value.as_deref(),
            "the record has a null value (tombstone)",
        )
    }

    /// The key as UTF-8 text. Errors on a null key or invalid UTF-8 (see
    /// [`value_str`](Self::value_str)).
    pub fn key_str(&self) -> Result<&str> {
        utf8(self.key.as_deref(), "the record has a null key")
    }

    /// The value parsed as JSON into `T` (which may borrow from the record).
    /// Errors on a tombstone or when the value does not parse as `T`.
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Result<T> {
        let value = self
            .value
            .as_deref()
            .ok_or_else(|| Error::new("the record has a null value (tombstone)"))?;
        Ok(serde_json::from_slice(value)?)
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&Header> {
        self.headers.iter().find(|header| header.key == name)
    }

    /// The value of the first header named `name`; `None` when there is no
    /// such header or its value is null.
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        self.header(name)?.value.as_deref()
    }

    /// The value of the first header named `name` as UTF-8 text; `None` when
    /// there is no such header, its value is null or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.header_value(name)?).ok()
    }
}

/// `bytes` as UTF-8 text; `null` is the error message when there are none.
/// The one reading of a key or value as text, for [`Record`] and the test
/// harness's outputs alike.
pub(crate) fn utf8<'a>(bytes: Option<&'a [u8]>, null: &str) -> Result<&'a str> {
    let bytes = bytes.ok_or_else(|| Error::new(null))?;
    Ok(std::str::from_utf8(bytes)?)
}

/// Consecutive records of one input partition, in offset order: what one
/// `process` call receives.
#[derive(Debug)]
pub struct Batch {
    records: Records,
}

impl Batch {
    /// A batch of `records` read from `topic`/`partition`; the records'
    /// `topic` and `partition` are set to these. This is how the host side
    /// (tests, the engine's native baseline) builds a batch.
    pub fn new(topic: &str, partition: i32, records: Vec<Record>) -> Self {
        let topic: Arc<str> = Arc::from(topic);
        let records = records
            .into_iter()
            .map(|record| Record {
                topic: topic.clone(),
                partition,
                ..record
            })
            .collect::<Vec<_>>();
        Self {
            records: Records {
                inner: Inner::Host(records.into_iter()),
                topic,
                partition,
            },
        }
    }

    /// The topic the batch was read from.
    pub fn topic(&self) -> &str {
        &self.records.topic
    }

    /// The partition the batch was read from.
    pub fn partition(&self) -> i32 {
        self.records.partition
    }

    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.len() == 0
    }

    /// The records, each with its index in the batch (the `source` of the
    /// outputs it produces).
    pub fn indexed(self) -> Indexed {
        Indexed {
            records: self.records,
            next_source: 0,
        }
    }

    /// The records.
    pub fn records(self) -> Records {
        self.records
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_guest(batch: crate::guest::WitBatch) -> Self {
        Self {
            records: Records {
                topic: Arc::from(batch.topic.as_str()),
                partition: batch.partition,
                inner: Inner::Guest(crate::guest::Unpacked::new(batch)),
            },
        }
    }
}

impl IntoIterator for Batch {
    type Item = Record;
    type IntoIter = Records;

    fn into_iter(self) -> Records {
        self.records
    }
}

/// The records of a [`Batch`], converted one by one as they are taken.
#[derive(Debug)]
pub struct Records {
    inner: Inner,
    topic: Arc<str>,
    partition: i32,
}

#[derive(Debug)]
enum Inner {
    Host(std::vec::IntoIter<Record>),
    #[cfg(target_arch = "wasm32")]
    Guest(crate::guest::Unpacked),
}

impl Iterator for Records {
    type Item = Record;

    #[inline]
    fn next(&mut self) -> Option<Record> {
        let record = match &mut self.inner {
            Inner::Host(records) => records.next()?,
            #[cfg(target_arch = "wasm32")]
            Inner::Guest(records) => records.next(&self.topic, self.partition)?,
        };
        // Stream time covers every record taken (see `clock`).
        crate::clock::observe(record.timestamp);
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            Inner::Host(records) => records.size_hint(),
            #[cfg(target_arch = "wasm32")]
            Inner::Guest(records) => records.size_hint(),
        }
    }
}

impl ExactSizeIterator for Records {}

/// The records of a [`Batch`] with their index in it: see [`Batch::indexed`].
#[derive(Debug)]
pub struct Indexed {
    records: Records,
    next_source: u32,
}

impl Iterator for Indexed {
    type Item = (u32, Record);

    #[inline]
    fn next(&mut self) -> Option<(u32, Record)> {
        let record = self.records.next()?;
        let source = self.next_source;
        // A batch is a WIT list, whose length is a u32: this cannot wrap.
        self.next_source = source.wrapping_add(1);
        Some((source, record))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.records.size_hint()
    }
}

impl ExactSizeIterator for Indexed {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_read_value_key_and_headers() {
        let record = Record::new(r#"{"a":1}"#)
            .with_key("k")
            .with_header("h", "v")
            .with_header("h", "second");
        assert_eq!(record.value_str().unwrap(), r#"{"a":1}"#);
        assert_eq!(record.key_str().unwrap(), "k");
        assert_eq!(record.header_str("h"), Some("v"));
        assert_eq!(record.header("missing"), None);
        let value: serde_json::Value = record.json().unwrap();
        assert_eq!(value["a"], 1);
    }

    #[test]
    fn helpers_report_tombstones_and_bad_utf8() {
        let tombstone = Record::tombstone();
        assert!(tombstone
            .value_str()
            .unwrap_err()
            .message()
            .contains("tombstone"));
        assert!(tombstone.key_str().is_err());
        assert!(tombstone.json::<serde_json::Value>().is_err());
        let binary = Record::new(vec![0xff, 0xfe]);
        assert!(binary.value_str().unwrap_err().message().contains("UTF-8"));
    }

    #[test]
    fn batch_shares_topic_and_indexes_records() {
        let batch = Batch::new("in", 3, vec![Record::new("a"), Record::new("b")]);
        assert_eq!(
            (batch.topic(), batch.partition(), batch.len()),
            ("in", 3, 2)
        );
        let records: Vec<_> = batch.indexed().collect();
        assert_eq!(records[1].0, 1);
        assert_eq!(&*records[1].1.topic, "in");
        assert_eq!(records[1].1.partition, 3);
        assert!(Arc::ptr_eq(&records[0].1.topic, &records[1].1.topic));
    }
}
