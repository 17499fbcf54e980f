//! `sluice plugin run`: a plugin over JSON lines, without a broker, for a
//! fast edit-run loop. The plugin runs in the same sandbox, with the same
//! default limits, as under `sluice serve`.
//!
//! Input, one record per line: a JSON object with a `value` member and
//! only `key`, `value`, `headers` (object of strings), `timestamp` (ms) and
//! `offset` members is a record envelope; any other line is the record's
//! value, as is. Output, one JSON object per output record: `topic` (null
//! for the default output), `source_offset`, `key`, `value`, `headers`,
//! `timestamp`; a key or value that is JSON is printed as JSON, other UTF-8
//! as a string, anything else as `{"hex": "…"}`. Failed records are
//! reported on stderr and the command exits non-zero.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::PluginRunArgs;
use crate::processor::host::{
    Batch, Domain, InputHeader, InputRecord, Instance, Invoke as _, InvokeError, Label, Output,
    Payload, Runtime, TaskContext,
};
use crate::processor::spec::Limits;

const ENVELOPE_KEYS: [&str; 5] = ["key", "value", "headers", "timestamp", "offset"];

/// Runs the plugin over the input lines and prints its outputs.
pub(super) fn run(args: &PluginRunArgs) -> anyhow::Result<()> {
    let wasm =
        std::fs::read(&args.wasm).with_context(|| format!("reading {}", args.wasm.display()))?;
    let runtime = Runtime::new(None)?;
    let plugin = runtime
        .compile(&wasm)
        .with_context(|| format!("loading {}", args.wasm.display()))?;
    let limits = Limits::default();
    let label = Label {
        processor: "plugin-run".into(),
        topic: args.topic.as_str().into(),
        partition: args.partition,
        task: 0,
        stores: args.stores.clone().into(),
        tables: Vec::new().into(),
    };
    let mut local = LocalState::open(&args.stores)?;
    let new_instance = || {
        Instance::new(&plugin, limits, &args.config, label.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let mut instance = new_instance()?;
    let records = read_records(args.input.as_deref())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failures = 0usize;
    for chunk in records.chunks(limits.batch_records_max as usize) {
        let batch = Batch {
            topic: &args.topic,
            partition: args.partition,
            records: chunk,
        };
        match local.call(|context| instance.process(batch, context)) {
            Ok(outputs) => print_outputs(&mut out, batch, 0, outputs)?,
            Err(error) => {
                if matches!(error, InvokeError::Trap { .. }) {
                    instance = new_instance()?;
                }
                failures += retry_record_by_record(
                    &mut instance,
                    &new_instance,
                    batch,
                    &mut out,
                    &mut local,
                )?;
            }
        }
        local.advance(chunk.iter().map(|r| r.timestamp).max());
        local.fire_timers(&mut instance, Domain::EventTime, &mut out)?;
    }
    local.fire_timers(&mut instance, Domain::ProcessingTime, &mut out)?;
    out.flush()?;
    if failures > 0 {
        anyhow::bail!("{failures} of {} records failed", records.len());
    }
    Ok(())
}

/// The records of the input file (stdin when `None`), skipping blank lines.
fn read_records(input: Option<&Path>) -> anyhow::Result<Vec<InputRecord>> {
    let input: Box<dyn BufRead> = match input {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut records = Vec::new();
    for (number, line) in input.lines().enumerate() {
        let line = line.context("reading input")?;
        if line.trim().is_empty() {
            continue;
        }
        records.push(
            parse_line(&line, number as i64).with_context(|| format!("line {}", number + 1))?,
        );
    }
    Ok(records)
}

/// After a batch failed: its records again one by one, to say which ones
/// fail (on stderr) and print the others' outputs. A trapped instance is
/// replaced by a fresh one. Returns how many records failed.
fn retry_record_by_record(
    instance: &mut Instance,
    new_instance: &impl Fn() -> anyhow::Result<Instance>,
    batch: Batch<'_>,
    out: &mut impl Write,
    local: &mut LocalState,
) -> anyhow::Result<usize> {
    let mut failures = 0;
    for (index, record) in batch.records.iter().enumerate() {
        let single = Batch {
            records: std::slice::from_ref(record),
            ..batch
        };
        match local.call(|context| instance.process(single, context)) {
            Ok(outputs) => print_outputs(out, batch, index, outputs)?,
            Err(error) => {
                failures += 1;
                out.flush()?;
                eprintln!(
                    "error: record at offset {}: {}",
                    record.offset,
                    error.message()
                );
                if matches!(error, InvokeError::Trap { .. }) {
                    *instance = new_instance()?;
                }
            }
        }
    }
    Ok(failures)
}

/// Keyed state for a local run (`--store`): a throwaway RocksDB in a
/// temporary folder, removed when the run ends. Each call is staged and
/// rolled back on failure, as in the broker; nothing is ever committed.
struct LocalState {
    dir: Option<std::path::PathBuf>,
    context: TaskContext,
}

impl LocalState {
    fn open(stores: &[String]) -> anyhow::Result<Self> {
        if stores.is_empty() {
            return Ok(Self {
                dir: None,
                context: TaskContext::default(),
            });
        }
        for store in stores {
            crate::state::validate_store_name(store)?;
        }
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("sluice-plugin-run-{}-{unique}", std::process::id()));
        let state = crate::state::StateDb::open(&dir, &crate::state::StateConfig::default())?;
        let task = crate::state::TaskState::new(state.processor("plugin-run")?, 0);
        Ok(Self {
            dir: Some(dir),
            context: TaskContext::with_state(task),
        })
    }

    /// One plugin call, its state changes kept only if it succeeds.
    fn call<T>(
        &mut self,
        call: impl FnOnce(&mut TaskContext) -> Result<T, InvokeError>,
    ) -> Result<T, InvokeError> {
        if let Some(state) = self.context.state.as_mut() {
            state.savepoint();
        }
        let result = call(&mut self.context);
        if let Some(state) = self.context.state.as_mut() {
            match result {
                Ok(_) => state.release(),
                Err(_) => state.rollback(),
            }
        }
        result
    }

    /// Stream time after records with largest timestamp `max`.
    fn advance(&mut self, max: Option<i64>) {
        if let Some(max) = max {
            self.context.stream_time = Some(self.context.stream_time.map_or(max, |t| t.max(max)));
        }
    }

    /// Fires the due timers of `domain` (event time: up to stream time;
    /// processing time: up to now), printing their outputs.
    fn fire_timers(
        &mut self,
        instance: &mut Instance,
        domain: Domain,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        let now = match domain {
            Domain::EventTime => self.context.stream_time,
            Domain::ProcessingTime => Some(crate::processor::status::now_ms()),
        };
        let Some(now) = now else { return Ok(()) };
        // Rounds: a timer may schedule another that is due at once.
        for _ in 0..64 {
            let Some(state) = self.context.state.as_mut() else {
                return Ok(());
            };
            let due = state.due_timers(domain, now, 1024)?;
            if due.is_empty() {
                return Ok(());
            }
            for timer in &due {
                state.remove_timer(timer)?;
            }
            match self.call(|context| instance.on_timer(&due, context)) {
                Ok(outputs) => print_timer_outputs(out, &due, outputs)?,
                Err(error) => eprintln!("error: on-timer: {}", error.message()),
            }
        }
        Ok(())
    }
}

impl Drop for LocalState {
    fn drop(&mut self) {
        // The RocksDB closes with the task's state, before its folder goes.
        self.context = TaskContext::default();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Prints what `on-timer` wrote: like other outputs, with the timer.
fn print_timer_outputs(
    out: &mut impl Write,
    timers: &[crate::processor::host::Timer],
    outputs: Vec<Output>,
) -> anyhow::Result<()> {
    for output in outputs {
        let timer = timers
            .get(output.source as usize)
            .context("the plugin named an output source outside the timers")?;
        let Payload::Emit(record) = &output.payload else {
            anyhow::bail!("the plugin forwarded from on-timer");
        };
        let line = json!({
            "topic": output.topic,
            "timer": {"key": render(&timer.key), "at": timer.at},
            "key": record.key.as_deref().map_or(Value::Null, render),
            "value": record.value.as_deref().map_or(Value::Null, render),
            "headers": render_headers(record.headers.iter().map(|h| (&h.key, h.value.as_deref()))),
            "timestamp": record.timestamp.unwrap_or(timer.at),
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// One input line as a record at `offset`.
fn parse_line(line: &str, offset: i64) -> anyhow::Result<InputRecord> {
    let now = crate::processor::status::now_ms();
    let plain = |value: &str| InputRecord {
        offset,
        timestamp: now,
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Vec::new(),
    };
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) else {
        return Ok(plain(line));
    };
    let envelope =
        object.contains_key("value") && object.keys().all(|k| ENVELOPE_KEYS.contains(&k.as_str()));
    if !envelope {
        return Ok(plain(line));
    }
    let bytes = |value: &Value| match value {
        Value::Null => None,
        Value::String(text) => Some(Bytes::copy_from_slice(text.as_bytes())),
        other => Some(Bytes::from(other.to_string())),
    };
    let headers = match object.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(headers)) => headers
            .iter()
            .map(|(key, value)| InputHeader {
                key: key.clone(),
                value: bytes(value),
            })
            .collect(),
        Some(_) => anyhow::bail!("headers must be an object of strings"),
    };
    Ok(InputRecord {
        offset: object
            .get("offset")
            .and_then(Value::as_i64)
            .unwrap_or(offset),
        timestamp: object
            .get("timestamp")
            .and_then(Value::as_i64)
            .unwrap_or(now),
        key: object.get("key").and_then(bytes),
        value: object.get("value").and_then(bytes),
        headers,
    })
}

fn print_outputs(
    out: &mut impl Write,
    batch: Batch<'_>,
    base: usize,
    outputs: Vec<Output>,
) -> anyhow::Result<()> {
    for output in outputs {
        let input = batch
            .records
            .get(base + output.source as usize)
            .context("the plugin named an output source outside the batch")?;
        let (key, value, headers, timestamp) = match &output.payload {
            Payload::Forward => (
                input.key.as_deref(),
                input.value.as_deref(),
                render_headers(input.headers.iter().map(|h| (&h.key, h.value.as_deref()))),
                input.timestamp,
            ),
            Payload::Emit(record) => (
                record.key.as_deref(),
                record.value.as_deref(),
                render_headers(record.headers.iter().map(|h| (&h.key, h.value.as_deref()))),
                record.timestamp.unwrap_or(input.timestamp),
            ),
        };
        let line = json!({
            "topic": output.topic,
            "source_offset": input.offset,
            "key": key.map_or(Value::Null, render),
            "value": value.map_or(Value::Null, render),
            "headers": headers,
            "timestamp": timestamp,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Headers as a JSON object of rendered values.
fn render_headers<'a>(
    headers: impl Iterator<Item = (&'a String, Option<&'a [u8]>)>,
) -> Map<String, Value> {
    headers
        .map(|(key, value)| (key.clone(), value.map_or(Value::Null, render)))
        .collect()
}

/// Bytes as JSON if they are JSON, a string if UTF-8, else hex.
fn render(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())),
        Err(_) => json!({ "hex": crate::random::hex(bytes) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_values_unless_they_are_envelopes() {
        let plain = parse_line(r#"{"user":"a","n":1}"#, 3).unwrap();
        assert_eq!(plain.value.as_deref(), Some(&br#"{"user":"a","n":1}"#[..]));
        assert_eq!(plain.offset, 3);
        let envelope = parse_line(
            r#"{"key":"k","value":{"n":1},"headers":{"h":"v"},"timestamp":5}"#,
            0,
        )
        .unwrap();
        assert_eq!(envelope.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(envelope.value.as_deref(), Some(&br#"{"n":1}"#[..]));
        assert_eq!(envelope.timestamp, 5);
        assert_eq!(envelope.headers[0].key, "h");
        let text = parse_line("hello world", 0).unwrap();
        assert_eq!(text.value.as_deref(), Some(&b"hello world"[..]));
    }

    #[test]
    fn bytes_render_as_json_text_or_hex() {
        assert_eq!(render(br#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(render(b"plain"), json!("plain"));
        assert_eq!(render(&[0xff, 0x00]), json!({"hex": "ff00"}));
    }
}
