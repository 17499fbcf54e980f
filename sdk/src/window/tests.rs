//! Windows through the test harness, under the broker's rules.

use serde::Deserialize;

use super::*;
use crate::aggregate::Count;
use crate::testing::{Harness, Task, TestOutput};
use crate::Processor;

#[derive(Deserialize)]
struct Config {
    size_ms: i64,
    #[serde(default)]
    advance_ms: Option<i64>,
    #[serde(default)]
    grace_ms: i64,
    #[serde(default)]
    emit: Emit,
    #[serde(default)]
    late_topic: Option<String>,
    /// `size_ms` is then the session gap.
    #[serde(default)]
    session: bool,
    /// `size_ms` is then the sliding windows' difference.
    #[serde(default)]
    sliding: bool,
}

enum Counter {
    Time(Windowed<Count>),
    Session(Sessions<Count>),
    Sliding(Sliding<Count>),
}

fn format(result: &WindowResult<u64>) -> Result<Output> {
    let key = String::from_utf8_lossy(&result.key);
    let final_mark = if result.is_final { " final" } else { "" };
    let text = format!(
        "{key} [{},{}) {}{final_mark}",
        result.window.start, result.window.end, result.aggregate
    );
    Ok(Output::value(text).timestamp(result.window.end))
}

fn extract(record: &Record) -> Result<Option<(Vec<u8>, ())>> {
    Ok(record.key.clone().map(|key| (key, ())))
}

impl Processor for Counter {
    type Config = Config;

    fn init(config: Config) -> Result<Self> {
        if config.sliding {
            let mut sliding = Sliding::new("w", config.size_ms, Count)?
                .grace_ms(config.grace_ms)
                .emit(config.emit);
            if let Some(topic) = config.late_topic {
                sliding = sliding.late_records_to(topic);
            }
            return Ok(Counter::Sliding(sliding));
        }
        if config.session {
            let mut sessions = Sessions::new("w", config.size_ms, Count)?
                .grace_ms(config.grace_ms)
                .emit(config.emit);
            if let Some(topic) = config.late_topic {
                sessions = sessions.late_records_to(topic);
            }
            return Ok(Counter::Session(sessions));
        }
        let windows = match config.advance_ms {
            Some(advance) => Windows::hopping(config.size_ms, advance)?,
            None => Windows::tumbling(config.size_ms)?,
        };
        let mut windowed = Windowed::new("w", windows, Count)?
            .grace_ms(config.grace_ms)
            .emit(config.emit);
        if let Some(topic) = config.late_topic {
            windowed = windowed.late_records_to(topic);
        }
        Ok(Counter::Time(windowed))
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        match self {
            Counter::Time(windowed) => windowed.process(batch, outputs, extract, format),
            Counter::Session(sessions) => sessions.process(batch, outputs, extract, format),
            Counter::Sliding(sliding) => sliding.process(batch, outputs, extract, format),
        }
    }

    fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
        match self {
            Counter::Time(windowed) => windowed.on_timer(&timers, outputs, format),
            Counter::Session(sessions) => sessions.on_timer(&timers, outputs, format),
            Counter::Sliding(sliding) => sliding.on_timer(&timers, outputs, format),
        }
    }
}

fn counter(config: &[(&str, &str)]) -> Harness {
    Task::new().store("w").processor::<Counter>(config).unwrap()
}

fn rec(key: &str, timestamp: i64) -> Record {
    Record::new("x").with_key(key).with_timestamp(timestamp)
}

fn texts(outputs: &[TestOutput]) -> Vec<String> {
    outputs
        .iter()
        .map(|output| match &output.topic {
            Some(topic) => format!("{topic}: {}", output.value_str().unwrap()),
            None => output.value_str().unwrap().to_owned(),
        })
        .collect()
}

/// Runs `records` as one batch, then one record per batch, and checks that
/// both give the same outputs and late count; returns them.
fn same_whatever_the_batches(config: &[(&str, &str)], records: &[Record]) -> (Vec<String>, u64) {
    let mut whole = counter(config);
    let together = texts(&whole.run(records.to_vec()).unwrap());
    let mut split = counter(config);
    let mut apart = Vec::new();
    for record in records {
        apart.extend(texts(&split.run(vec![record.clone()]).unwrap()));
    }
    let sorted = |mut texts: Vec<String>| {
        texts.sort();
        texts
    };
    // Timers fire at batch ends, so the order differs; the set must not.
    assert_eq!(sorted(together.clone()), sorted(apart));
    assert_eq!(whole.late_dropped(), split.late_dropped());
    assert_eq!(whole.entries("w"), split.entries("w"));
    (together, whole.late_dropped())
}

#[test]
fn the_batch_pass_sees_the_same_windows_as_containing() {
    let all = [
        Windows::tumbling(10).unwrap(),
        Windows::tumbling(60_000).unwrap(),
        Windows::tumbling(i64::MAX).unwrap(),
        Windows::hopping(10, 5).unwrap(),
        Windows::hopping(10, 3).unwrap(),
    ];
    let times = [
        i64::MIN,
        i64::MIN + 1,
        i64::MIN + 9,
        -11,
        -10,
        -1,
        0,
        1,
        25,
        i64::MAX - 1,
        i64::MAX,
    ];
    for windows in all {
        for time in times {
            let mut seen = Vec::new();
            windows.each_containing(time, |window| seen.push(window));
            assert_eq!(seen, windows.containing(time), "{windows:?} at {time}");
        }
    }
}

#[test]
fn windows_containing_a_timestamp() {
    let tumbling = Windows::tumbling(10).unwrap();
    assert_eq!(tumbling.containing(25), [Window { start: 20, end: 30 }]);
    assert_eq!(tumbling.containing(-1), [Window { start: -10, end: 0 }]);
    let hopping = Windows::hopping(10, 5).unwrap();
    let starts: Vec<i64> = hopping.containing(12).iter().map(|w| w.start).collect();
    assert_eq!(starts, [5, 10]);
    let starts: Vec<i64> = hopping.containing(10).iter().map(|w| w.start).collect();
    assert_eq!(starts, [5, 10]);
    assert!(Windows::hopping(10, 0).is_err());
    assert!(Windows::hopping(10, 20).is_err());
    assert!(
        Windows::hopping(10_000, 1).is_err(),
        "10,000 windows per record"
    );
    assert!(Windows::tumbling(0).is_err());
}

#[test]
fn updates_count_per_key_and_window_in_the_windowed_layout() {
    let mut harness = counter(&[("size_ms", "10")]);
    let outputs = harness
        .run(vec![
            rec("a", 1),
            rec("b", 2),
            rec("a", 3),
            Record::new("no key"),
        ])
        .unwrap();
    assert_eq!(texts(&outputs), ["a [0,10) 1", "b [0,10) 1", "a [0,10) 2"]);
    assert_eq!(outputs[2].timestamp, 10);
    let a_first = key::encode_by_window(b"a", Window { start: 0, end: 10 });
    assert_eq!(harness.get("w", &a_first).as_deref(), Some(&b"2"[..]));
    let next = harness.run(vec![rec("a", 12)]).unwrap();
    assert_eq!(texts(&next), ["a [10,20) 1"]);
    assert_eq!(harness.get("w", &a_first), None, "closed at 10 + grace 0");
    assert!(harness.run(vec![rec("a", 4)]).unwrap().is_empty());
    assert_eq!(harness.late_dropped(), 1);
}

#[test]
fn final_results_once_at_end_plus_grace_then_state_is_gone() {
    let mut harness = counter(&[("size_ms", "10"), ("grace_ms", "5"), ("emit", "final")]);
    assert!(harness
        .run(vec![rec("a", 1), rec("a", 9), rec("b", 3)])
        .unwrap()
        .is_empty());
    assert!(
        harness.run(vec![rec("c", 14)]).unwrap().is_empty(),
        "10 + 5 not reached"
    );
    let closed = harness.run(vec![rec("c", 15)]).unwrap();
    assert_eq!(texts(&closed), ["a [0,10) 2 final", "b [0,10) 1 final"]);
    assert!(closed
        .iter()
        .all(|output| output.timer.is_some() && output.timestamp == 10));
    let left: Vec<_> = harness.entries("w").into_keys().collect();
    assert_eq!(
        left,
        [key::encode_by_window(b"c", Window { start: 10, end: 20 })]
    );
    assert_eq!(harness.timers().len(), 1);
    assert_eq!(
        harness.open_windows(),
        Some(1),
        "the windowed store's entries"
    );
}

#[test]
fn one_timer_closes_a_window_of_many_keys_a_page_at_a_time_each_key_once() {
    let mut harness = counter(&[("size_ms", "10"), ("emit", "final")]);
    let keys = 3 * CLOSE_PAGE as usize + 7;
    let records: Vec<Record> = (0..keys).map(|i| rec(&format!("k{i}"), 5)).collect();
    assert!(harness.run(records).unwrap().is_empty());
    // Plus [10,20)'s: one timer a window, not one a key.
    assert!(
        harness
            .run(vec![rec("k0", 1), rec("late", 12)])
            .unwrap()
            .len()
            == keys
    );
    assert_eq!(harness.entries("w").len(), 1, "only late's [10,20) is left");
    let timers = harness.timers();
    assert_eq!(timers.len(), 1, "{timers:?}");
    assert_eq!(timers[0].at, 20);
    let mut harness = counter(&[("size_ms", "10"), ("emit", "final")]);
    let records: Vec<Record> = (0..keys).map(|i| rec(&format!("k{i}"), 5)).collect();
    harness.run(records).unwrap();
    let mut closed = texts(&harness.run(vec![rec("late", 12)]).unwrap());
    closed.sort();
    let mut expected: Vec<String> = (0..keys).map(|i| format!("k{i} [0,10) 1 final")).collect();
    expected.sort();
    assert_eq!(closed, expected, "every key's final result, once");
}

#[test]
fn hopping_windows_close_start_by_start() {
    let mut harness = counter(&[("size_ms", "20"), ("advance_ms", "10")]);
    let records: Vec<Record> = (0..CLOSE_PAGE + 1)
        .map(|i| rec(&format!("k{i}"), 15))
        .collect();
    harness.run(records).unwrap();
    // [0,20) and [10,30) for every key; two timers.
    assert_eq!(harness.entries("w").len(), 2 * (CLOSE_PAGE as usize + 1));
    assert_eq!(harness.timers().len(), 2);
    harness.run(vec![rec("x", 20)]).unwrap();
    let starts: std::collections::BTreeSet<i64> = harness
        .entries("w")
        .keys()
        .map(|k| key::decode(k).unwrap().1.start)
        .collect();
    assert_eq!(starts, [10, 20].into(), "[0,20) closed at 20, whole");
    assert_eq!(harness.entries("w").len(), CLOSE_PAGE as usize + 1 + 2);
}

/// windowed counts as an SDK before the by-window layout kept them (a
/// key's windows together, a timer each) until `upgraded`, then
/// [`Windowed`]'s.
struct Upgraded {
    counts: Windowed<Count>,
    upgraded: bool,
}

impl Processor for Upgraded {
    type Config = crate::NoConfig;

    fn init(_: crate::NoConfig) -> Result<Self> {
        let counts = Windowed::new("w", Windows::tumbling(10)?, Count)?.emit(Emit::Final);
        Ok(Upgraded {
            counts,
            upgraded: false,
        })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        if self.upgraded {
            return self.counts.process(batch, outputs, extract, format);
        }
        let store = crate::state::Store::open("w")?;
        for record in batch {
            let start = record.timestamp - record.timestamp.rem_euclid(10);
            let window = Window {
                start,
                end: start + 10,
            };
            let store_key = key::encode(record.key.as_deref().unwrap_or_default(), window);
            store.add(&store_key, 1);
            let mut timer = b"w\0".to_vec();
            timer.extend_from_slice(&store_key);
            clock::schedule(Domain::EventTime, &timer, window.end);
        }
        self.upgraded = true;
        Ok(())
    }

    fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
        self.counts.on_timer(&timers, outputs, format)
    }
}

#[test]
fn windows_kept_a_key_at_a_time_by_an_older_sdk_still_close() {
    let mut harness = Task::new().store("w").processor::<Upgraded>(&[]).unwrap();
    harness
        .run(vec![rec("a", 1), rec("b", 2), rec("a", 3)])
        .unwrap();
    assert_eq!(harness.timers().len(), 2);
    harness.run(vec![rec("c", 4)]).unwrap();
    let closed = harness.run(vec![rec("d", 10)]).unwrap();
    let mut texts = texts(&closed);
    texts.sort();
    assert_eq!(
        texts,
        ["a [0,10) 2 final", "b [0,10) 1 final", "c [0,10) 1 final"]
    );
    let left: Vec<_> = harness.entries("w").into_keys().collect();
    assert_eq!(
        left,
        [key::encode_by_window(b"d", Window { start: 10, end: 20 })]
    );
}

#[test]
fn late_records_are_counted_by_their_own_stream_time() {
    let config = [("size_ms", "10"), ("grace_ms", "2")];
    // The window [0,10) closes at 12: the record at 5 after 12 is late,
    // the one at 6 after 11 is not.
    let records = [
        rec("a", 1),
        rec("a", 11),
        rec("a", 6),
        rec("a", 12),
        rec("a", 5),
    ];
    let (outputs, late) = same_whatever_the_batches(&config, &records);
    assert_eq!(late, 1);
    assert_eq!(
        outputs,
        ["a [0,10) 1", "a [10,20) 1", "a [0,10) 2", "a [10,20) 2"]
    );
}

#[test]
fn late_records_can_go_to_a_topic_instead() {
    let mut harness = counter(&[("size_ms", "10"), ("late_topic", "late")]);
    let outputs = harness.run(vec![rec("a", 20), rec("a", 3)]).unwrap();
    assert_eq!(texts(&outputs), ["a [20,30) 1", "late: x"]);
    assert!(outputs[1].forwarded);
    assert_eq!(harness.late_dropped(), 0);
}

#[test]
fn hopping_records_update_every_open_window() {
    let config = [("size_ms", "10"), ("advance_ms", "5")];
    let records = [rec("a", 7), rec("a", 12), rec("a", 9)];
    let (outputs, late) = same_whatever_the_batches(&config, &records);
    assert_eq!(
        outputs,
        [
            "a [0,10) 1",
            "a [5,15) 1",
            "a [5,15) 2",
            "a [10,20) 1",
            // 9 is past [0,10)'s close (10 <= 12) but [5,15) is open.
            "a [5,15) 3",
        ]
    );
    assert_eq!(late, 0);
}

#[test]
fn update_mode_deletes_expired_windows() {
    let mut harness = counter(&[("size_ms", "10")]);
    harness.run(vec![rec("a", 1), rec("b", 2)]).unwrap();
    assert_eq!(harness.entries("w").len(), 2);
    let outputs = harness.run(vec![rec("a", 10)]).unwrap();
    assert_eq!(
        texts(&outputs),
        ["a [10,20) 1"],
        "no result emitted at close"
    );
    assert_eq!(harness.entries("w").len(), 1);
    assert_eq!(harness.open_windows(), Some(1));
}

#[test]
fn sessions_merge_and_close_after_gap_plus_grace() {
    let config = [
        ("session", "true"),
        ("size_ms", "10"),
        ("grace_ms", "20"),
        ("emit", "final"),
    ];
    let mut harness = counter(&config);
    // 0 and 15 are more than the gap apart: two sessions.
    assert!(harness
        .run(vec![rec("u", 0), rec("u", 15)])
        .unwrap()
        .is_empty());
    assert_eq!(harness.entries("w").len(), 2);
    // 8 is within the gap of both: one session [0, 15] of 3 records.
    assert!(harness.run(vec![rec("u", 8)]).unwrap().is_empty());
    let sessions: Vec<Window> = harness
        .entries("w")
        .keys()
        .map(|k| key::decode(k).unwrap().1)
        .collect();
    assert_eq!(sessions, [Window { start: 0, end: 15 }]);
    assert_eq!(
        harness.open_windows(),
        Some(1),
        "two sessions merged into one"
    );
    let timers: Vec<i64> = harness.timers().iter().map(|timer| timer.at).collect();
    assert_eq!(timers, [45], "the merged sessions' timers are cancelled");
    let outputs = harness.run(vec![rec("v", 50)]).unwrap();
    assert_eq!(texts(&outputs), ["u [0,15) 3 final"]);
    assert_eq!(harness.entries("w").len(), 1, "only v's session is left");
}

#[test]
fn sessions_drop_late_records_whatever_the_batches() {
    let config = [("session", "true"), ("size_ms", "10"), ("grace_ms", "5")];
    // 0 closes at 15. 3 after 20: 3 + 15 = 18 <= 20, late. 8 after 20:
    // not late (23 > 20), joins 0's session? It closed at 15 <= 20: no.
    let records = [rec("u", 0), rec("u", 20), rec("u", 3), rec("u", 8)];
    let (outputs, late) = same_whatever_the_batches(&config, &records);
    assert_eq!(late, 1);
    assert_eq!(outputs, ["u [0,0) 1", "u [20,20) 1", "u [8,8) 1"]);
}

/// A small deterministic generator (no dependency): xorshift64*.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

/// Everything a run leaves: outputs (sorted: timers fire at batch ends, so
/// their place in the list depends on the cuts), store, timers, late count.
fn run_cut(config: &[(&str, &str)], records: &[Record], cuts: &[usize]) -> (Vec<String>, String) {
    let mut harness = counter(config);
    let mut outputs = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain([&records.len()]) {
        outputs.extend(texts(&harness.run(records[start..end].to_vec()).unwrap()));
        start = end;
    }
    outputs.sort();
    let state = format!(
        "{:?} {:?} {}",
        harness.entries("w"),
        harness.timers(),
        harness.late_dropped()
    );
    (outputs, state)
}

#[test]
fn random_batch_cuts_never_change_the_results() {
    let configs: [&[(&str, &str)]; 6] = [
        &[
            ("sliding", "true"),
            ("size_ms", "5"),
            ("grace_ms", "3"),
            ("emit", "final"),
        ],
        &[("sliding", "true"), ("size_ms", "4")],
        &[("size_ms", "10"), ("grace_ms", "3"), ("emit", "final")],
        &[("size_ms", "10"), ("advance_ms", "4"), ("grace_ms", "2")],
        &[
            ("session", "true"),
            ("size_ms", "5"),
            ("grace_ms", "4"),
            ("emit", "final"),
        ],
        &[("session", "true"), ("size_ms", "3")],
    ];
    let mut random = Random(0x5eed);
    for config in configs {
        for _ in 0..20 {
            // Mostly increasing timestamps, with records up to 15 ms late.
            let mut clock = 0_i64;
            let records: Vec<Record> = (0..40)
                .map(|_| {
                    clock += random.below(4) as i64;
                    let timestamp = clock - random.below(16) as i64;
                    let key = ["a", "b", "c"][random.below(3) as usize];
                    rec(key, timestamp)
                })
                .collect();
            let whole = run_cut(config, &records, &[]);
            let one_by_one: Vec<usize> = (1..records.len()).collect();
            assert_eq!(whole, run_cut(config, &records, &one_by_one), "{config:?}");
            let mut cuts: Vec<usize> = (0..5).map(|_| random.below(40) as usize).collect();
            cuts.sort_unstable();
            assert_eq!(
                whole,
                run_cut(config, &records, &cuts),
                "{config:?} {cuts:?}"
            );
        }
    }
}

#[test]
fn sliding_windows_in_order() {
    let mut harness = counter(&[("sliding", "true"), ("size_ms", "10")]);
    // 0: its left window. 5: left [-5,5] holds 0 and 5; 0's right window
    // [1,11] opens with 5. 20: alone; 5's right window [6,16] stays empty.
    let outputs = harness
        .run(vec![rec("a", 0), rec("a", 5), rec("a", 20)])
        .unwrap();
    assert_eq!(
        texts(&outputs),
        ["a [-10,0) 1", "a [-5,5) 2", "a [1,11) 1", "a [10,20) 1"]
    );
    let last = key::encode(b"a", Window { start: 10, end: 20 });
    let slot: serde_json::Value = harness.get_json("w", &last).unwrap();
    assert_eq!(slot, serde_json::json!({"aggregate": 1, "latest": 20}));
    // Expired at end + difference + 2 (+ grace 0) <= 20: [-10,0] and
    // [-5,5]; [1,11] stays until 23.
    let starts: Vec<i64> = harness
        .entries("w")
        .keys()
        .map(|k| key::decode(k).unwrap().1.start)
        .collect();
    assert_eq!(starts, [1, 10]);
}

#[test]
fn sliding_windows_out_of_order_copy_their_contents() {
    let config = [("sliding", "true"), ("size_ms", "10"), ("grace_ms", "100")];
    let mut harness = counter(&config);
    harness.run(vec![rec("a", 0), rec("a", 8)]).unwrap();
    // 4 arrives late but within grace: it joins [-2,8] and [1,11], gets
    // its left window [-6,4] (0 and 4) and its right window [5,15]
    // (8, copied from [1,11] before 4 joined it).
    let outputs = harness.run(vec![rec("a", 4)]).unwrap();
    assert_eq!(
        texts(&outputs),
        ["a [-2,8) 3", "a [1,11) 2", "a [-6,4) 2", "a [5,15) 1"]
    );
}

/// What Kafka Streams' sliding windows hold for the records that are not
/// late: each record's left window, and its right window when another
/// record falls in it, with every such record counted.
fn sliding_oracle(records: &[Record], d: i64, grace: i64) -> Vec<String> {
    let mut stream_time = i64::MIN;
    let mut kept: Vec<(String, i64)> = Vec::new();
    for record in records {
        stream_time = stream_time.max(record.timestamp);
        if record.timestamp + 1 + grace > stream_time {
            kept.push((record.key_str().unwrap().to_owned(), record.timestamp));
        }
    }
    let mut windows = std::collections::BTreeSet::new();
    for (key, r) in &kept {
        windows.insert((key.clone(), r - d));
        let right = kept
            .iter()
            .any(|(k, o)| k == key && *o > *r && *o <= r + 1 + d);
        if right {
            windows.insert((key.clone(), r + 1));
        }
    }
    let mut expected: Vec<String> = windows
        .into_iter()
        .filter(|(_, start)| start + d + 1 + grace <= stream_time)
        .map(|(key, start)| {
            let count = kept
                .iter()
                .filter(|(k, t)| *k == key && (start..=start + d).contains(t))
                .count();
            format!("{key} [{start},{}) {count} final", start + d)
        })
        .collect();
    expected.sort();
    expected
}

#[test]
fn sliding_windows_match_kafka_streams_definition() {
    let mut random = Random(0xd1ff);
    for round in 0..200 {
        let (d, grace) = (1 + random.below(8) as i64, random.below(6) as i64);
        let mut clock = 0_i64;
        let records: Vec<Record> = (0..30)
            .map(|_| {
                clock += random.below(5) as i64;
                let timestamp = clock - random.below(10) as i64;
                rec(["a", "b"][random.below(2) as usize], timestamp)
            })
            .collect();
        let config = [
            ("sliding", "true"),
            ("size_ms", &d.to_string()),
            ("grace_ms", &grace.to_string()),
            ("emit", "final"),
        ];
        let (emitted, _) = run_cut(&config, &records, &[]);
        let expected = sliding_oracle(&records, d, grace);
        assert_eq!(
            emitted, expected,
            "round {round}, d {d}, grace {grace}: {records:?}"
        );
    }
}
