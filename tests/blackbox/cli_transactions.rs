//! The CLI around Kafka transactions, as an operator and a reader use it:
//! `sluice transactions list|describe|abort` against a producer whose
//! transaction hangs open, `sluice consume` at both isolation levels, and
//! `sluice group describe` lag against the last stable offset.
//!
//! The transactional producer is written here from raw requests
//! (InitProducerId, AddPartitionsToTxn, a transactional Produce, EndTxn)
//! with the independent `kafka-protocol` codec, so each step of the
//! transaction is under the test's control: it can be left open, aborted
//! or committed exactly where a test needs it.

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, FetchRequest, InitProducerIdRequest,
    ListOffsetsRequest, ProduceRequest, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::cli::{describe_group, lags, sluice, start_broker, GROUP_CONFIG};
use crate::kafka::KafkaClient;

/// The transaction timeout the test producers ask for: long enough that
/// the broker's timeout check never aborts a transaction a test keeps open.
const TRANSACTION_TIMEOUT_MS: i32 = 600_000;

/// PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED: i16 = 90;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

// ---------------------------------------------------------------------------
// A transactional producer from raw requests.

/// One transactional id's producer, one request at a time.
struct TransactionalProducer {
    client: KafkaClient,
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
    /// Next sequence number per (topic, partition).
    sequences: HashMap<(String, i32), i32>,
}

impl TransactionalProducer {
    /// InitProducerId (v4) for `transactional_id`.
    fn init(addr: SocketAddr, transactional_id: &str) -> Self {
        let mut client = KafkaClient::connect(addr);
        let response = client.call(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(text(transactional_id))))
                .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS),
            4,
        );
        assert_eq!(response.error_code, 0, "InitProducerId {transactional_id}");
        Self {
            client,
            transactional_id: transactional_id.to_string(),
            producer_id: response.producer_id.0,
            epoch: response.producer_epoch,
            sequences: HashMap::new(),
        }
    }

    /// AddPartitionsToTxn (v3) of `partitions` of `topic`: starts the
    /// transaction if none is open.
    fn add_partitions(&mut self, topic: &str, partitions: &[i32]) {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(text(&self.transactional_id)))
            .with_v3_and_below_producer_id(ProducerId(self.producer_id))
            .with_v3_and_below_producer_epoch(self.epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(partitions.to_vec())]);
        let response = self.client.call(request, 3);
        let codes: Vec<i16> = response
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect();
        assert_eq!(codes, vec![0; partitions.len()], "AddPartitionsToTxn");
    }

    /// A transactional Produce (v9, acks=all) of `values` to `partition`
    /// of `topic`, in one batch; returns the partition's error code.
    fn write(&mut self, topic: &str, partition: i32, values: &[&str]) -> i16 {
        let sequence = self
            .sequences
            .entry((topic.to_string(), partition))
            .or_insert(0);
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(index, value)| Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: self.producer_id,
                producer_epoch: self.epoch,
                timestamp_type: TimestampType::Creation,
                offset: index as i64,
                sequence: *sequence + index as i32,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from(value.to_string())),
                headers: Default::default(),
            })
            .collect();
        *sequence += values.len() as i32;
        let mut batch = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut batch, records.iter(), &options).unwrap();
        let request = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(text(&self.transactional_id))))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(text(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch.freeze()))])]);
        let response = self.client.call(request, 9);
        response.responses[0].partition_responses[0].error_code
    }

    /// Starts a transaction on `partition` of `topic` and writes `values`.
    fn begin_with(&mut self, topic: &str, partition: i32, values: &[&str]) {
        self.add_partitions(topic, &[partition]);
        assert_eq!(
            self.write(topic, partition, values),
            0,
            "transactional Produce"
        );
    }

    /// EndTxn (v3); returns its error code.
    fn end(&mut self, commit: bool) -> i16 {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(text(&self.transactional_id)))
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_committed(commit);
        self.client.call(request, 3).error_code
    }
}

// ---------------------------------------------------------------------------
// Looking at partitions from outside the CLI.

/// (high watermark, last stable offset) of a partition, from ListOffsets
/// (v7) latest at isolation levels 0 and 1.
fn watermarks(addr: SocketAddr, topic: &str, partition: i32) -> (i64, i64) {
    let mut client = KafkaClient::connect(addr);
    let mut latest = |isolation_level: i8| {
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_isolation_level(isolation_level)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(-1)])]);
        let response = client.call(request, 7);
        let answer = &response.topics[0].partitions[0];
        assert_eq!(answer.error_code, 0, "ListOffsets");
        answer.offset
    };
    (latest(0), latest(1))
}

/// The aborted transactions a read_committed Fetch (v12) of a partition
/// from offset 0 lists, as (producer id, first offset).
fn aborted_transactions(addr: SocketAddr, topic: &str, partition: i32) -> Vec<(i64, i64)> {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(text(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response = KafkaClient::connect(addr).call(request, 12);
    let answer = &response.responses[0].partitions[0];
    assert_eq!(answer.error_code, 0, "Fetch");
    answer
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect()
}

/// `(partition, offset, value)` of `consume TOPIC -e --format json` with
/// `extra` arguments.
fn consumed(addr: &str, topic: &str, extra: &[&str]) -> Vec<(i64, i64, String)> {
    let mut args = vec!["consume", topic, "-e", "--format", "json"];
    args.extend_from_slice(extra);
    let mut records: Vec<(i64, i64, String)> = sluice(addr, &args, "")
        .json_lines()
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().unwrap(),
                r["offset"].as_i64().unwrap(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    records.sort();
    records
}

fn values(records: &[(i64, i64, String)]) -> Vec<&str> {
    records.iter().map(|(_, _, value)| value.as_str()).collect()
}

/// The object of `transactional_id` in a JSON array from `transactions
/// list|describe`, if there is one.
fn entry<'a>(listed: &'a Value, transactional_id: &str) -> Option<&'a Value> {
    listed
        .as_array()
        .expect("a JSON array")
        .iter()
        .find(|t| t["transactional_id"] == transactional_id)
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn transactions_list_and_describe_show_an_open_transaction() {
    let dir = TempDir::new().unwrap();
    let broker = start_broker(&dir, None);
    let addr = &broker.kafka.to_string();
    sluice(addr, &["topic", "create", "orders", "-p", "2"], "").ok();
    let mut producer = TransactionalProducer::init(broker.kafka, "etl-0");
    producer.add_partitions("orders", &[0, 1]);
    assert_eq!(producer.write("orders", 0, &["a", "b", "c"]), 0);
    assert_eq!(producer.write("orders", 1, &["d"]), 0);
    // A second id with no transaction open.
    let _idle = TransactionalProducer::init(broker.kafka, "idle-0");

    let listed = sluice(addr, &["transactions", "list", "--format", "json"], "").json();
    let etl = entry(&listed, "etl-0").unwrap_or_else(|| panic!("etl-0 in {listed}"));
    assert_eq!(etl["state"], "Ongoing");
    assert_eq!(etl["producer_id"], producer.producer_id);
    assert_eq!(etl["producer_epoch"], producer.epoch);
    assert_eq!(etl["timeout_ms"], TRANSACTION_TIMEOUT_MS);
    assert_eq!(etl["partition_count"], 2);
    assert!(etl["age_ms"].as_i64().is_some_and(|age| age >= 0), "{etl}");
    let idle = entry(&listed, "idle-0").unwrap_or_else(|| panic!("idle-0 in {listed}"));
    assert_eq!(idle["state"], "Empty");
    assert!(
        idle["age_ms"].is_null(),
        "no age without a transaction: {idle}"
    );

    let table = sluice(addr, &["transactions", "list"], "").ok();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "TRANSACTIONAL-ID",
            "STATE",
            "PRODUCER-ID",
            "EPOCH",
            "TIMEOUT",
            "PARTITIONS",
            "AGE"
        ]
    );
    let row: Vec<&str> = table
        .lines()
        .find(|line| line.starts_with("etl-0 "))
        .unwrap_or_else(|| panic!("etl-0 row in {table}"))
        .split_whitespace()
        .collect();
    let producer_id = producer.producer_id.to_string();
    assert_eq!(row[1..6], ["Ongoing", &producer_id, "0", "10m00s", "2"]);

    // Filters: by state (any case, commas or repeated), by age.
    let only = |args: &[&str]| {
        let mut all = vec!["transactions", "list", "--format", "json"];
        all.extend_from_slice(args);
        let listed = sluice(addr, &all, "").json();
        let mut ids: Vec<String> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["transactional_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(only(&["--state", "ongoing"]), ["etl-0"]);
    assert_eq!(only(&["--state", "Empty,CompleteAbort"]), ["idle-0"]);
    assert_eq!(
        only(&["--state", "Empty", "--state", "Ongoing"]),
        ["etl-0", "idle-0"]
    );
    assert!(
        only(&["--min-age-ms", "3600000"]).is_empty(),
        "opened under an hour ago"
    );
    let bad = sluice(addr, &["transactions", "list", "--state", "Open"], "");
    assert!(!bad.status.success());
    assert!(
        bad.stderr.contains("Ongoing"),
        "lists the states: {}",
        bad.stderr
    );

    let described = sluice(
        addr,
        &["transactions", "describe", "etl-0", "--format", "json"],
        "",
    )
    .json();
    let etl = entry(&described, "etl-0").unwrap_or_else(|| panic!("etl-0 in {described}"));
    assert_eq!(etl["state"], "Ongoing");
    assert_eq!(
        etl["partitions"],
        json!([{"topic": "orders", "partition": 0}, {"topic": "orders", "partition": 1}])
    );
    assert!(etl["start_time_ms"]
        .as_i64()
        .is_some_and(|ms| ms > 1_600_000_000_000));
    let text = sluice(addr, &["transactions", "describe", "etl-0"], "").ok();
    for expected in [
        "TRANSACTIONAL-ID  etl-0",
        "STATE             Ongoing",
        "STARTED",
        "orders  0",
        "orders  1",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }

    // An unknown id is named, the known one still shown, the exit non-zero.
    let unknown = sluice(
        addr,
        &["transactions", "describe", "etl-0", "no-such-id"],
        "",
    );
    assert!(!unknown.status.success());
    assert!(
        unknown
            .stderr
            .contains("'no-such-id' not found (TRANSACTIONAL_ID_NOT_FOUND)"),
        "{}",
        unknown.stderr
    );
    assert!(unknown.stdout.contains("etl-0"), "{}", unknown.stdout);
}

#[test]
fn transactions_abort_fences_the_producer_and_releases_the_lso() {
    let dir = TempDir::new().unwrap();
    let broker = start_broker(&dir, None);
    let addr = &broker.kafka.to_string();
    sluice(addr, &["topic", "create", "orders", "-p", "2"], "").ok();
    let mut producer = TransactionalProducer::init(broker.kafka, "etl-0");
    producer.add_partitions("orders", &[0, 1]);
    assert_eq!(producer.write("orders", 0, &["a", "b", "c"]), 0);
    assert_eq!(producer.write("orders", 1, &["d"]), 0);
    // The open transaction holds both partitions' LSO at its first offset.
    assert_eq!(watermarks(broker.kafka, "orders", 0), (3, 0));
    assert_eq!(watermarks(broker.kafka, "orders", 1), (1, 0));
    assert!(consumed(addr, "orders", &[]).is_empty());

    let report = sluice(addr, &["transactions", "abort", "etl-0"], "").ok();
    assert!(
        report.contains("aborted the transaction of 'etl-0' on 2 partitions: orders-0, orders-1"),
        "{report}"
    );
    let fenced = format!(
        "fenced producer id {} epoch {}",
        producer.producer_id, producer.epoch
    );
    assert!(report.contains(&fenced), "{report}");

    let described = sluice(
        addr,
        &["transactions", "describe", "etl-0", "--format", "json"],
        "",
    )
    .json();
    assert_eq!(described[0]["state"], "CompleteAbort");
    assert!(described[0]["producer_epoch"].as_i64().unwrap() > i64::from(producer.epoch));
    // The hung producer is fenced: it can neither commit nor write on.
    assert_eq!(
        producer.end(true),
        PRODUCER_FENCED,
        "EndTxn of the old producer"
    );
    assert_ne!(
        producer.write("orders", 0, &["late"]),
        0,
        "a write of the old producer"
    );

    // The abort markers moved the LSO up to the high watermark, and the
    // aborted records stay invisible to read_committed readers.
    assert_eq!(watermarks(broker.kafka, "orders", 0), (4, 4));
    assert_eq!(watermarks(broker.kafka, "orders", 1), (2, 2));
    let aborted = aborted_transactions(broker.kafka, "orders", 0);
    assert_eq!(aborted, [(producer.producer_id, 0)]);
    assert!(consumed(addr, "orders", &[]).is_empty(), "read_committed");
    let everything = consumed(addr, "orders", &["--isolation", "read_uncommitted"]);
    assert_eq!(values(&everything), ["a", "b", "c", "d"]);

    // Nothing open any more: refused, unless --if-open.
    let again = sluice(addr, &["transactions", "abort", "etl-0"], "");
    assert!(!again.status.success());
    assert!(
        again.stderr.contains("nothing to abort"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("CompleteAbort"), "{}", again.stderr);
    let quiet = sluice(addr, &["transactions", "abort", "etl-0", "--if-open"], "");
    assert!(quiet.status.success(), "{}", quiet.stderr);
    assert!(
        quiet.stderr.contains("nothing to abort"),
        "{}",
        quiet.stderr
    );
    let unknown = sluice(addr, &["transactions", "abort", "no-such-id"], "");
    assert!(!unknown.status.success());
    assert!(
        unknown.stderr.contains("'no-such-id' not found"),
        "{}",
        unknown.stderr
    );

    // A producer restarted with the id carries on.
    let mut restarted = TransactionalProducer::init(broker.kafka, "etl-0");
    restarted.begin_with("orders", 1, &["e"]);
    assert_eq!(restarted.end(true), 0);
    assert_eq!(values(&consumed(addr, "orders", &[])), ["e"]);
}

#[test]
fn consume_shows_only_committed_records_by_default() {
    let dir = TempDir::new().unwrap();
    let broker = start_broker(&dir, None);
    let addr = &broker.kafka.to_string();
    sluice(addr, &["topic", "create", "ledger", "-p", "1"], "").ok();
    // Offsets: 0 plain-1, 1-2 a1 a2, 3 b1, 4 a3, 5 abort(b), 6 commit(a),
    // 7 plain-2, 8 c1 (left open), 9 plain-3.
    sluice(addr, &["produce", "ledger"], "plain-1\n").ok();
    let mut a = TransactionalProducer::init(broker.kafka, "tx-a");
    let mut b = TransactionalProducer::init(broker.kafka, "tx-b");
    a.begin_with("ledger", 0, &["a1", "a2"]);
    b.begin_with("ledger", 0, &["b1"]);
    assert_eq!(a.write("ledger", 0, &["a3"]), 0);
    assert_eq!(b.end(false), 0, "abort b");
    assert_eq!(a.end(true), 0, "commit a");
    sluice(addr, &["produce", "ledger"], "plain-2\n").ok();
    let mut c = TransactionalProducer::init(broker.kafka, "tx-c");
    c.begin_with("ledger", 0, &["c1"]);
    sluice(addr, &["produce", "ledger"], "plain-3\n").ok();
    assert_eq!(watermarks(broker.kafka, "ledger", 0), (10, 8));

    // read_committed (the default): a's records, not b's, nothing from the
    // LSO on (c1 and plain-3 behind it); -e stops at the LSO.
    let committed = consumed(addr, "ledger", &[]);
    assert_eq!(values(&committed), ["plain-1", "a1", "a2", "a3", "plain-2"]);
    let offsets: Vec<i64> = committed.iter().map(|(_, offset, _)| *offset).collect();
    assert_eq!(offsets, [0, 1, 2, 4, 7]);
    let explicit = consumed(addr, "ledger", &["--isolation", "read_committed"]);
    assert_eq!(explicit, committed);
    // Text output too, as a user sees it.
    let text = sluice(addr, &["consume", "ledger", "-e"], "").ok();
    assert_eq!(text, "plain-1\na1\na2\na3\nplain-2\n");

    // read_uncommitted: everything up to the high watermark, never a marker.
    let everything = consumed(addr, "ledger", &["--isolation", "read_uncommitted"]);
    assert_eq!(
        values(&everything),
        ["plain-1", "a1", "a2", "b1", "a3", "plain-2", "c1", "plain-3"]
    );

    // `--from latest` is the LSO read_committed: -e has nothing to show.
    let latest = sluice(addr, &["consume", "ledger", "-e", "--from", "latest"], "").ok();
    assert_eq!(latest, "");

    // Once c commits, its record and what was behind it show up.
    assert_eq!(c.end(true), 0);
    let committed = consumed(addr, "ledger", &[]);
    assert_eq!(
        values(&committed),
        ["plain-1", "a1", "a2", "a3", "plain-2", "c1", "plain-3"]
    );
}

#[test]
fn group_lag_counts_up_to_the_last_stable_offset() {
    let dir = TempDir::new().unwrap();
    let broker = start_broker(&dir, Some(GROUP_CONFIG));
    let addr = &broker.kafka.to_string();
    sluice(addr, &["topic", "create", "jobs", "-p", "1"], "").ok();
    sluice(addr, &["produce", "jobs"], "1\n2\n3\n4\n5\n").ok();
    let group = ["consume", "jobs", "--group", "billing", "-e"];
    assert_eq!(sluice(addr, &group, "").ok().lines().count(), 5);
    sluice(addr, &["produce", "jobs"], "6\n7\n").ok();
    let mut producer = TransactionalProducer::init(broker.kafka, "jobs-tx");
    producer.begin_with("jobs", 0, &["t1", "t2", "t3"]);
    assert_eq!(watermarks(broker.kafka, "jobs", 0), (10, 7));

    // Committed 5, LSO 7: lag 2, not the 5 the high watermark would give.
    let described = describe_group(addr, "billing");
    assert_eq!(lags(&described, "jobs"), [(0, 2)].into());
    assert_eq!(described["offsets"][0]["end_offset"], 7);
    assert_eq!(described["total_lag"], 2);

    // Committed: the transaction's records (and its marker) now count.
    assert_eq!(producer.end(true), 0);
    let described = describe_group(addr, "billing");
    assert_eq!(lags(&described, "jobs"), [(0, 6)].into());
    assert_eq!(described["offsets"][0]["end_offset"], 11);
}

#[test]
fn an_open_transaction_survives_kill_9_and_is_aborted_after_the_restart() {
    let dir = TempDir::new().unwrap();
    let mut broker = start_broker(&dir, None);
    let addr = &broker.kafka.to_string();
    sluice(addr, &["topic", "create", "orders", "-p", "1"], "").ok();
    let mut done = TransactionalProducer::init(broker.kafka, "done-0");
    done.begin_with("orders", 0, &["kept"]);
    assert_eq!(done.end(true), 0);
    let mut hung = TransactionalProducer::init(broker.kafka, "hung-0");
    hung.begin_with("orders", 0, &["dropped"]);
    // kept 0, commit marker 1, dropped 2 (open).
    assert_eq!(watermarks(broker.kafka, "orders", 0), (3, 2));
    let killed = broker.stop_with("KILL", std::time::Duration::from_secs(10));
    assert!(killed.code().is_none(), "killed by a signal");

    let broker = start_broker(&dir, None);
    let addr = &broker.kafka.to_string();
    assert_eq!(
        watermarks(broker.kafka, "orders", 0),
        (3, 2),
        "the LSO held"
    );
    let listed = sluice(addr, &["transactions", "list", "--format", "json"], "").json();
    let states: Vec<(&str, &str)> = ["done-0", "hung-0"]
        .iter()
        .map(|id| {
            let found = entry(&listed, id).unwrap_or_else(|| panic!("{id} in {listed}"));
            (*id, found["state"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        states,
        [("done-0", "CompleteCommit"), ("hung-0", "Ongoing")]
    );

    sluice(addr, &["transactions", "abort", "hung-0"], "").ok();
    assert_eq!(watermarks(broker.kafka, "orders", 0), (4, 4));
    assert_eq!(values(&consumed(addr, "orders", &[])), ["kept"]);
}
