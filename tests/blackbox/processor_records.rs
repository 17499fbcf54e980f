//! What crosses into the sandbox is exactly what was produced: the
//! `inspect` plugin describes each record as it received it (topic,
//! partition, offset, timestamp, key, value, headers), and the description
//! is checked against the records sent, for every shape a Kafka record can
//! take: null and empty keys and values, binary bytes, headers with null
//! values, and values large enough that the guest's memory grows while a
//! batch is being written into it.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record};
use serde_json::{json, Value};
use sluice::log::batch::build;

use crate::kafka::KafkaClient;
use crate::processors::Pipeline;

fn record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
    timestamp: i64,
) -> Record {
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                StrBytes::from_string(k.to_string()),
                v.map(Bytes::copy_from_slice),
            )
        })
        .collect();
    build::record(
        0,
        key.map(Bytes::copy_from_slice),
        value.map(Bytes::copy_from_slice),
        timestamp,
        headers,
    )
}

/// Produces `records` as one batch to partition 0 of `topic`.
fn produce(client: &mut KafkaClient, topic: &str, records: &[Record]) {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(offset, record)| Record {
            offset: offset as i64,
            sequence: offset as i32 - 1,
            ..record.clone()
        })
        .collect();
    let batch = build::encode(&records, Compression::None);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.freeze()))])]);
    let response = client.call(request, 9);
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "produce to {topic}");
}

fn hex(bytes: Option<&Bytes>) -> Value {
    bytes.map_or(Value::Null, |b| {
        Value::String(b.iter().map(|byte| format!("{byte:02x}")).collect())
    })
}

/// What `inspect` should say of `record`, produced at `offset`.
fn described(record: &Record, offset: i64) -> Value {
    json!({
        "topic": "raw",
        "partition": 0,
        "offset": offset,
        "timestamp": record.timestamp,
        "key": hex(record.key.as_ref()),
        "value": hex(record.value.as_ref()),
        "headers": record
            .headers
            .iter()
            .map(|(k, v)| json!([k.to_string(), hex(v.as_ref())]))
            .collect::<Vec<_>>(),
    })
}

#[test]
fn records_reach_the_plugin_exactly_as_produced() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("raw", 1);
    pipeline.create_topic("seen", 1);
    let every_byte: Vec<u8> = (0..=255).collect();
    let shapes = vec![
        record(None, Some(b"plain"), &[], 1_700_000_000_000),
        record(Some(b""), Some(b""), &[], 1_700_000_000_001),
        record(Some(b"k"), None, &[], 1_700_000_000_002),
        record(None, None, &[("only", None)], 0),
        record(
            Some(&every_byte),
            Some(&every_byte),
            &[
                ("trace-id", Some(b"abc")),
                ("null", None),
                ("empty", Some(b"")),
                ("ünïcödé ✓", Some(&[0, 255, 10])),
            ],
            1,
        ),
        record(
            Some(b"\x00"),
            Some(b"{\"json\": true}"),
            &[("h", Some(b"v"))],
            4_102_444_800_000,
        ),
    ];
    // Large values, a batch of them: the guest's memory has to grow while
    // the host is still writing the batch into it.
    let large: Vec<Record> = (0..24)
        .map(|index| {
            let value: Vec<u8> = (0..40_000).map(|i| ((i * 7 + index) % 251) as u8).collect();
            let key = format!("large-{index}");
            record(
                Some(key.as_bytes()),
                Some(&value),
                &[("index", Some(index.to_string().as_bytes()))],
                1_700_000_000_000 + index as i64,
            )
        })
        .collect();
    let mut client = KafkaClient::connect(pipeline.broker.kafka);
    produce(&mut client, "raw", &shapes);
    for half in large.chunks(12) {
        produce(&mut client, "raw", half);
    }
    let all: Vec<&Record> = shapes.iter().chain(&large).collect();
    pipeline.deploy(
        "inspect",
        "inspect",
        &["--input", "raw", "--output", "seen"],
    );
    pipeline.wait_caught_up("inspect", all.len() as u64);
    let seen = pipeline.consume("seen");
    assert_eq!(seen.len(), all.len());
    for ((offset, sent), got) in all.iter().enumerate().zip(&seen) {
        let got: Value = serde_json::from_str(got.value.as_deref().unwrap()).unwrap();
        assert_eq!(
            got,
            described(sent, offset as i64),
            "record at offset {offset}"
        );
    }
}

/// Kafka allows several headers of one name (tracing headers rely on it):
/// the plugin receives every one, in the order produced. kcat (librdkafka)
/// produces the record, with `-H` three times.
#[test]
fn headers_of_the_same_name_all_reach_the_plugin_in_order() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("raw", 1);
    pipeline.create_topic("seen", 1);
    let mut child = std::process::Command::new("kcat")
        .args(["-P", "-q", "-b", &pipeline.broker.kafka.to_string()])
        .args(["-t", "raw", "-k", "key", "-X", "acks=all"])
        .args(["-H", "trace=a", "-H", "trace=b", "-H", "x=1"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kcat (installed by scripts/test)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"value\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kcat produce: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    pipeline.deploy(
        "inspect",
        "inspect",
        &["--input", "raw", "--output", "seen"],
    );
    pipeline.wait_caught_up("inspect", 1);
    let seen = pipeline.consume("seen");
    assert_eq!(seen.len(), 1);
    let got: Value = serde_json::from_str(seen[0].value.as_deref().unwrap()).unwrap();
    let hex = |text: &str| hex(Some(&Bytes::copy_from_slice(text.as_bytes())));
    assert_eq!(
        got["headers"],
        json!([["trace", hex("a")], ["trace", hex("b")], ["x", hex("1")]]),
        "{got}"
    );
}
