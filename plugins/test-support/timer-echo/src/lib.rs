//! `timer-echo` (test-only): for every record (its key unique), schedules
//! an event-time timer at its timestamp + `event_delay_ms` and a
//! processing-time timer at the wall clock + `processing_delay_ms`, and
//! writes one record per timer when it fires: key = the record's key,
//! value `{"domain":"event"|"processing","key":…,"at":…}`. A test counts
//! them: each timer must fire exactly once, across crashes.
//!
//! With `fail_key`, the call firing that key's timers fails (with no index,
//! so the broker must narrow the call down to find the timer). With
//! `sleep_key`, the call firing that key's timers first sleeps
//! `sleep_seconds` (a call for the broker to interrupt).

use serde::Deserialize;
use sluice_sdk::clock::{self, Domain};
use sluice_sdk::{Batch, Output, Outputs, ProcessError, Processor, Result, Timer};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    event_delay_ms: i64,
    processing_delay_ms: i64,
    #[serde(default)]
    fail_key: Option<String>,
    #[serde(default)]
    sleep_key: Option<String>,
    #[serde(default)]
    sleep_seconds: u64,
}

pub struct TimerEcho {
    config: Config,
}

impl Processor for TimerEcho {
    type Config = Config;

    fn init(config: Config) -> Result<Self> {
        Ok(Self { config })
    }

    fn process(&mut self, batch: Batch, _outputs: &mut Outputs) -> Result<(), ProcessError> {
        let now = clock::wall_clock_ms();
        for (_, record) in batch.indexed() {
            let key = record.key.clone().unwrap_or_default();
            let event_at = record.timestamp + self.config.event_delay_ms;
            clock::schedule(Domain::EventTime, &key, event_at);
            clock::schedule(
                Domain::ProcessingTime,
                &key,
                now + self.config.processing_delay_ms,
            );
        }
        Ok(())
    }

    fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
        if let Some(sleep) = &self.config.sleep_key {
            if timers.iter().any(|timer| timer.key == sleep.as_bytes()) {
                std::thread::sleep(std::time::Duration::from_secs(self.config.sleep_seconds));
            }
        }
        if let Some(fail) = &self.config.fail_key {
            if timers.iter().any(|timer| timer.key == fail.as_bytes()) {
                return Err(ProcessError::new(format!("refusing the timers of {fail}")));
            }
        }
        for (source, timer) in timers.into_iter().enumerate() {
            let domain = match timer.domain {
                Domain::EventTime => "event",
                Domain::ProcessingTime => "processing",
            };
            let key = String::from_utf8_lossy(&timer.key).into_owned();
            let value = serde_json::json!({"domain": domain, "key": key, "at": timer.at});
            let output = Output::json(&value)
                .map_err(|e| ProcessError::at(source as u32, e))?
                .key(timer.key);
            outputs.push(source as u32, output);
        }
        Ok(())
    }
}

sluice_sdk::export!(TimerEcho);
