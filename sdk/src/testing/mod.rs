//! Running processors on the host, in plain `cargo test`, with no
//! WebAssembly runtime.
//!
//! A [`Harness`] builds a processor from config pairs exactly as the
//! WebAssembly `init` would and runs batches through the same loop as the
//! `process` export: same source indexes, same forwards, same errors (with
//! the failing record's index). Its outputs come back resolved against the
//! inputs, so a forwarded record reads like an emitted one.
//!
//! ```
//! use sluice_sdk::{testing, Record, Result};
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     word: String,
//! }
//!
//! fn mentions(record: &Record, config: &Config) -> Result<bool> {
//!     Ok(record.value_str()?.contains(&config.word))
//! }
//!
//! let outputs = testing::run_filter(mentions, &[("word", "rust")], testing::records(&["rust!", "go"])).unwrap();
//! assert_eq!(outputs.len(), 1);
//! assert!(outputs[0].forwarded);
//! assert_eq!((outputs[0].source, outputs[0].value_str()), (0, Ok("rust!")));
//! ```
//!
//! Stateful processors run in a [`Task`]: declared stores, tables, stream
//! time, timers, late counts and a wall clock the test moves, under the
//! broker's rules (see [`Task`]).

mod task;

use std::fmt::{self, Display};

use serde::de::{Deserialize, DeserializeOwned};

pub use task::Task;

use crate::clock::Timer;
use crate::log::Level;
use crate::record;
use crate::state::host::TaskState;
use crate::{
    config, Error, Header, Instance, Output, Payload, ProcessError, Processor, Record, Result,
};

/// One output of a test run, resolved against its input: a forward carries
/// the input record's key, value, headers and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutput {
    /// Index in the batch of the input record this output comes from.
    pub source: u32,
    /// The output topic; `None` is the default output.
    pub topic: Option<String>,
    /// Whether the input was forwarded unchanged (the `forward` payload).
    pub forwarded: bool,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Option<Vec<u8>>,
    /// The headers.
    pub headers: Vec<Header>,
    /// The timestamp the host would write (when not set: the input's, or
    /// for a timer's output the timer's `at`).
    pub timestamp: i64,
    /// The timer whose `on_timer` call wrote this output (`source` is then
    /// its index in that call's timers); `None` for `process` outputs.
    pub timer: Option<Timer>,
}

impl TestOutput {
    /// The value as UTF-8 text. Errors on a tombstone or invalid UTF-8, like
    /// [`Record::value_str`]: compare with `Ok("text")`, or `unwrap` it and
    /// a failing test says which of the two it was.
    pub fn value_str(&self) -> Result<&str> {
        record::utf8(
            self.value.as_deref(),
            "the output has a null value (tombstone)",
        )
    }

    /// The key as UTF-8 text. Errors on a null key or invalid UTF-8, like
    /// [`Record::key_str`].
    pub fn key_str(&self) -> Result<&str> {
        record::utf8(self.key.as_deref(), "the output has a null key")
    }

    /// The value parsed as JSON.
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Result<T> {
        let value = self
            .value
            .as_deref()
            .ok_or_else(|| Error::new("the output has a null value (tombstone)"))?;
        Ok(serde_json::from_slice(value)?)
    }

    /// The value of the first header named `name`, as UTF-8 text; `None`
    /// when there is no such header, its value is null or not UTF-8, like
    /// [`Record::header_str`].
    pub fn header_str(&self, name: &str) -> Option<&str> {
        let header = self.headers.iter().find(|header| header.key == name)?;
        std::str::from_utf8(header.value.as_deref()?).ok()
    }
}

/// Why a test run failed: `init` refused the config, or `process` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestError {
    /// `init` failed: the instance would not start.
    Init(Error),
    /// `process` or `on_timer` failed: the call's outputs would not be
    /// written and its state changes were rolled back.
    Process(ProcessError),
}

impl TestError {
    /// The error message.
    pub fn message(&self) -> &str {
        match self {
            TestError::Init(error) => error.message(),
            TestError::Process(error) => &error.message,
        }
    }

    /// The index of the failing record, for a `process` error that knows it.
    pub fn record_index(&self) -> Option<u32> {
        match self {
            TestError::Init(_) => None,
            TestError::Process(error) => error.source,
        }
    }
}

impl Display for TestError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestError::Init(error) => write!(formatter, "init failed: {error}"),
            TestError::Process(error) => write!(formatter, "process failed: {error}"),
        }
    }
}

impl std::error::Error for TestError {}

/// A processor instance on the host for tests: built once, then run over
/// batches, with outputs resolved against their inputs. It owns its task's
/// state (see [`Task`]); the function-kind constructors give a permissive
/// task where any store name opens.
pub struct Harness {
    instance: Instance,
    topic: String,
    partition: i32,
    task: TaskState,
    /// The next offset of a record fed back from `sluice.repartition`.
    repartition_offset: i64,
    /// The task of the repartition topic's partition, once records went
    /// there: its own stores, stream time and timers, as in the broker.
    repartition_task: Option<TaskState>,
}

impl fmt::Debug for Harness {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Harness")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

type Pairs<'a> = &'a [(&'a str, &'a str)];

impl Harness {
    fn new(instance: Result<Instance>) -> Result<Self, TestError> {
        Ok(Self {
            instance: instance.map_err(TestError::Init)?,
            topic: "input".to_owned(),
            partition: 0,
            task: TaskState::default(),
            repartition_offset: 0,
            repartition_task: None,
        })
    }

    /// A filter, as `sluice_sdk::filter!(function)` exports it.
    pub fn filter<F, C, E>(function: F, config: Pairs<'_>) -> Result<Self, TestError>
    where
        F: Fn(&Record, &C) -> Result<bool, E> + 'static,
        C: DeserializeOwned + 'static,
        E: Display + 'static,
    {
        Self::new(Instance::filter(function, config))
    }

    /// A map, as `sluice_sdk::map!(function)` exports it.
    pub fn map<F, C, E>(function: F, config: Pairs<'_>) -> Result<Self, TestError>
    where
        F: Fn(Record, &C) -> Result<Output, E> + 'static,
        C: DeserializeOwned + 'static,
        E: Display + 'static,
    {
        Self::new(Instance::map(function, config))
    }

    /// A flat-map, as `sluice_sdk::flat_map!(function)` exports it.
    pub fn flat_map<F, C, I, E>(function: F, config: Pairs<'_>) -> Result<Self, TestError>
    where
        F: Fn(Record, &C) -> Result<I, E> + 'static,
        C: DeserializeOwned + 'static,
        I: IntoIterator<Item = Output> + 'static,
        E: Display + 'static,
    {
        Self::new(Instance::flat_map(function, config))
    }

    /// A router, as `sluice_sdk::route!(function)` exports it.
    pub fn route<F, C, T, E>(function: F, config: Pairs<'_>) -> Result<Self, TestError>
    where
        F: Fn(&Record, &C) -> Result<Option<T>, E> + 'static,
        C: DeserializeOwned + 'static,
        T: Into<String> + 'static,
        E: Display + 'static,
    {
        Self::new(Instance::route(function, config))
    }

    /// A [`Processor`], as `sluice_sdk::export!(P)` exports it.
    pub fn processor<P: Processor>(config: Pairs<'_>) -> Result<Self, TestError> {
        Self::new(Instance::processor::<P, _, _>(config))
    }

    /// Batches come from this topic and partition (default `input`, 0).
    pub fn with_source(mut self, topic: &str, partition: i32) -> Self {
        self.topic = topic.to_owned();
        self.partition = partition;
        self
    }
}

fn resolve(inputs: &[Record], source: u32, output: Output) -> Result<TestOutput, TestError> {
    let input = usize::try_from(source)
        .ok()
        .and_then(|index| inputs.get(index))
        .ok_or_else(|| {
            TestError::Process(ProcessError::new(format!(
                "output source {source} is past the end of a batch of {}",
                inputs.len()
            )))
        })?;
    Ok(match output.payload {
        Payload::Forward => TestOutput {
            source,
            topic: output.topic,
            forwarded: true,
            key: input.key.clone(),
            value: input.value.clone(),
            headers: input.headers.clone(),
            timestamp: input.timestamp,
            timer: None,
        },
        Payload::Emit(record) => TestOutput {
            source,
            topic: output.topic,
            forwarded: false,
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: record.timestamp.unwrap_or(input.timestamp),
            timer: None,
        },
    })
}

/// Runs `function` as a filter over one batch.
pub fn run_filter<F, C, E>(
    function: F,
    config: Pairs<'_>,
    records: Vec<Record>,
) -> Result<Vec<TestOutput>, TestError>
where
    F: Fn(&Record, &C) -> Result<bool, E> + 'static,
    C: DeserializeOwned + 'static,
    E: Display + 'static,
{
    Harness::filter(function, config)?.run(records)
}

/// Runs `function` as a map over one batch.
pub fn run_map<F, C, E>(
    function: F,
    config: Pairs<'_>,
    records: Vec<Record>,
) -> Result<Vec<TestOutput>, TestError>
where
    F: Fn(Record, &C) -> Result<Output, E> + 'static,
    C: DeserializeOwned + 'static,
    E: Display + 'static,
{
    Harness::map(function, config)?.run(records)
}

/// Runs `function` as a flat-map over one batch.
pub fn run_flat_map<F, C, I, E>(
    function: F,
    config: Pairs<'_>,
    records: Vec<Record>,
) -> Result<Vec<TestOutput>, TestError>
where
    F: Fn(Record, &C) -> Result<I, E> + 'static,
    C: DeserializeOwned + 'static,
    I: IntoIterator<Item = Output> + 'static,
    E: Display + 'static,
{
    Harness::flat_map(function, config)?.run(records)
}

/// Runs `function` as a router over one batch.
pub fn run_route<F, C, T, E>(
    function: F,
    config: Pairs<'_>,
    records: Vec<Record>,
) -> Result<Vec<TestOutput>, TestError>
where
    F: Fn(&Record, &C) -> Result<Option<T>, E> + 'static,
    C: DeserializeOwned + 'static,
    T: Into<String> + 'static,
    E: Display + 'static,
{
    Harness::route(function, config)?.run(records)
}

/// Records with these values, at offsets 0, 1, 2, …
pub fn records(values: &[&str]) -> Vec<Record> {
    (0_i64..)
        .zip(values)
        .map(|(offset, value)| Record::new(*value).with_offset(offset))
        .collect()
}

/// The config type `C` from `key=value` pairs, as `init` would build it.
pub fn config<C: DeserializeOwned>(pairs: Pairs<'_>) -> Result<C> {
    config::from_pairs(pairs)
}

/// The messages logged on this thread since the last call (at most the
/// first 1,000). Always empty on WebAssembly, where logs go to the host.
pub fn take_logs() -> Vec<(Level, String)> {
    #[cfg(not(target_arch = "wasm32"))]
    return crate::log::host::take();
    #[cfg(target_arch = "wasm32")]
    return Vec::new();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, NoConfig, Outputs};

    #[derive(serde::Deserialize)]
    struct Needle {
        needle: String,
    }

    fn has_needle(record: &Record, config: &Needle) -> Result<bool> {
        Ok(record.value_str()?.contains(&config.needle))
    }

    fn shout(record: Record, _: &NoConfig) -> Result<Output, String> {
        if record.value.is_none() {
            return Ok(Output::forward());
        }
        let text = record
            .value_str()
            .map_err(|error| error.to_string())?
            .to_uppercase();
        Ok(Output::from_record(record).with_value(text))
    }

    fn split(record: Record, _: &()) -> Result<Vec<Output>> {
        Ok(record.value_str()?.split(' ').map(Output::value).collect())
    }

    fn by_first_letter(record: &Record, _: &NoConfig) -> Result<Option<String>> {
        Ok(record
            .value_str()?
            .chars()
            .next()
            .map(|letter| format!("topic-{letter}")))
    }

    #[test]
    fn filter_forwards_kept_records_with_their_index() {
        let outputs =
            run_filter(has_needle, &[("needle", "x")], records(&["ax", "b", "xc"])).unwrap();
        let sources: Vec<_> = outputs.iter().map(|output| output.source).collect();
        assert_eq!(sources, [0, 2]);
        assert!(outputs
            .iter()
            .all(|output| output.forwarded && output.topic.is_none()));
        assert_eq!(outputs[1].value_str(), Ok("xc"));
    }

    #[test]
    fn errors_carry_the_failing_index() {
        let mut batch = records(&["x", "x", "x"]);
        batch[1].value = Some(vec![0xff]);
        let error = run_filter(has_needle, &[("needle", "x")], batch).unwrap_err();
        assert_eq!(error.record_index(), Some(1));
        assert!(error.message().contains("UTF-8"), "{error}");
    }

    #[test]
    fn init_errors_name_the_key() {
        let error = run_filter(has_needle, &[], records(&["x"])).unwrap_err();
        assert!(matches!(error, TestError::Init(_)));
        assert!(
            error.message().contains("missing field `needle`"),
            "{error}"
        );
        let error = run_map(shout, &[("x", "1")], vec![]).unwrap_err();
        assert!(error.message().contains("got key `x`"), "{error}");
    }

    #[test]
    fn map_emits_and_can_forward() {
        let input = vec![
            Record::new("hi").with_key("k").with_timestamp(5),
            Record::tombstone(),
        ];
        let outputs = run_map(shout, &[], input).unwrap();
        assert_eq!(outputs[0].value_str(), Ok("HI"));
        assert_eq!(
            (
                outputs[0].key_str(),
                outputs[0].timestamp,
                outputs[0].forwarded
            ),
            (Ok("k"), 5, false)
        );
        assert!(outputs[1].forwarded && outputs[1].value.is_none());
        let error = outputs[1].value_str().unwrap_err();
        assert!(error.message().contains("tombstone"), "{error}");
        assert!(outputs[1]
            .key_str()
            .unwrap_err()
            .message()
            .contains("null key"));
        assert_eq!(outputs[1].source, 1);
    }

    #[test]
    fn flat_map_repeats_the_source() {
        let outputs = run_flat_map(split, &[], records(&["a b", "c"])).unwrap();
        let pairs: Vec<_> = outputs
            .iter()
            .map(|output| (output.source, output.value_str().unwrap()))
            .collect();
        assert_eq!(pairs, [(0, "a"), (0, "b"), (1, "c")]);
    }

    #[test]
    fn route_forwards_to_the_named_topic() {
        let outputs = run_route(by_first_letter, &[], records(&["apple", "", "berry"])).unwrap();
        let routed: Vec<_> = outputs
            .iter()
            .map(|output| (output.source, output.topic.as_deref()))
            .collect();
        assert_eq!(routed, [(0, Some("topic-a")), (2, Some("topic-b"))]);
        assert!(outputs.iter().all(|output| output.forwarded));
    }

    struct Reverse;

    impl Processor for Reverse {
        type Config = NoConfig;

        fn init(_: NoConfig) -> Result<Self> {
            crate::log::info("reverse ready");
            Ok(Reverse)
        }

        fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
            // Deliberately out of order: the harness must catch it.
            let count = u32::try_from(batch.len()).unwrap();
            for source in (0..count).rev() {
                outputs.forward(source);
            }
            Ok(())
        }
    }

    #[test]
    fn processors_are_checked_for_source_order() {
        let mut harness = Harness::processor::<Reverse>(&[])
            .unwrap()
            .with_source("t", 2);
        assert_eq!(take_logs(), [(Level::Info, "reverse ready".to_owned())]);
        assert_eq!(harness.run(records(&["a"])).unwrap().len(), 1);
        let error = harness.run(records(&["a", "b"])).unwrap_err();
        assert!(error.message().contains("source order"), "{error}");
    }
}
