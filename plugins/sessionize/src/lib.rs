//! `sessionize`: session windows of activity per key (a user id, say),
//! emitted once when each session closes, in the store `sessions`.
//!
//! A key's records less than `gap_ms` apart form one session; a record
//! within the gap of two sessions merges them (Kafka Streams' session
//! windows). A session closes when stream time reaches its last record's
//! timestamp plus `gap_ms` plus `grace_ms`: it is then emitted and its
//! state deleted. A record that would only make a session already closed is
//! late: dropped and counted (`late_dropped`). Records with a null key are
//! skipped.
//!
//! Output: key = the record key; value
//! `{"key":"…","start":…,"end":…,"events":…}` where `start` and `end` are
//! the first and last record's timestamps (both included); timestamp = `end`.
//!
//! ```sh
//! sluice processor deploy visits --wasm target/wasm32-wasip2/plugin/sessionize.wasm \
//!     --input page-views --output visits --store sessions \
//!     --config gap_ms=1800000 --config grace_ms=60000
//! ```

use serde::{Deserialize, Serialize};
use sluice_sdk::aggregate::Count;
use sluice_sdk::window::{Emit, Sessions, WindowResult};
use sluice_sdk::{Batch, Output, Outputs, ProcessError, Processor, Record, Result, Timer};

/// The store sessions live in (deploy with `--store sessions`).
pub const STORE: &str = "sessions";

/// The `--config` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The inactivity gap that ends a session.
    gap_ms: i64,
    /// How long past its close a session still takes records.
    #[serde(default)]
    grace_ms: i64,
}

/// A closed session, as written.
#[derive(Debug, Serialize)]
struct Session<'a> {
    key: &'a str,
    start: i64,
    end: i64,
    events: u64,
}

fn output(result: &WindowResult<u64>) -> Result<Output> {
    let key = String::from_utf8_lossy(&result.key);
    let session = Session {
        key: &key,
        start: result.window.start,
        end: result.window.end,
        events: result.aggregate,
    };
    Ok(Output::json(&session)?
        .key(result.key.clone())
        .timestamp(result.window.end))
}

fn key(record: &Record) -> Result<Option<(Vec<u8>, ())>> {
    Ok(record.key.clone().map(|key| (key, ())))
}

/// The processor.
#[derive(Debug)]
pub struct Sessionize {
    sessions: Sessions<Count>,
}

impl Processor for Sessionize {
    type Config = Config;

    fn init(config: Config) -> Result<Self> {
        let sessions = Sessions::new(STORE, config.gap_ms, Count)?
            .grace_ms(config.grace_ms)
            .emit(Emit::Final);
        Ok(Self { sessions })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        self.sessions.process(batch, outputs, key, output)
    }

    fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
        self.sessions.on_timer(&timers, outputs, output)
    }
}

sluice_sdk::export!(Sessionize);

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use sluice_sdk::testing::{Harness, Task, TestOutput};

    use super::*;

    fn harness(config: &[(&str, &str)]) -> Harness {
        Task::new()
            .store(STORE)
            .processor::<Sessionize>(config)
            .unwrap()
    }

    fn view(user: &str, timestamp: i64) -> Record {
        Record::new("{}").with_key(user).with_timestamp(timestamp)
    }

    fn values(outputs: &[TestOutput]) -> Vec<Value> {
        outputs
            .iter()
            .map(|output| output.json().unwrap())
            .collect()
    }

    #[test]
    fn sessions_close_after_the_gap_and_are_emitted_once() {
        let mut sessions = harness(&[("gap_ms", "100")]);
        let quiet = sessions
            .run(vec![
                view("ann", 0),
                view("ann", 60),
                view("bob", 120),
                view("ann", 150),
            ])
            .unwrap();
        assert!(quiet.is_empty(), "nothing closed yet");
        // Stream time 250 closes ann's [0, 150] (at 250) and bob's [120, 120]
        // (at 220), in closing order.
        let closed = sessions.run(vec![view("cat", 250)]).unwrap();
        assert_eq!(
            values(&closed),
            [
                json!({"key": "bob", "start": 120, "end": 120, "events": 1}),
                json!({"key": "ann", "start": 0, "end": 150, "events": 3}),
            ]
        );
        assert_eq!((closed[1].key_str(), closed[1].timestamp), (Ok("ann"), 150));
        assert_eq!(
            sessions.entries(STORE).len(),
            1,
            "only cat's session is left"
        );
        assert!(sessions.run(vec![view("ann", 251)]).unwrap().is_empty());
    }

    #[test]
    fn a_record_between_two_sessions_merges_them() {
        let mut sessions = harness(&[("gap_ms", "100"), ("grace_ms", "1000")]);
        sessions
            .run(vec![view("ann", 0), view("ann", 180)])
            .unwrap();
        assert_eq!(sessions.entries(STORE).len(), 2);
        sessions.run(vec![view("ann", 90)]).unwrap();
        assert_eq!(sessions.entries(STORE).len(), 1);
        let closed = sessions.run(vec![view("bob", 1280)]).unwrap();
        assert_eq!(
            values(&closed),
            [json!({"key": "ann", "start": 0, "end": 180, "events": 3})]
        );
    }

    #[test]
    fn late_records_are_dropped_and_counted() {
        let mut sessions = harness(&[("gap_ms", "100"), ("grace_ms", "50")]);
        sessions.run(vec![view("ann", 1000)]).unwrap();
        // 800 + 100 + 50 <= 1000: its session would already be closed.
        sessions
            .run(vec![view("bob", 800), view("bob", 851)])
            .unwrap();
        assert_eq!(sessions.late_dropped(), 1);
        assert_eq!(sessions.entries(STORE).len(), 2);
    }
}
