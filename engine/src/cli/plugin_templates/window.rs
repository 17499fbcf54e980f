//! `{{name}}`: a Sluice windowed aggregate. It counts records per key per
//! tumbling window of `size_ms` in event time (the records' timestamps),
//! kept in the store `windows`, and writes each window's count once, when
//! the window closes: when stream time passes its end plus `grace_ms`
//! (records up to `grace_ms` out of order still count; later ones are
//! dropped and counted as `late_dropped` in the processor's status).
//! Change the `Count` aggregator or `window_output` to make it yours.
//!
//! Deploy with `--store windows` (the store the open windows live in).

use serde::{Deserialize, Serialize};
use sluice_sdk::aggregate::Count;
use sluice_sdk::window::{Emit, WindowResult, Windowed, Windows};
use sluice_sdk::{Batch, Output, Outputs, ProcessError, Processor, Record, Result, Timer};

/// The store the open windows live in (`--store windows`).
pub const STORE: &str = "windows";

/// The processor's `--config key=value` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The window length, in milliseconds.
    #[serde(default = "default_size_ms")]
    pub size_ms: i64,
    /// How long past its end a window still takes records.
    #[serde(default)]
    pub grace_ms: i64,
}

fn default_size_ms() -> i64 {
    60_000
}

/// One closed window, as written.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowCount {
    pub key: String,
    pub window_start: i64,
    pub window_end: i64,
    pub count: u64,
}

fn window_output(result: &WindowResult<u64>) -> Result<Output> {
    let count = WindowCount {
        key: String::from_utf8_lossy(&result.key).into_owned(),
        window_start: result.window.start,
        window_end: result.window.end,
        count: result.aggregate,
    };
    Ok(Output::json(&count)?
        .key(result.key.clone())
        .timestamp(result.window.end))
}

/// A record's key and what it adds (nothing: a count); `None` skips records
/// without a key.
fn key(record: &Record) -> Result<Option<(Vec<u8>, ())>> {
    Ok(record.key.clone().map(|key| (key, ())))
}

/// The processor: the windows and how they are aggregated.
#[derive(Debug)]
pub struct WindowedCounts {
    counts: Windowed<Count>,
}

impl Processor for WindowedCounts {
    type Config = Config;

    fn init(config: Config) -> Result<Self> {
        let counts = Windowed::new(STORE, Windows::tumbling(config.size_ms)?, Count)?
            .grace_ms(config.grace_ms)
            .emit(Emit::Final);
        Ok(Self { counts })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        self.counts.process(batch, outputs, key, window_output)
    }

    /// A window's timer: it closes and its count is written.
    fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
        self.counts.on_timer(&timers, outputs, window_output)
    }
}

sluice_sdk::export!(WindowedCounts);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{Harness, Task};

    use super::*;

    fn harness() -> Harness {
        Task::new()
            .store(STORE)
            .processor::<WindowedCounts>(&[("size_ms", "1000"), ("grace_ms", "500")])
            .unwrap()
    }

    fn view(key: &str, timestamp: i64) -> Record {
        Record::new("{}").with_key(key).with_timestamp(timestamp)
    }

    #[test]
    fn a_window_is_written_once_when_stream_time_passes_its_end_and_grace() {
        let mut harness = harness();
        let outputs = harness
            .run(vec![view("ann", 100), view("bob", 200), view("ann", 900)])
            .unwrap();
        assert!(outputs.is_empty(), "nothing before the window closes");
        assert_eq!(harness.open_windows(), Some(2), "ann's and bob's");
        // 800 arrives after 1_400, but within the grace of [0, 1000).
        let outputs = harness
            .run(vec![view("ann", 1_400), view("ann", 800)])
            .unwrap();
        assert!(outputs.is_empty());
        let outputs = harness.run(vec![view("bob", 1_500)]).unwrap();
        let counts: Vec<WindowCount> = outputs.iter().map(|o| o.json().unwrap()).collect();
        assert_eq!(
            counts,
            [
                WindowCount {
                    key: "ann".into(),
                    window_start: 0,
                    window_end: 1_000,
                    count: 3
                },
                WindowCount {
                    key: "bob".into(),
                    window_start: 0,
                    window_end: 1_000,
                    count: 1
                },
            ]
        );
        assert!(outputs.iter().all(|o| o.timestamp == 1_000));
        assert_eq!(harness.open_windows(), Some(2), "ann's and bob's next ones");
    }

    #[test]
    fn records_later_than_the_grace_are_dropped_and_counted() {
        let mut harness = harness();
        harness
            .run(vec![view("ann", 100), view("ann", 2_000)])
            .unwrap();
        let outputs = harness.run(vec![view("ann", 300)]).unwrap();
        assert!(outputs.is_empty());
        assert_eq!(harness.late_dropped(), 1);
    }
}
