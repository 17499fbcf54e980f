//! `inspect`: emits, for each record, a JSON description of it exactly as the
//! plugin received it.
//!
//! The output value is `{"topic", "partition", "offset", "timestamp", "key",
//! "value", "headers"}`, with key, value and header values as lower-case hex
//! (`null` for a null key, value or header value) and headers as
//! `[name, value]` pairs in order. The output keeps the input's key, so it
//! lands in the partition the key picks. A test plugin: what the broker
//! lowers into the sandbox is checked against what was produced.

use serde_json::{json, Value};
use sluice_sdk::{NoConfig, Output, Record, Result};

/// Lower-case hex of `bytes`, or `null`.
fn hex(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |bytes| {
        Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect())
    })
}

/// The record, described.
pub fn describe(record: &Record) -> Value {
    json!({
        "topic": &*record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": hex(record.key.as_deref()),
        "value": hex(record.value.as_deref()),
        "headers": record
            .headers
            .iter()
            .map(|header| json!([header.key, hex(header.value.as_deref())]))
            .collect::<Vec<_>>(),
    })
}

/// One description per record, keyed like the record.
pub fn inspect(record: Record, _config: &NoConfig) -> Result<Output> {
    let output = Output::json(&describe(&record))?;
    Ok(match record.key {
        Some(key) => output.key(key),
        None => output,
    })
}

sluice_sdk::map!(inspect);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_every_part_of_the_record() {
        let record = Record::new(vec![0u8, 0xff])
            .with_key("k")
            .with_header("h", "v")
            .with_timestamp(7)
            .with_offset(3);
        let output = inspect(record, &NoConfig).unwrap();
        let out = output.record().unwrap();
        assert_eq!(out.key.as_deref(), Some(&b"k"[..]));
        let described: Value = serde_json::from_slice(out.value.as_deref().unwrap()).unwrap();
        assert_eq!(described["value"], "00ff");
        assert_eq!(described["key"], "6b");
        assert_eq!(described["offset"], 3);
        assert_eq!(described["timestamp"], 7);
        assert_eq!(described["headers"], json!([["h", "76"]]));
        let tombstone = inspect(Record::tombstone(), &NoConfig).unwrap();
        let described: Value =
            serde_json::from_slice(tombstone.record().unwrap().value.as_deref().unwrap()).unwrap();
        assert_eq!(described["value"], Value::Null);
        assert_eq!(described["key"], Value::Null);
    }
}
