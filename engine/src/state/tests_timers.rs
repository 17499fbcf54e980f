//! A task's knowledge of its earliest timer (`timers::Earliest`): the
//! scans it saves and the answers it must not change.

use std::collections::BTreeSet;

use super::keys::Domain;
use super::task::MERGED_STEPS;
use super::tests::{below_from, open, task};

fn scans<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = MERGED_STEPS.with(std::cell::Cell::get);
    let result = f();
    (result, MERGED_STEPS.with(std::cell::Cell::get) - before)
}

/// A busy task asks every step whether timers are due and when the next
/// one is; while a minute's windows wait for their one due time, those
/// answers come without a scan, new windows' timers included.
#[test]
fn a_task_waiting_for_its_timers_asks_without_scanning() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut t = task(&db, "p", 0);
    t.schedule(Domain::EventTime, b"a", 60_000).unwrap();
    t.commit(b"m", false).unwrap();
    // The first questions scan (nothing known yet).
    let (due, steps) = scans(|| t.due_timers(Domain::EventTime, 1_000, 100).unwrap());
    assert!(due.is_empty());
    assert!(steps > 0);
    assert_eq!(t.next_timer(Domain::EventTime).unwrap(), Some(60_000));
    assert_eq!(t.next_timer(Domain::ProcessingTime).unwrap(), None);
    let (answers, steps) = scans(|| {
        let mut answers = Vec::new();
        for now in 1_001..1_100 {
            t.schedule(Domain::EventTime, format!("k{now}").as_bytes(), 60_000)
                .unwrap();
            answers.push((
                t.due_timers(Domain::EventTime, now, 100).unwrap().len(),
                t.due_timers(Domain::ProcessingTime, now, 100)
                    .unwrap()
                    .len(),
                t.next_timer(Domain::EventTime).unwrap(),
                t.next_timer(Domain::ProcessingTime).unwrap(),
            ));
            if now % 10 == 0 {
                t.commit(b"m", false).unwrap();
            }
        }
        answers
    });
    assert_eq!(steps, 0, "entries scanned while no timer was due");
    assert!(answers.iter().all(|a| *a == (0, 0, Some(60_000), None)));
    // An earlier timer is due when its time comes, and then the next.
    t.schedule(Domain::EventTime, b"early", 5_000).unwrap();
    assert_eq!(t.next_timer(Domain::EventTime).unwrap(), Some(5_000));
    assert!(t
        .due_timers(Domain::EventTime, 4_999, 10)
        .unwrap()
        .is_empty());
    let due = t.due_timers(Domain::EventTime, 5_000, 10).unwrap();
    assert_eq!(due.len(), 1);
    t.remove_timer(&due[0]).unwrap();
    assert_eq!(t.next_timer(Domain::EventTime).unwrap(), Some(60_000));
    assert_eq!(
        t.due_timers(Domain::EventTime, 60_000, 1_000)
            .unwrap()
            .len(),
        100
    );
}

/// Random schedules, cancels, fired and removed timers, in calls kept or
/// rolled back, commits, discards and restarts, against a model: every
/// due-timer and next-timer answer is the model's.
#[test]
fn timer_answers_among_random_work_match_a_model() {
    for seed in [1_u64, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let mut t = task(&db, "p", 0);
        let mut below = below_from(seed);
        let domains = [Domain::EventTime, Domain::ProcessingTime];
        let mut committed: BTreeSet<(u8, i64, Vec<u8>)> = BTreeSet::new();
        let mut model = committed.clone();
        let mut skipped = 0;
        for _ in 0..3_000 {
            t.savepoint();
            let before = model.clone();
            for _ in 0..=below(6) {
                let d = below(2) as usize;
                let domain = domains[d];
                let key = format!("k{}", below(12)).into_bytes();
                let at = below(40) as i64;
                match below(8) {
                    0..=2 => {
                        t.schedule(domain, &key, at).unwrap();
                        model.insert((d as u8, at, key));
                    }
                    3 => {
                        t.cancel(domain, &key, at).unwrap();
                        model.remove(&(d as u8, at, key));
                    }
                    4 | 5 => {
                        let now = below(45) as i64;
                        let limit = 1 + below(4) as usize;
                        let (due, steps) = scans(|| t.due_timers(domain, now, limit).unwrap());
                        skipped += u32::from(steps == 0);
                        let expected: Vec<_> = model
                            .iter()
                            .filter(|(md, mat, _)| *md == d as u8 && *mat <= now)
                            .take(limit)
                            .map(|(_, at, key)| (*at, key.clone()))
                            .collect();
                        let got: Vec<_> = due.iter().map(|t| (t.at, t.key.clone())).collect();
                        assert_eq!(got, expected, "seed {seed}: due at {now}");
                        if below(2) == 0 {
                            for timer in &due {
                                t.remove_timer(timer).unwrap();
                                model.remove(&(d as u8, timer.at, timer.key.clone()));
                            }
                        }
                    }
                    _ => {
                        let expected = model
                            .iter()
                            .find(|(md, _, _)| *md == d as u8)
                            .map(|(_, at, _)| *at);
                        assert_eq!(t.next_timer(domain).unwrap(), expected, "seed {seed}");
                    }
                }
            }
            match below(10) {
                0 => {
                    t.rollback();
                    model = before;
                }
                _ => t.release(),
            }
            match below(20) {
                0 => {
                    t.commit(b"m", false).unwrap();
                    committed = model.clone();
                }
                1 => {
                    t.discard();
                    model = committed.clone();
                }
                2 => {
                    t.commit(b"m", false).unwrap();
                    committed = model.clone();
                    t = task(&db, "p", 0);
                }
                _ => {}
            }
        }
        assert!(
            skipped > 100,
            "seed {seed}: only {skipped} answers without a scan"
        );
    }
}
