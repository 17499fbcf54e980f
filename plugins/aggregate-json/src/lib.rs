//! `aggregate-json`: count, sum, min, max and average of a JSON number
//! field (`field`) per group (the JSON field `group_by`), as running totals
//! or per tumbling window, in the store `aggregates`.
//!
//! - Running totals (no `size_ms`): every record emits its group's new
//!   totals; timestamp = the record's.
//! - Windowed (`size_ms`, `grace_ms`, `emit=update|final`): per group per
//!   tumbling window, as `windowed-count` does (late records dropped and
//!   counted); timestamp = the window end.
//!
//! The group is the field's string, or its JSON text for another type (a
//! number `7` groups as `7`). A record without the group field, or whose
//! `field` is missing or not a number, is an error naming the record; a
//! tombstone is skipped.
//!
//! Each task aggregates its own partition's records: right when the input
//! is keyed by the group (or has one partition). Otherwise set
//! `repartition=true`: records are first re-keyed by their group through
//! the processor's repartition topic (`sluice.repartition`, see
//! `sluice_sdk::repartition`) and aggregated in the one task that owns the
//! group (windowed: a repartition partition merges every input
//! partition's records, less ordered by time; give a grace period for it).
//!
//! Output: key = the group; value
//! `{"group":"…","count":…,"sum":…,"min":…,"max":…,"avg":…}`, plus
//! `"window_start"` and `"window_end"` when windowed. Stored values are the
//! same statistics as JSON (`{"count":…,"sum":…,"min":…,"max":…}`).
//!
//! ```sh
//! sluice processor deploy revenue-per-country \
//!     --wasm target/wasm32-wasip2/plugin/aggregate_json.wasm \
//!     --input orders --output revenue --store aggregates \
//!     --config field=amount --config group_by=user.country \
//!     --config size_ms=3600000 --config grace_ms=60000 --config emit=final
//! ```

use serde::{Deserialize, Serialize};
use sluice_sdk::aggregate::{self, Aggregator};
use sluice_sdk::json::{Path, Value};
use sluice_sdk::repartition::{self, Step};
use sluice_sdk::state::KeyValueStore;
use sluice_sdk::window::{Emit, WindowResult, Windowed, Windows};
use sluice_sdk::{Batch, Error, Output, Outputs, ProcessError, Processor, Record, Result, Timer};

/// The store the aggregates live in (deploy with `--store aggregates`).
pub const STORE: &str = "aggregates";

/// The `--config` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The number field to aggregate (a dotted path).
    field: Path,
    /// The field whose value names the group (a dotted path).
    group_by: Path,
    /// Tumbling windows of this length; running totals without it.
    #[serde(default)]
    size_ms: Option<i64>,
    /// How long past its end a window still takes records.
    #[serde(default)]
    grace_ms: i64,
    /// `update` (default) or `final` (windowed only).
    #[serde(default)]
    emit: Emit,
    /// Re-key by group through the repartition topic first.
    #[serde(default)]
    repartition: bool,
}

/// Count, sum, min and max of the values seen: the stored aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// How many values.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

/// Folds numbers into [`Stats`].
#[derive(Debug, Clone, Copy)]
pub struct StatsOf;

impl Aggregator for StatsOf {
    type Input = f64;
    type Aggregate = Stats;

    fn add(&self, stats: Option<Stats>, value: f64) -> Stats {
        match stats {
            None => Stats {
                count: 1,
                sum: value,
                min: value,
                max: value,
            },
            Some(stats) => Stats {
                count: stats.count + 1,
                sum: stats.sum + value,
                min: stats.min.min(value),
                max: stats.max.max(value),
            },
        }
    }

    fn merge(&self, earlier: Stats, later: Stats) -> Result<Stats> {
        Ok(Stats {
            count: earlier.count + later.count,
            sum: earlier.sum + later.sum,
            min: earlier.min.min(later.min),
            max: earlier.max.max(later.max),
        })
    }
}

/// One group's statistics, as written.
#[derive(Debug, Serialize)]
struct Written<'a> {
    group: &'a str,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    avg: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_start: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_end: Option<i64>,
}

fn written<'a>(group: &'a str, stats: &Stats) -> Written<'a> {
    Written {
        group,
        count: stats.count,
        sum: stats.sum,
        min: stats.min,
        max: stats.max,
        avg: stats.sum / stats.count as f64,
        window_start: None,
        window_end: None,
    }
}

fn window_output(result: &WindowResult<Stats>) -> Result<Output> {
    let group = String::from_utf8_lossy(&result.key);
    let value = Written {
        window_start: Some(result.window.start),
        window_end: Some(result.window.end),
        ..written(&group, &result.aggregate)
    };
    Ok(Output::upsert(result.key.clone(), &value)?.timestamp(result.window.end))
}

/// How the totals are kept.
#[derive(Debug)]
enum Totals {
    Running(KeyValueStore<String, Stats>),
    Windowed(Windowed<StatsOf>),
}

/// The processor.
#[derive(Debug)]
pub struct AggregateJson {
    field: Path,
    group_by: Path,
    totals: Totals,
    repartition: bool,
}

impl AggregateJson {
    /// A record's group and number; `None` for a tombstone.
    pub fn extract(&self, record: &Record) -> Result<Option<(String, f64)>> {
        if record.value.is_none() {
            return Ok(None);
        }
        let value: Value = record.json()?;
        let group = match self.group_by.get(&value) {
            Some(Value::String(group)) => group.clone(),
            Some(Value::Null) | None => {
                return Err(Error::new(format!("no group field `{}`", self.group_by)));
            }
            Some(other) => other.to_string(),
        };
        let number = self
            .field
            .get(&value)
            .and_then(Value::as_f64)
            .ok_or_else(|| {
                Error::new(format!("field `{}` is missing or not a number", self.field))
            })?;
        Ok(Some((group, number)))
    }

    fn running(
        &self,
        store: &KeyValueStore<String, Stats>,
        batch: Batch,
        outputs: &mut Outputs,
    ) -> Result<(), ProcessError> {
        let mut inputs = Vec::with_capacity(batch.len());
        for (source, record) in batch.indexed() {
            let extracted = self
                .extract(&record)
                .map_err(|error| ProcessError::at(source, error))?;
            if let Some((group, number)) = extracted {
                inputs.push((source, group, number));
            }
        }
        let updates = aggregate::aggregate(store, &StatsOf, inputs)?;
        for update in updates {
            let value = written(&update.key, &update.aggregate);
            let output = Output::upsert(update.key.as_str(), &value)?;
            outputs.push(update.source, output);
        }
        Ok(())
    }
}

impl Processor for AggregateJson {
    type Config = Config;

    fn init(config: Config) -> Result<Self> {
        let totals = match config.size_ms {
            None => Totals::Running(KeyValueStore::open(STORE)?),
            Some(size_ms) => Totals::Windowed(
                Windowed::new(STORE, Windows::tumbling(size_ms)?, StatsOf)?
                    .grace_ms(config.grace_ms)
                    .emit(config.emit),
            ),
        };
        Ok(Self {
            field: config.field,
            group_by: config.group_by,
            totals,
            repartition: config.repartition,
        })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        if self.repartition && repartition::step(&batch) == Step::Input {
            // Checked here, so a bad record fails where it was produced.
            let group = |record: &Record| -> Result<Option<Vec<u8>>> {
                Ok(self.extract(record)?.map(|(group, _)| group.into_bytes()))
            };
            return repartition::group_by(batch, outputs, group);
        }
        match &self.totals {
            Totals::Running(store) => self.running(store, batch, outputs),
            Totals::Windowed(windowed) => {
                let extract = |record: &Record| {
                    let extracted = self.extract(record)?;
                    Ok::<_, Error>(extracted.map(|(group, number)| (group.into_bytes(), number)))
                };
                windowed.process(batch, outputs, extract, window_output)
            }
        }
    }

    fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
        match &self.totals {
            Totals::Running(_) => Ok(()),
            Totals::Windowed(windowed) => windowed.on_timer(&timers, outputs, window_output),
        }
    }
}

sluice_sdk::export!(AggregateJson);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_sdk::testing::{Harness, Task, TestOutput};

    use super::*;

    fn harness(config: &[(&str, &str)]) -> Harness {
        Task::new()
            .store(STORE)
            .processor::<AggregateJson>(config)
            .unwrap()
    }

    fn order(country: &str, amount: f64, timestamp: i64) -> Record {
        let value = json!({"user": {"country": country}, "amount": amount});
        Record::new(value.to_string()).with_timestamp(timestamp)
    }

    fn values(outputs: &[TestOutput]) -> Vec<Value> {
        outputs
            .iter()
            .map(|output| output.json().unwrap())
            .collect()
    }

    const RUNNING: [(&str, &str); 2] = [("field", "amount"), ("group_by", "user.country")];

    #[test]
    fn running_totals_per_group() {
        let mut totals = harness(&RUNNING);
        let outputs = totals
            .run(vec![
                order("fr", 10.0, 1),
                order("de", 4.0, 2),
                order("fr", 2.0, 3),
            ])
            .unwrap();
        assert_eq!(
            values(&outputs)[2],
            json!({"group": "fr", "count": 2, "sum": 12.0, "min": 2.0, "max": 10.0, "avg": 6.0})
        );
        assert_eq!((outputs[2].key_str(), outputs[2].timestamp), (Ok("fr"), 3));
        let more = totals.run(vec![order("de", -1.0, 4)]).unwrap();
        assert_eq!(
            values(&more)[0],
            json!({"group": "de", "count": 2, "sum": 3.0, "min": -1.0, "max": 4.0, "avg": 1.5})
        );
        let stored: Stats = totals.get_json(STORE, b"fr").unwrap();
        assert_eq!((stored.count, stored.sum), (2, 12.0));
    }

    #[test]
    fn windowed_totals_emitted_final() {
        let config = [
            ("field", "amount"),
            ("group_by", "user.country"),
            ("size_ms", "100"),
            ("emit", "final"),
        ];
        let mut totals = harness(&config);
        let quiet = totals
            .run(vec![
                order("fr", 1.0, 10),
                order("fr", 3.0, 90),
                order("de", 5.0, 50),
            ])
            .unwrap();
        assert!(quiet.is_empty());
        let closed = totals.run(vec![order("fr", 7.0, 100)]).unwrap();
        assert_eq!(
            values(&closed),
            [
                json!({"group": "de", "count": 1, "sum": 5.0, "min": 5.0, "max": 5.0, "avg": 5.0,
                       "window_start": 0, "window_end": 100}),
                json!({"group": "fr", "count": 2, "sum": 4.0, "min": 1.0, "max": 3.0, "avg": 2.0,
                       "window_start": 0, "window_end": 100}),
            ]
        );
        assert!(closed.iter().all(|output| output.timestamp == 100));
    }

    #[test]
    fn bad_records_name_themselves_and_roll_back() {
        let mut totals = harness(&RUNNING);
        for bad in [
            json!({"user": {"country": "fr"}, "amount": "12"}),
            json!({"user": {}, "amount": 1}),
            json!({"user": {"country": "fr"}}),
        ] {
            let records = vec![order("fr", 1.0, 1), Record::new(bad.to_string())];
            let error = totals.run(records).unwrap_err();
            assert_eq!(error.record_index(), Some(1), "{error}");
        }
        assert!(
            totals.entries(STORE).is_empty(),
            "the good record rolled back too"
        );
        let numbers_group = json!({"user": {"country": 7}, "amount": 1});
        let outputs = totals
            .run(vec![
                Record::new(numbers_group.to_string()),
                Record::tombstone(),
            ])
            .unwrap();
        assert_eq!((outputs.len(), outputs[0].key_str()), (1, Ok("7")));
    }

    #[test]
    fn repartition_aggregates_per_group_through_the_repartition_topic() {
        let mut totals = harness(&[
            ("field", "amount"),
            ("group_by", "country"),
            ("repartition", "true"),
        ]);
        let order = |user: &str, country: &str, amount: f64| {
            Record::new(json!({"country": country, "amount": amount}).to_string()).with_key(user)
        };
        let outputs = totals
            .run(vec![
                order("ann", "fr", 2.0),
                order("bob", "fr", 10.0),
                order("cat", "de", 1.0),
            ])
            .unwrap();
        assert!(
            outputs.iter().all(|o| o.topic.is_none()),
            "nothing left re-keyed"
        );
        let keys: Vec<&str> = outputs.iter().map(|o| o.key_str().unwrap()).collect();
        assert_eq!(keys, ["fr", "fr", "de"]);
        let fr: Value = outputs[1].json().unwrap();
        assert_eq!(
            (fr["count"].as_u64(), fr["sum"].as_f64()),
            (Some(2), Some(12.0))
        );
        let error = totals
            .run(vec![
                order("ann", "fr", 1.0),
                Record::new(r#"{"amount":1}"#).with_key("x"),
            ])
            .unwrap_err();
        assert_eq!(error.record_index(), Some(1), "the input record: {error}");
        assert!(error.message().contains("no group field"), "{error}");
    }
}
