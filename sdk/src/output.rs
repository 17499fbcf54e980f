//! What a processor writes: [`Output`] (built with a small builder) and the
//! per-batch [`Outputs`] list.
//!
//! An output either *forwards* its input record unchanged (nothing is copied
//! back across the WebAssembly boundary: the fast path for filters and
//! routers) or *emits* a new record. Either can go to a named output topic or
//! to the processor's default output.

use serde::Serialize;

use crate::{Header, Record, Result};

/// What an output carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The input record unchanged: key, value, headers and timestamp.
    Forward,
    /// A new record.
    Emit(OutputRecord),
}

/// A record a processor writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputRecord {
    /// The key; it picks the output partition. `None`: the input's partition
    /// number, modulo the output's partition count.
    pub key: Option<Vec<u8>>,
    /// The value; `None` writes a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None`: the input record's.
    pub timestamp: Option<i64>,
}

/// One record to write, before it is tied to the input record it comes from.
///
/// ```
/// use sluice_sdk::Output;
/// let output = Output::value("hello").key("k").header("origin", "demo").topic("greetings");
/// let forward = Output::forward_to("audit");
/// # let _ = (output, forward);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The output topic; `None` is the processor's default output.
    pub topic: Option<String>,
    /// Forward the input, or emit a new record.
    pub payload: Payload,
}

impl Output {
    /// Forward the input record unchanged to the default output.
    pub fn forward() -> Self {
        Self {
            topic: None,
            payload: Payload::Forward,
        }
    }

    /// Forward the input record unchanged to `topic`.
    pub fn forward_to(topic: impl Into<String>) -> Self {
        Self {
            topic: Some(topic.into()),
            payload: Payload::Forward,
        }
    }

    /// A new record with this value, no key, no header, and the input's
    /// timestamp.
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        Self::emit(OutputRecord {
            value: Some(value.into()),
            ..OutputRecord::default()
        })
    }

    /// A new record with a null value (a tombstone).
    pub fn tombstone() -> Self {
        Self::emit(OutputRecord::default())
    }

    /// A table update: `value` as compact JSON under `key`, for an output
    /// topic that is a compacted table (latest value per key). Pair it with
    /// [`Output::delete`].
    ///
    /// ```
    /// use sluice_sdk::Output;
    /// let set = Output::upsert("acct-1", &serde_json::json!({"balance": 5}))?;
    /// assert_eq!(set.record().unwrap().value.as_deref(), Some(&br#"{"balance":5}"#[..]));
    /// let gone = Output::delete("acct-1");
    /// assert_eq!(gone.record().unwrap().value, None);
    /// # Ok::<(), sluice_sdk::Error>(())
    /// ```
    pub fn upsert<T: Serialize + ?Sized>(key: impl Into<Vec<u8>>, value: &T) -> Result<Self> {
        Ok(Self::json(value)?.key(key))
    }

    /// A table delete: a tombstone (null value) under `key`, which a
    /// compacted topic turns into the key's removal.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Self::tombstone().key(key)
    }

    /// A new record whose value is `value` serialized as compact JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        Ok(Self::value(serde_json::to_vec(value)?))
    }

    /// A new record with the key, value, headers and timestamp of `record`
    /// (moved, not copied): the start of "the input, but changed".
    pub fn from_record(record: Record) -> Self {
        Self::emit(OutputRecord {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: Some(record.timestamp),
        })
    }

    /// An output emitting `record`.
    pub fn emit(record: OutputRecord) -> Self {
        Self {
            topic: None,
            payload: Payload::Emit(record),
        }
    }

    /// This output, sent to `topic` instead of the default output.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// This output with key `key`.
    ///
    /// # Panics
    /// On a forward output, whose record is the input's and cannot change:
    /// build from [`Output::from_record`] instead.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.record_mut("key").key = Some(key.into());
        self
    }

    /// This output with its value replaced.
    ///
    /// # Panics
    /// On a forward output (see [`Output::key`]).
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.record_mut("with_value").value = Some(value.into());
        self
    }

    /// This output with one more header.
    ///
    /// # Panics
    /// On a forward output (see [`Output::key`]).
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.record_mut("header")
            .headers
            .push(Header::new(key, value));
        self
    }

    /// This output with timestamp `timestamp` (milliseconds since the Unix
    /// epoch).
    ///
    /// # Panics
    /// On a forward output (see [`Output::key`]).
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.record_mut("timestamp").timestamp = Some(timestamp);
        self
    }

    /// The emitted record; `None` for a forward output.
    pub fn record(&self) -> Option<&OutputRecord> {
        match &self.payload {
            Payload::Forward => None,
            Payload::Emit(record) => Some(record),
        }
    }

    /// Whether this output forwards its input unchanged.
    pub fn is_forward(&self) -> bool {
        matches!(self.payload, Payload::Forward)
    }

    fn record_mut(&mut self, method: &str) -> &mut OutputRecord {
        match &mut self.payload {
            Payload::Emit(record) => record,
            Payload::Forward => panic!(
                "Output::{method} on a forward output: a forwarded record is the input unchanged; \
                 build a changed copy with Output::from_record"
            ),
        }
    }
}

impl From<Record> for Output {
    fn from(record: Record) -> Self {
        Self::from_record(record)
    }
}

/// An output tied to the input record it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) source: u32,
    pub(crate) topic: Option<String>,
    pub(crate) payload: Payload,
}

/// The outputs of one `process` call, in non-decreasing `source` order.
#[derive(Debug, Default)]
pub struct Outputs {
    entries: Vec<Entry>,
    /// The highest source pushed so far; a lower one is an ordering error,
    /// reported when the batch ends (one comparison per push).
    source_max: u32,
    out_of_order: bool,
}

impl Outputs {
    /// An empty list with room for `capacity` outputs.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// Makes room for `additional` more outputs.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
    }

    /// Adds `output`, produced by the record at index `source` of the batch.
    /// Sources must not decrease from one push to the next.
    #[inline]
    pub fn push(&mut self, source: u32, output: Output) {
        self.out_of_order |= source < self.source_max;
        self.source_max = self.source_max.max(source);
        self.entries.push(Entry {
            source,
            topic: output.topic,
            payload: output.payload,
        });
    }

    /// Forwards the record at index `source` unchanged to the default output.
    #[inline]
    pub fn forward(&mut self, source: u32) {
        self.push(source, Output::forward());
    }

    /// Forwards the record at index `source` unchanged to `topic`.
    #[inline]
    pub fn forward_to(&mut self, source: u32, topic: impl Into<String>) {
        self.push(source, Output::forward_to(topic));
    }

    /// Empties the list, keeping its allocation for the next batch.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.source_max = 0;
        self.out_of_order = false;
    }

    /// How many outputs there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no output.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The outputs as `(source, output)` pairs, checking their order.
    pub fn into_pairs(self) -> Result<Vec<(u32, Output)>, crate::ProcessError> {
        Ok(self
            .into_entries()?
            .into_iter()
            .map(|entry| {
                let output = Output {
                    topic: entry.topic,
                    payload: entry.payload,
                };
                (entry.source, output)
            })
            .collect())
    }

    /// Why the host would refuse these outputs, if it would: a source that
    /// went back, or (for `on-timer`, `timer` true) a forward.
    pub(crate) fn refusal(&self, timer: bool) -> Option<crate::ProcessError> {
        if self.out_of_order {
            return Some(crate::ProcessError::new(
                "outputs are not in non-decreasing source order (a processor bug)",
            ));
        }
        let forward = self
            .entries
            .iter()
            .find(|entry| entry.payload == Payload::Forward);
        match forward {
            Some(entry) if timer => Some(crate::ProcessError::new(format!(
                "on_timer output for timer {} is a forward: a timer has no input record to forward",
                entry.source
            ))),
            _ => None,
        }
    }

    /// The entries of an `on-timer` call: as [`into_entries`](Self::into_entries),
    /// and a forward is an error (there is no input record to forward).
    pub(crate) fn into_timer_entries(self) -> Result<Vec<Entry>, crate::ProcessError> {
        let entries = self.into_entries()?;
        if let Some(entry) = entries
            .iter()
            .find(|entry| entry.payload == Payload::Forward)
        {
            return Err(crate::ProcessError::new(format!(
                "on_timer output for timer {} is a forward: a timer has no input record to forward",
                entry.source
            )));
        }
        Ok(entries)
    }

    /// The entries, or an error if a push went back in source order.
    pub(crate) fn into_entries(self) -> Result<Vec<Entry>, crate::ProcessError> {
        if self.out_of_order {
            return Err(crate::ProcessError::new(
                "outputs are not in non-decreasing source order (a processor bug)",
            ));
        }
        Ok(self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field() {
        let output = Output::value("v")
            .key("k")
            .header("h", "x")
            .timestamp(7)
            .topic("t");
        assert_eq!(output.topic.as_deref(), Some("t"));
        let record = output.record().unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(record.headers, vec![Header::new("h", "x")]);
        assert_eq!(record.timestamp, Some(7));
    }

    #[test]
    fn from_record_moves_the_fields() {
        let record = Record::new("v").with_key("k").with_timestamp(9);
        let output = Output::from(record).with_value("w");
        let emitted = output.record().unwrap();
        assert_eq!(emitted.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(emitted.value.as_deref(), Some(&b"w"[..]));
        assert_eq!(emitted.timestamp, Some(9));
        assert!(Output::forward().is_forward());
    }

    #[test]
    fn json_serializes_compactly() {
        let output = Output::json(&serde_json::json!({"a": [1, 2]})).unwrap();
        assert_eq!(
            output.record().unwrap().value.as_deref(),
            Some(&br#"{"a":[1,2]}"#[..])
        );
    }

    #[test]
    #[should_panic(expected = "on a forward output")]
    fn changing_a_forward_panics() {
        let _ = Output::forward().key("k");
    }

    #[test]
    fn outputs_detect_out_of_order_sources() {
        let mut outputs = Outputs::with_capacity(2);
        outputs.forward(1);
        outputs.forward(1);
        assert_eq!(outputs.into_pairs().unwrap().len(), 2);
        let mut outputs = Outputs::default();
        outputs.forward(2);
        outputs.forward_to(1, "t");
        assert!(outputs.into_pairs().is_err());
    }
}
