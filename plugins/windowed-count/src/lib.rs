//! `windowed-count`: counts records per key per time window, in the store
//! `counts` (the broker's windowed layout, so state queries read it).
//!
//! Tumbling windows of `size_ms`, or hopping windows advancing by
//! `advance_ms`; a window takes records until stream time reaches its end
//! plus `grace_ms`. With `emit=update` every record emits its windows' new
//! counts; with `emit=final` each window emits once, when it closes. Late
//! records are dropped and counted (`late_dropped` in the processor status),
//! or forwarded unchanged to `late_topic` when set. Records with a null key
//! are skipped.
//!
//! With `group_by` (a dotted path into the JSON value) records are counted
//! per that field's value (its string, or JSON text for another type)
//! instead of per record key: page views keyed by user, counted per page.
//! Every view of a page must then be counted in one task, so the records
//! are first re-keyed through the processor's repartition topic
//! (`sluice.repartition`, see `sluice_sdk::repartition`) and counted when
//! they come back, in the repartition topic's own tasks (their own state
//! and stream time); records without the field are skipped. With
//! `repartition=false` they are counted where they are, per (record key,
//! group): the key is `<record key>/<group>`.
//!
//! Output: key = the record key (or the group); value
//! `{"key":"…","window_start":…,"window_end":…,"count":…}` (the key as UTF-8,
//! invalid bytes replaced); timestamp = the window end.
//!
//! ```sh
//! sluice processor deploy clicks-per-minute \
//!     --wasm target/wasm32-wasip2/plugin/windowed_count.wasm \
//!     --input clicks --output clicks-per-minute --store counts \
//!     --config size_ms=60000 --config grace_ms=5000 --config emit=final
//! ```

use serde::{Deserialize, Serialize};
use sluice_sdk::aggregate::Count;
use sluice_sdk::json::{Path, Value};
use sluice_sdk::repartition::{self, Step};
use sluice_sdk::window::{Emit, WindowResult, Windowed, Windows};
use sluice_sdk::{Batch, Output, Outputs, ProcessError, Processor, Record, Result, Timer};

/// The store the counts live in (deploy with `--store counts`).
pub const STORE: &str = "counts";

/// The `--config` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The window length.
    size_ms: i64,
    /// Hopping windows: the distance between window starts (default: the
    /// size, tumbling windows).
    #[serde(default)]
    advance_ms: Option<i64>,
    /// How long past its end a window still counts records.
    #[serde(default)]
    grace_ms: i64,
    /// `update` (default) or `final`.
    #[serde(default)]
    emit: Emit,
    /// Where late records go instead of being dropped.
    #[serde(default)]
    late_topic: Option<String>,
    /// Count per this JSON field's value instead of per record key.
    #[serde(default)]
    group_by: Option<Path>,
    /// With `group_by`: re-key through the repartition topic (default), or
    /// count per (record key, group) where the records are.
    #[serde(default = "yes")]
    repartition: bool,
}

fn yes() -> bool {
    true
}

/// One window's count, as written.
#[derive(Debug, Serialize)]
struct WindowCount<'a> {
    key: &'a str,
    window_start: i64,
    window_end: i64,
    count: u64,
}

fn output(result: &WindowResult<u64>) -> Result<Output> {
    let key = String::from_utf8_lossy(&result.key);
    let value = WindowCount {
        key: &key,
        window_start: result.window.start,
        window_end: result.window.end,
        count: result.aggregate,
    };
    Ok(Output::json(&value)?
        .key(result.key.clone())
        .timestamp(result.window.end))
}

fn key(record: &Record) -> Result<Option<(Vec<u8>, ())>> {
    Ok(record.key.clone().map(|key| (key, ())))
}

/// The value of `group_by` in a record (`None`: no such field, or a
/// tombstone).
fn group(record: &Record, group_by: &Path) -> Result<Option<Vec<u8>>> {
    if record.value.is_none() {
        return Ok(None);
    }
    let value: Value = record.json()?;
    Ok(match group_by.get(&value) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone().into_bytes()),
        Some(other) => Some(other.to_string().into_bytes()),
    })
}

/// The processor.
#[derive(Debug)]
pub struct WindowedCount {
    counts: Windowed<Count>,
    group_by: Option<Path>,
    repartition: bool,
}

impl Processor for WindowedCount {
    type Config = Config;

    fn init(config: Config) -> Result<Self> {
        let windows = match config.advance_ms {
            Some(advance_ms) => Windows::hopping(config.size_ms, advance_ms)?,
            None => Windows::tumbling(config.size_ms)?,
        };
        let mut counts = Windowed::new(STORE, windows, Count)?
            .grace_ms(config.grace_ms)
            .emit(config.emit);
        if let Some(topic) = config.late_topic {
            counts = counts.late_records_to(topic);
        }
        Ok(Self {
            counts,
            group_by: config.group_by,
            repartition: config.repartition,
        })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        let Some(group_by) = &self.group_by else {
            return self.counts.process(batch, outputs, key, output);
        };
        if !self.repartition {
            let by_key_and_group = |record: &Record| -> Result<Option<(Vec<u8>, ())>> {
                let (Some(key), Some(group)) = (&record.key, group(record, group_by)?) else {
                    return Ok(None);
                };
                Ok(Some(([&key[..], b"/", &group].concat(), ())))
            };
            return self
                .counts
                .process(batch, outputs, by_key_and_group, output);
        }
        match repartition::step(&batch) {
            Step::Input => repartition::group_by(batch, outputs, |r| group(r, group_by)),
            Step::Repartitioned => self.counts.process(batch, outputs, key, output),
        }
    }

    fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
        self.counts.on_timer(&timers, outputs, output)
    }
}

sluice_sdk::export!(WindowedCount);

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use sluice_sdk::testing::{Harness, Task, TestOutput};
    use sluice_sdk::window::{key as window_key, Window};

    use super::*;

    fn harness(config: &[(&str, &str)]) -> Harness {
        Task::new()
            .store(STORE)
            .processor::<WindowedCount>(config)
            .unwrap()
    }

    fn click(user: &str, timestamp: i64) -> Record {
        Record::new("{}").with_key(user).with_timestamp(timestamp)
    }

    fn values(outputs: &[TestOutput]) -> Vec<Value> {
        outputs
            .iter()
            .map(|output| output.json().unwrap())
            .collect()
    }

    #[test]
    fn update_mode_emits_every_new_count() {
        let mut counts = harness(&[("size_ms", "1000")]);
        let outputs = counts
            .run(vec![
                click("ann", 100),
                click("bob", 200),
                click("ann", 999),
            ])
            .unwrap();
        assert_eq!(
            values(&outputs),
            [
                json!({"key": "ann", "window_start": 0, "window_end": 1000, "count": 1}),
                json!({"key": "bob", "window_start": 0, "window_end": 1000, "count": 1}),
                json!({"key": "ann", "window_start": 0, "window_end": 1000, "count": 2}),
            ]
        );
        assert_eq!(outputs[2].key_str(), Ok("ann"));
        assert_eq!((outputs[2].source, outputs[2].timestamp), (2, 1000));
        let stored = counts.get(
            STORE,
            &window_key::encode_by_window(
                b"ann",
                Window {
                    start: 0,
                    end: 1000,
                },
            ),
        );
        assert_eq!(stored.as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn final_mode_emits_once_per_window_when_it_closes() {
        let mut counts = harness(&[("size_ms", "1000"), ("grace_ms", "500"), ("emit", "final")]);
        assert!(counts
            .run(vec![click("ann", 100), click("ann", 900)])
            .unwrap()
            .is_empty());
        assert!(counts.run(vec![click("ann", 1499)]).unwrap().is_empty());
        let outputs = counts.run(vec![click("bob", 1500)]).unwrap();
        assert_eq!(
            values(&outputs),
            [json!({"key": "ann", "window_start": 0, "window_end": 1000, "count": 2})]
        );
        assert_eq!(outputs[0].timestamp, 1000);
        // A record for the closed window is late: dropped and counted.
        assert!(counts.run(vec![click("ann", 999)]).unwrap().is_empty());
        assert_eq!(counts.late_dropped(), 1);
        assert_eq!(
            counts.entries(STORE).len(),
            2,
            "ann's and bob's [1000, 2000)"
        );
    }

    #[test]
    fn hopping_windows_and_a_late_topic() {
        let config = [
            ("size_ms", "1000"),
            ("advance_ms", "500"),
            ("late_topic", "late-clicks"),
        ];
        let mut counts = harness(&config);
        let outputs = counts
            .run(vec![
                click("ann", 700),
                click("ann", 2000),
                click("ann", 10),
            ])
            .unwrap();
        let windows: Vec<_> = values(&outputs)
            .iter()
            .map(|value| (value["window_start"].as_i64(), value["count"].as_u64()))
            .collect();
        assert_eq!(
            windows,
            [
                (Some(0), Some(1)),
                (Some(500), Some(1)),
                (Some(1500), Some(1)),
                (Some(2000), Some(1)),
                (None, None)
            ]
        );
        assert_eq!(outputs[4].topic.as_deref(), Some("late-clicks"));
        assert!(outputs[4].forwarded);
        assert_eq!(counts.late_dropped(), 0);
    }

    #[test]
    fn null_keys_are_skipped_and_configs_checked() {
        let mut counts = harness(&[("size_ms", "1000")]);
        assert!(counts
            .run(vec![Record::new("{}").with_timestamp(5)])
            .unwrap()
            .is_empty());
        for bad in [
            &[("size_ms", "0")][..],
            &[("size_ms", "10"), ("advance_ms", "20")],
            &[("size", "10")],
        ] {
            let error = Task::new()
                .store(STORE)
                .processor::<WindowedCount>(bad)
                .unwrap_err();
            assert!(!error.message().is_empty());
        }
        let error = Task::new()
            .processor::<WindowedCount>(&[("size_ms", "10")])
            .unwrap_err();
        assert!(error.message().contains("--store counts"), "{error}");
    }

    fn view(user: &str, page: &str, timestamp: i64) -> Record {
        Record::new(json!({"user": user, "page": page}).to_string())
            .with_key(user)
            .with_timestamp(timestamp)
    }

    #[test]
    fn group_by_counts_per_field_through_the_repartition_topic() {
        let mut counts = harness(&[("size_ms", "1000"), ("group_by", "page")]);
        let outputs = counts
            .run(vec![
                view("ann", "/a", 100),
                view("bob", "/a", 200),
                view("ann", "/b", 300),
                Record::new(r#"{"user":"cat"}"#).with_key("cat"),
                view("cat", "/a", 1_100),
            ])
            .unwrap();
        let seen: Vec<(String, i64, u64)> = values(&outputs)
            .iter()
            .map(|v| {
                let key = v["key"].as_str().unwrap().to_owned();
                (
                    key,
                    v["window_start"].as_i64().unwrap(),
                    v["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("/a".to_owned(), 0, 1),
                ("/a".to_owned(), 0, 2),
                ("/b".to_owned(), 0, 1),
                ("/a".to_owned(), 1_000, 1),
            ],
            "counted per page, the record without one skipped"
        );
        assert!(
            outputs.iter().all(|o| o.topic.is_none()),
            "nothing left re-keyed"
        );
        assert_eq!(outputs[1].key_str(), Ok("/a"));
        assert_eq!(outputs[1].timestamp, 1_000, "the window end");
        // Counted in the repartition topic's task, with its own stream time.
        let (late, stream_time) =
            counts.in_repartition_task(|task| (task.late_dropped(), task.stream_time()));
        assert_eq!((late, stream_time), (0, Some(1_100)));
        // [0, 1000) has closed (its state deleted); [1000, 2000) is open.
        let window = |start| {
            window_key::encode_by_window(
                b"/a",
                Window {
                    start,
                    end: start + 1_000,
                },
            )
        };
        let stored = counts.in_repartition_task(|task| {
            (task.get(STORE, &window(0)), task.get(STORE, &window(1_000)))
        });
        assert_eq!(stored, (None, Some(b"1".to_vec())));
    }

    #[test]
    fn group_by_without_repartition_counts_per_key_and_group() {
        let mut counts = harness(&[
            ("size_ms", "1000"),
            ("group_by", "page"),
            ("repartition", "false"),
        ]);
        let outputs = counts
            .run(vec![
                view("ann", "/a", 100),
                view("ann", "/a", 200),
                view("bob", "/a", 300),
            ])
            .unwrap();
        let keys: Vec<&str> = outputs.iter().map(|o| o.key_str().unwrap()).collect();
        assert_eq!(keys, ["ann//a", "ann//a", "bob//a"]);
        assert_eq!(values(&outputs)[1]["count"], 2);
    }
}
