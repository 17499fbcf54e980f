//! Event sourcing: the `projection` plugin applies account events to
//! per-account state and writes each account's state to a compacted topic,
//! exactly once across kill -9. Compaction then keeps the latest state per
//! account and removes what aborted transactions left, so even a
//! read_uncommitted reader sees only committed states.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kafka::KafkaClient;
use crate::processors::Pipeline;
use crate::transactions::{code, keyed_batch, BatchAttributes, RawProducer, TXN_VERSION};

const ACCOUNTS: usize = 12;

/// The events of one round: every account deposits `round + 1` cents
/// (opened in round 0; accounts 0..3 closed in the last round).
fn events(round: usize, last: bool) -> Vec<(String, String)> {
    let mut events = Vec::new();
    for account in 0..ACCOUNTS {
        let id = format!("acc-{account:02}");
        if round == 0 {
            events.push((
                id.clone(),
                format!(r#"{{"type":"opened","account":"{id}"}}"#),
            ));
        }
        events.push((
            id.clone(),
            format!(
                r#"{{"type":"deposited","account":"{id}","amount":{}}}"#,
                round + 1
            ),
        ));
        if last && account < 3 {
            events.push((
                id.clone(),
                format!(r#"{{"type":"closed","account":"{id}"}}"#),
            ));
        }
    }
    events
}

/// Latest value per key of `topic` (`None`: a tombstone), read with kcat
/// at `isolation`.
fn latest(
    pipeline: &Pipeline,
    topic: &str,
    isolation: &str,
) -> (BTreeMap<String, Option<String>>, usize) {
    let output = std::process::Command::new("kcat")
        .args([
            "-C",
            "-q",
            "-e",
            "-b",
            &pipeline.broker.kafka.to_string(),
            "-t",
            topic,
        ])
        .args([
            "-X",
            &format!("isolation.level={isolation}"),
            "-Z",
            "-f",
            "%k\t%S\t%s\n",
        ])
        .output()
        .expect("kcat");
    assert!(output.status.success());
    let mut latest = BTreeMap::new();
    let text = String::from_utf8(output.stdout).unwrap();
    for line in text.lines() {
        let mut fields = line.splitn(3, '\t');
        let key = fields.next().unwrap().to_string();
        let size: i64 = fields.next().unwrap().parse().unwrap();
        let value = fields.next().unwrap_or_default();
        latest.insert(key, (size >= 0).then(|| value.to_string()));
    }
    (latest, text.lines().count())
}

/// Deploys `projection` as `balances`, from `account-events` to
/// `balances` with store `accounts`, with `extra` arguments.
fn deploy_balances(pipeline: &Pipeline, extra: &[&str]) {
    let mut args = vec![
        "--input",
        "account-events",
        "--output",
        "balances",
        "--store",
        "accounts",
    ];
    args.extend_from_slice(extra);
    pipeline.deploy("balances", "projection", &args);
}

#[test]
fn projections_are_exact_under_kills_and_compaction_keeps_the_latest_committed_state() {
    let mut pipeline = Pipeline::start_with_config("[log]\nretention_check_interval_ms = 100\n");
    pipeline.create_topic("account-events", 2);
    let mut client = KafkaClient::connect(pipeline.broker.kafka);
    let (code, message) = client.create_topic(
        "balances",
        2,
        &[("cleanup.policy", "compact"), ("segment.bytes", "2000")],
    );
    assert_eq!(code, 0, "{message:?}");
    deploy_balances(&pipeline, &["--commit-interval-ms", "20"]);
    let rounds = 10;
    let mut total = 0;
    for round in 0..rounds {
        let events = events(round, round == rounds - 1);
        total += events.len() as u64;
        let pairs: Vec<(Option<&str>, &str)> = events
            .iter()
            .map(|(k, v)| (Some(k.as_str()), v.as_str()))
            .collect();
        pipeline.produce("account-events", &pairs);
        if round % 3 == 1 {
            pipeline.restart("KILL");
        }
    }
    // The reference: every account's balance is 1 + 2 + … + rounds.
    let balance = rounds * (rounds + 1) / 2;
    let mut reference: BTreeMap<String, Option<Value>> = BTreeMap::new();
    for account in 0..ACCOUNTS {
        let id = format!("acc-{account:02}");
        let state = (account >= 3).then(|| {
            serde_json::json!({"account": id, "balance": balance, "status": "open", "events": rounds + 1})
        });
        reference.insert(id, state);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = pipeline.status("balances");
        let (committed, _) = latest(&pipeline, "balances", "read_committed");
        let parsed: BTreeMap<String, Option<Value>> = committed
            .into_iter()
            .map(|(k, v)| (k, v.map(|v| serde_json::from_str(&v).unwrap())))
            .collect();
        if status["lag"] == 0 && parsed == reference {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{parsed:#?} != {reference:#?}\n{status:#}"
        );
        super::pause(100);
    }
    // The query API agrees (a closed account is gone).
    let (code, answer) = super::get_json(
        &pipeline,
        "/v1/processors/balances/stores/accounts/keys/acc-07",
    );
    assert_eq!(code, 200);
    assert_eq!(answer["value"]["balance"].as_u64(), Some(balance as u64));
    let (code, _) = super::get_json(
        &pipeline,
        "/v1/processors/balances/stores/accounts/keys/acc-01",
    );
    assert_eq!(code, 404);
    // Compaction: closed segments end up with one record per account, and
    // a read_uncommitted reader, which sees aborted batches until
    // compaction removes them, reads only committed states.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (uncommitted, records) = latest(&pipeline, "balances", "read_uncommitted");
        let parsed: BTreeMap<String, Option<Value>> = uncommitted
            .into_iter()
            .map(|(k, v)| (k, v.map(|v| serde_json::from_str(&v).unwrap())))
            .collect();
        // Every state written was total events over the accounts; what
        // stays is about one per account (plus the active segments).
        if parsed == reference && (records as u64) < total / 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted: {records} records left of {total}"
        );
        super::pause(200);
    }
}

/// A crash after a transaction's outputs are durable and before its
/// commit leaves aborted states in the projection topic (a read_uncommitted
/// reader reads them, a read_committed one does not); their redo writes
/// the same keys again. A transactional producer's aborted state of a key
/// nothing writes again is the latest record of its key. Once the topic
/// is compacted, both are gone: a read_uncommitted reader reads exactly
/// what a read_committed one does, the latest committed state per account.
#[test]
fn compaction_drops_the_states_a_crash_left_aborted() {
    let mut pipeline = Pipeline::start_with_config("[log]\nretention_check_interval_ms = 100\n");
    pipeline.create_topic("account-events", 1);
    let mut client = KafkaClient::connect(pipeline.broker.kafka);
    // Not compacted yet, so the aborted states can be seen first.
    let (code, message) = client.create_topic("balances", 1, &[("segment.bytes", "2000")]);
    assert_eq!(code, 0, "{message:?}");
    let crash = [("SLUICE_TEST_CRASH", "after-outputs-durable")];
    pipeline.restart_after_with_env(&crash, |_| {});
    deploy_balances(&pipeline, &["--commit-interval-ms", "20"]);
    // Paused while the first round is written, so its outputs are one
    // transaction's, which the crash leaves open.
    pipeline.sluice_ok(&["processor", "pause", "balances"]);
    let rounds = 8;
    let mut produced = 0;
    let mut produce = |pipeline: &Pipeline, round: usize| {
        let events = events(round, round == rounds - 1);
        produced += events.len() as i64;
        let pairs: Vec<(Option<&str>, &str)> = events
            .iter()
            .map(|(k, v)| (Some(k.as_str()), v.as_str()))
            .collect();
        pipeline.produce("account-events", &pairs);
        produced
    };
    produce(&pipeline, 0);
    // The answer may not come: the broker may abort first.
    let _ = pipeline.sluice(&["processor", "resume", "balances"]);
    let exit = pipeline.restart_after_exit(Duration::from_secs(60));
    assert!(
        !exit.success(),
        "the broker should have aborted at the crash point"
    );
    let mut total = 0;
    for round in 1..rounds / 2 {
        total = produce(&pipeline, round);
        super::wait_settled(&pipeline, "balances", total);
    }
    let (committed, committed_records) = latest(&pipeline, "balances", "read_committed");
    let (uncommitted, uncommitted_records) = latest(&pipeline, "balances", "read_uncommitted");
    assert_eq!(uncommitted, committed, "the redone states are the same");
    assert!(
        uncommitted_records > committed_records,
        "the crash left aborted states: {uncommitted_records} records read_uncommitted, \
         {committed_records} read_committed"
    );
    // An aborted state of an account the projection never writes (on a
    // new connection: the broker restarted).
    let mut client = KafkaClient::connect(pipeline.broker.kafka);
    let intruder = RawProducer::init(&mut client, "intruder", 60_000);
    let added = intruder.add_partitions(&mut client, &[("balances", 0)], TXN_VERSION);
    assert_eq!(added, [code::NONE]);
    let records = keyed_batch(
        (intruder.producer_id, intruder.epoch),
        BatchAttributes {
            transactional: true,
            control: false,
        },
        0,
        &[(Some("acc-99"), r#"{"account":"acc-99","balance":1000000}"#)],
    );
    let written = crate::transactions::produce(
        &mut client,
        Some(&intruder.transactional_id),
        "balances",
        0,
        records,
    );
    assert_eq!(written, code::NONE);
    assert_eq!(intruder.end(&mut client, false, TXN_VERSION), code::NONE);
    let (uncommitted, _) = latest(&pipeline, "balances", "read_uncommitted");
    assert!(uncommitted.contains_key("acc-99"), "{uncommitted:?}");
    // More rounds, so the aborted records are in closed segments.
    for round in rounds / 2..rounds {
        total = produce(&pipeline, round);
        super::wait_settled(&pipeline, "balances", total);
    }
    let (committed, committed_records) = latest(&pipeline, "balances", "read_committed");
    assert!(!committed.contains_key("acc-99"));
    let outputs = committed_records;
    pipeline.sluice_ok(&[
        "topic",
        "alter-config",
        "balances",
        "--set",
        "cleanup.policy=compact",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (now_committed, committed_records) = latest(&pipeline, "balances", "read_committed");
        let (now_uncommitted, uncommitted_records) =
            latest(&pipeline, "balances", "read_uncommitted");
        assert_eq!(
            now_committed, committed,
            "compaction keeps the latest state per key"
        );
        let compacted = committed_records < outputs / 2;
        if compacted && now_uncommitted == committed && uncommitted_records == committed_records {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted: {uncommitted_records} records read_uncommitted, \
             {committed_records} read_committed, of {outputs} committed outputs; \
             read_uncommitted: {now_uncommitted:?}"
        );
        super::pause(200);
    }
    assert_eq!(
        committed.len(),
        ACCOUNTS,
        "a state or tombstone per account: {committed:?}"
    );
    assert!(total > 0);
}

/// The keys of a store scan's answer, following its cursors from `path`
/// (a query string already started), from `cursor` if given.
fn scan_keys(pipeline: &Pipeline, path: &str, cursor: Option<&str>) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = cursor.map(str::to_string);
    for _ in 0..100 {
        let page = match &cursor {
            Some(cursor) => format!("{path}&cursor={cursor}"),
            None => path.to_string(),
        };
        let (code, answer) = super::get_json(pipeline, &page);
        assert_eq!(code, 200, "{page}: {answer:#}");
        for entry in answer["entries"].as_array().unwrap() {
            keys.push(entry["key"].as_str().unwrap().to_string());
        }
        match answer["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return keys,
        }
    }
    panic!("{path}: more than 100 pages");
}

/// A prefix scan pages through its prefix with cursors, and a cursor
/// cannot take it outside its prefix (a cursor is the client's to send:
/// `0:` once answered every key below the prefix too).
#[test]
fn prefix_scans_page_with_cursors_and_stay_within_their_prefix() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("account-events", 1);
    pipeline.create_topic("balances", 1);
    deploy_balances(&pipeline, &[]);
    let ids = [
        "acc-01", "acc-02", "acc-03", "acc-04", "acc-05", "bob-01", "bob-02", "zed",
    ];
    let events: Vec<(String, String)> = ids
        .iter()
        .map(|id| {
            (
                id.to_string(),
                format!(r#"{{"type":"opened","account":"{id}"}}"#),
            )
        })
        .collect();
    let pairs: Vec<(Option<&str>, &str)> = events
        .iter()
        .map(|(k, v)| (Some(k.as_str()), v.as_str()))
        .collect();
    pipeline.produce("account-events", &pairs);
    super::wait_settled(&pipeline, "balances", ids.len() as i64);
    let scan = "/v1/processors/balances/stores/accounts/keys?limit=2";
    assert_eq!(scan_keys(&pipeline, scan, None), ids);
    let acc = format!("{scan}&prefix=acc-");
    assert_eq!(scan_keys(&pipeline, &acc, None), ids[..5]);
    let bob = format!("{scan}&prefix=bob-");
    assert_eq!(scan_keys(&pipeline, &bob, Some("0:")), ["bob-01", "bob-02"]);
    let (code, answer) = super::get_json(&pipeline, &format!("{scan}&cursor=-1:"));
    assert_eq!(code, 400, "{answer:#}");
    assert!(answer.to_string().contains("cursor"), "{answer:#}");
    // A key range, from inclusive to exclusive, pages the same way; open
    // at either end; a prefix with a range is refused.
    let range = format!("{scan}&from=acc-03&to=bob-02");
    assert_eq!(
        scan_keys(&pipeline, &range, None),
        ["acc-03", "acc-04", "acc-05", "bob-01"]
    );
    let above = format!("{scan}&from=bob-02");
    assert_eq!(scan_keys(&pipeline, &above, None), ["bob-02", "zed"]);
    let below = format!("{scan}&to=acc-02");
    assert_eq!(scan_keys(&pipeline, &below, None), ["acc-01"]);
    let (code, answer) = super::get_json(&pipeline, &format!("{scan}&prefix=acc-&from=acc-02"));
    assert_eq!(code, 400, "{answer:#}");

    // The processor's consumer group mirrors the committed position, for
    // Kafka tools.
    let described = pipeline.sluice_ok(&[
        "group",
        "describe",
        "sluice-processor-balances",
        "--format",
        "json",
    ]);
    let described: Value = serde_json::from_str(&described).unwrap();
    let offsets = &described["offsets"][0];
    assert_eq!(offsets["topic"], "account-events", "{described:#}");
    assert_eq!(
        offsets["committed_offset"].as_i64(),
        Some(ids.len() as i64),
        "{described:#}"
    );
}
