//! The harness's rules, one test each: the broker implements the same, so
//! a plugin tested here behaves the same deployed.

use super::*;
use crate::clock;
use crate::state::Store;
use crate::{Error, NoConfig, Output, Result};

/// Obeys commands in record values: `put:K=V`, `timer:K@AT`,
/// `ptimer:K@AT`, `late`, `fail`, `panic`, `time` (emits the stream time).
/// Its timers emit `fired:K@AT`; key `chain` schedules a due `chained`
/// timer, `bad` fails, `fwd` forwards.
struct Probe {
    store: Store,
}

fn split_at_sign(text: &str) -> (&str, i64) {
    let (key, at) = text.split_once('@').expect("K@AT");
    (key, at.parse().expect("AT"))
}

impl Probe {
    fn command(&self, record: &crate::Record) -> Result<Option<Output>> {
        let text = record.value_str()?;
        let (verb, rest) = text.split_once(':').unwrap_or((text, ""));
        match verb {
            "put" => {
                let (key, value) = rest.split_once('=').expect("K=V");
                self.store.put(key.as_bytes(), value.as_bytes());
            }
            "timer" | "ptimer" => {
                let domain = if verb == "timer" {
                    Domain::EventTime
                } else {
                    Domain::ProcessingTime
                };
                let (key, at) = split_at_sign(rest);
                clock::schedule(domain, key.as_bytes(), at);
            }
            "late" => clock::count_late(1),
            "windowed" => {
                Store::open_windowed("s")?;
            }
            "fail" => return Err(Error::new("told to fail")),
            "panic" => panic!("told to panic"),
            "time" => {
                let time = clock::stream_time().map_or("none".to_owned(), |t| t.to_string());
                return Ok(Some(Output::value(time)));
            }
            other => return Err(Error::new(format!("unknown command {other}"))),
        }
        Ok(None)
    }
}

impl Processor for Probe {
    type Config = NoConfig;

    fn init(_: NoConfig) -> Result<Self> {
        Ok(Self {
            store: Store::open("s")?,
        })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        for (source, record) in batch.indexed() {
            let output = self
                .command(&record)
                .map_err(|error| ProcessError::at(source, error))?;
            if let Some(output) = output {
                outputs.push(source, output);
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
        for (source, timer) in (0_u32..).zip(timers) {
            let key = String::from_utf8(timer.key).unwrap();
            match key.as_str() {
                "bad" => return Err(ProcessError::at(source, "bad timer")),
                "fwd" => outputs.forward(source),
                "chain" => clock::schedule(timer.domain, b"chained", timer.at),
                _ => {}
            }
            self.store.put(format!("fired-{key}").as_bytes(), b"1");
            outputs.push(source, Output::value(format!("fired:{key}@{}", timer.at)));
        }
        Ok(())
    }
}

fn probe() -> Harness {
    Task::new().store("s").processor::<Probe>(&[]).unwrap()
}

fn at(value: &str, timestamp: i64) -> Record {
    Record::new(value).with_timestamp(timestamp)
}

/// The message `run` panicked with.
fn trapped(run: impl FnOnce()) -> String {
    let panic = panic::catch_unwind(AssertUnwindSafe(run)).unwrap_err();
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

fn values(outputs: &[TestOutput]) -> Vec<&str> {
    outputs
        .iter()
        .map(|output| output.value_str().unwrap())
        .collect()
}

/// A store opened as windowed counts as open windows; it stays so after
/// the call that opened it fails (its writes do not), and the
/// repartition task's instance opens it so too.
#[test]
fn open_windows_are_the_entries_of_stores_opened_as_windowed() {
    let mut harness = probe();
    harness.run(vec![Record::new("put:a=1")]).unwrap();
    assert_eq!(harness.open_windows(), None, "opened plainly in init");
    let failed = harness.run(vec![
        Record::new("windowed"),
        Record::new("put:b=1"),
        Record::new("fail"),
    ]);
    assert!(failed.is_err());
    assert_eq!(harness.open_windows(), Some(1), "a's entry; b rolled back");
    harness.run(vec![Record::new("put:c=1")]).unwrap();
    assert_eq!(harness.open_windows(), Some(2));
    assert_eq!(
        harness.in_repartition_task(|task| task.open_windows()),
        Some(0)
    );
}

#[test]
fn undeclared_stores_fail_init_with_a_message() {
    let error = Task::new().processor::<Probe>(&[]).unwrap_err();
    assert!(matches!(error, TestError::Init(_)), "{error}");
    assert!(error.message().contains("--store s"), "{error}");
}

#[test]
fn stream_time_advances_per_record_whatever_the_batches() {
    let records = || {
        vec![
            at("time", 10),
            at("time", 5),
            at("time", 30),
            at("time", 20),
        ]
    };
    let mut whole = probe();
    assert_eq!(
        values(&whole.run(records()).unwrap()),
        ["10", "10", "30", "30"]
    );
    assert_eq!(whole.stream_time(), Some(30));

    let mut one_by_one = probe();
    let mut seen = Vec::new();
    for record in records() {
        let outputs = one_by_one.run(vec![record]).unwrap();
        seen.push(outputs[0].value_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["10", "10", "30", "30"]);
    assert_eq!(one_by_one.stream_time(), Some(30));
}

#[test]
fn due_timers_fire_after_the_batch_in_at_key_order_until_none_is_due() {
    let mut harness = probe();
    let outputs = harness
        .run(vec![
            at("timer:b@5", 1),
            at("timer:a@5", 1),
            at("timer:chain@3", 1),
            at("timer:later@50", 1),
            at("time", 10),
        ])
        .unwrap();
    // The batch's one output, then: round 1 (chain@3, a@5, b@5), round 2
    // (chained@3, scheduled by round 1 and already due).
    assert_eq!(
        values(&outputs),
        [
            "10",
            "fired:chain@3",
            "fired:a@5",
            "fired:b@5",
            "fired:chained@3"
        ]
    );
    let sources: Vec<u32> = outputs[1..].iter().map(|output| output.source).collect();
    assert_eq!(
        sources,
        [0, 1, 2, 0],
        "a timer output's source indexes its call's timers"
    );
    assert!(outputs[0].timer.is_none());
    assert_eq!(outputs[2].timer.as_ref().unwrap().key, b"a");
    assert_eq!(
        outputs[2].timestamp, 5,
        "an unset timestamp is the timer's at"
    );
    let left: Vec<i64> = harness.timers().iter().map(|timer| timer.at).collect();
    assert_eq!(left, [50], "fired timers are removed");
    assert!(
        harness.run(vec![at("time", 9)]).unwrap().len() == 1,
        "each fires once"
    );
}

#[test]
fn processing_time_timers_follow_the_wall_clock() {
    let mut harness = Task::new()
        .store("s")
        .wall_clock_ms(1_000)
        .processor::<Probe>(&[])
        .unwrap();
    let outputs = harness.run(vec![at("ptimer:p@1500", 2_000)]).unwrap();
    assert!(
        outputs.is_empty(),
        "stream time does not fire processing-time timers"
    );
    assert!(harness.advance_wall_clock(499).unwrap().is_empty());
    let fired = harness.advance_wall_clock(1).unwrap();
    assert_eq!(values(&fired), ["fired:p@1500"]);
    assert_eq!(
        fired[0].timer.as_ref().unwrap().domain,
        Domain::ProcessingTime
    );
    assert_eq!(harness.wall_clock_ms(), 1_500);
}

#[test]
fn a_failing_batch_leaves_no_trace() {
    let mut harness = probe();
    harness.run(vec![at("put:k=old", 1)]).unwrap();
    let batch = |failing| {
        vec![
            at("put:k=new", 2),
            at("timer:t@100", 2),
            at("late", 2),
            at(failing, 50),
        ]
    };
    for failing in ["fail", "panic"] {
        if failing == "fail" {
            let error = harness.run(batch(failing)).unwrap_err();
            assert_eq!(error.record_index(), Some(3), "{error}");
        } else {
            let message = trapped(|| drop(harness.run(batch(failing))));
            assert_eq!(message, "told to panic");
        }
        assert_eq!(harness.get("s", b"k").as_deref(), Some(&b"old"[..]));
        assert!(harness.timers().is_empty());
        assert_eq!(harness.late_dropped(), 0);
        assert_eq!(
            harness.stream_time(),
            Some(1),
            "a failed batch does not move time"
        );
    }
    harness.run(vec![at("late", 3), at("late", 3)]).unwrap();
    assert_eq!(harness.late_dropped(), 2);
}

#[test]
fn a_failing_timer_call_is_rolled_back_and_stays_due() {
    let mut harness = probe();
    let error = harness
        .run(vec![at("timer:a@1", 1), at("timer:bad@2", 2)])
        .unwrap_err();
    assert_eq!(error.record_index(), Some(1), "{error}");
    assert_eq!(harness.get("s", b"fired-a"), None, "rolled back");
    assert_eq!(harness.timers().len(), 2, "both still due");
    assert_eq!(harness.stream_time(), Some(2), "the batch itself succeeded");
}

#[test]
fn timers_cannot_forward() {
    let mut harness = probe();
    let error = harness.run(vec![at("timer:fwd@1", 1)]).unwrap_err();
    assert!(error.message().contains("forward"), "{error}");
    assert_eq!(
        harness.get("s", b"fired-fwd"),
        None,
        "a refused call is rolled back"
    );
    assert_eq!(harness.timers().len(), 1, "and its timer stays due");
}

#[test]
fn tables_are_read_only_stores_the_test_fills() {
    struct Lookup;
    impl Processor for Lookup {
        type Config = NoConfig;
        fn init(_: NoConfig) -> Result<Self> {
            Ok(Lookup)
        }
        fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
            let rates = crate::state::Table::<String, f64>::open("rates")?;
            for (source, record) in batch.indexed() {
                let rate = rates.get(record.value_str()?)?;
                outputs.push(source, Output::value(format!("{rate:?}")));
                if rate.is_none() {
                    Store::open("rates")?.put(b"x", b"1");
                }
            }
            Ok(())
        }
    }
    let mut harness = Task::new()
        .table("rates", [("eur", 1.1)])
        .processor::<Lookup>(&[])
        .unwrap();
    let outputs = harness.run(vec![Record::new("eur")]).unwrap();
    assert_eq!(values(&outputs), ["Some(1.1)"]);
    let message = trapped(|| drop(harness.run(vec![Record::new("usd")])));
    assert!(message.contains("read-only table"), "{message}");
    assert!(!harness.entries("rates").contains_key(&b"x"[..]));
}

/// Counts views per page: re-keys by page, then counts what comes back.
struct PageViews;

impl Processor for PageViews {
    type Config = crate::NoConfig;

    fn init(_: crate::NoConfig) -> crate::Result<Self> {
        Ok(Self)
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        use crate::repartition::{self, Step};
        match repartition::step(&batch) {
            // The value is the page.
            Step::Input => repartition::group_by(batch, outputs, |record: &Record| {
                Ok::<_, Error>(record.value.clone())
            }),
            Step::Repartitioned => {
                let store = crate::state::Store::open("views")?;
                for (source, record) in batch.indexed() {
                    let key = record.key.clone().unwrap_or_default();
                    let count = store.add(&key, 1);
                    let value = format!("{}={count}@{}", record.key_str()?, record.offset);
                    outputs.push(source, crate::Output::value(value).key(key));
                }
                Ok(())
            }
        }
    }
}

#[test]
fn outputs_to_the_repartition_topic_come_back_as_a_later_batch() {
    let mut harness = Task::new()
        .store("views")
        .processor::<PageViews>(&[])
        .unwrap();
    let views = |pages: &[&str]| -> Vec<Record> {
        pages
            .iter()
            .map(|page| Record::new(*page).with_key("user").with_timestamp(5))
            .collect()
    };
    let outputs = harness.run(views(&["/a", "/b", "/a"])).unwrap();
    let values: Vec<&str> = outputs.iter().map(|o| o.value_str().unwrap()).collect();
    assert_eq!(values, ["/a=1@0", "/b=1@1", "/a=2@2"]);
    assert!(outputs
        .iter()
        .all(|o| o.topic.is_none() && o.timestamp == 5));
    let outputs = harness.run(views(&["/b"])).unwrap();
    assert_eq!(outputs[0].value_str(), Ok("/b=2@3"), "offsets count on");
    assert_eq!(harness.get("views", b"/a"), None, "the input task's state");
    let counted = harness.in_repartition_task(|task| task.get("views", b"/a"));
    assert_eq!(
        counted.as_deref(),
        Some(&b"2"[..]),
        "the repartition task's"
    );
    assert_eq!(
        harness.in_repartition_task(|task| task.stream_time()),
        Some(5)
    );
}

#[test]
fn an_output_to_the_repartition_topic_needs_a_key() {
    struct NoKey;
    impl Processor for NoKey {
        type Config = crate::NoConfig;
        fn init(_: crate::NoConfig) -> crate::Result<Self> {
            Ok(Self)
        }
        fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
            for (source, _) in batch.indexed() {
                outputs.push(
                    source,
                    crate::Output::value("v").topic(crate::repartition::TOPIC),
                );
            }
            Ok(())
        }
    }
    let mut harness = Task::new().processor::<NoKey>(&[]).unwrap();
    let error = harness
        .run(vec![Record::new("a"), Record::new("b")])
        .unwrap_err();
    assert_eq!(error.record_index(), Some(0));
    assert!(error.message().contains("needs a key"), "{error}");
}
