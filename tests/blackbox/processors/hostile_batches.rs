//! Batches that pass every header check but lie inside: a zstd bomb (a
//! batch of under 1 MiB that inflates to 30 GiB of zeros) and a record whose
//! offset delta is a million. Each is refused where it enters (produce, with
//! `INVALID_RECORD`) and, when already in the log (written by an older
//! broker), stops only the processor reading it, with the reason in its
//! status, while the broker keeps serving everyone else in bounded memory.

use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiVersionsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{assert_last_error, values, Pipeline};
use crate::kafka::KafkaClient;

/// What the bomb inflates to: far above `decompressed_batch_bytes_max`
/// (64 MiB) and above the test machine's memory.
const BOMB_BYTES: u64 = 30 << 30;
/// Peak broker memory the tests allow: the bound (64 MiB), a few copies of
/// it and the broker's own footprint, nowhere near the bomb.
const PEAK_RSS_BYTES_MAX: u64 = 1 << 30;
/// Kafka's INVALID_RECORD.
const INVALID_RECORD: i16 = 87;
const ZSTD: i16 = 4;

/// A zstd frame of `bytes` zeros made of RLE blocks (4 bytes per 128 KiB),
/// built by hand so the test costs no compression time.
fn zstd_zeros(bytes: u64) -> Vec<u8> {
    const BLOCK: u64 = 128 * 1024;
    let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
    // Frame header: no content size, not single-segment; window 128 KiB.
    frame.extend_from_slice(&[0x00, 7 << 3]);
    let blocks = bytes.div_ceil(BLOCK);
    for block in 0..blocks {
        let size = BLOCK.min(bytes - block * BLOCK) as u32;
        let last = u32::from(block + 1 == blocks);
        let header = last | (1 << 1) | (size << 3); // block type 1: RLE
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    frame
}

fn zigzag(buf: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        buf.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    buf.push(raw as u8);
}

/// One record (keyed, no headers) at `offset_delta`.
fn record(offset_delta: i64, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8]; // attributes
    zigzag(&mut body, 0); // timestamp delta
    zigzag(&mut body, offset_delta);
    zigzag(&mut body, key.len() as i64);
    body.extend_from_slice(key);
    zigzag(&mut body, value.len() as i64);
    body.extend_from_slice(value);
    zigzag(&mut body, 0); // headers
    let mut record = Vec::new();
    zigzag(&mut record, body.len() as i64);
    record.extend_from_slice(&body);
    record
}

/// A v2 batch around `records` (already compressed as `attributes` say),
/// with a valid CRC.
fn batch(base_offset: i64, attributes: i16, count: i32, records: &[u8]) -> Bytes {
    let mut batch = BytesMut::new();
    batch.put_i64(base_offset);
    batch.put_i32((49 + records.len()) as i32);
    batch.put_i32(0); // partition leader epoch
    batch.put_i8(2);
    batch.put_u32(0); // CRC, below
    batch.put_i16(attributes);
    batch.put_i32(count - 1);
    batch.put_i64(1_700_000_000_000);
    batch.put_i64(1_700_000_000_000);
    batch.put_i64(-1);
    batch.put_i16(-1);
    batch.put_i32(-1);
    batch.put_i32(count);
    batch.put_slice(records);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch.freeze()
}

/// The bomb: one record's worth of header, 30 GiB of zeros inside.
fn zstd_bomb(base_offset: i64) -> Bytes {
    let frame = zstd_zeros(BOMB_BYTES);
    // It is real zstd: the reference decoder inflates it to zeros.
    let mut head = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            zstd::stream::read::Decoder::new(&frame[..]).unwrap(),
            1 << 20,
        ),
        &mut head,
    )
    .unwrap();
    assert!(head.len() == 1 << 20 && head.iter().all(|b| *b == 0));
    batch(base_offset, ZSTD, 1, &frame)
}

/// What a partition's produce response said: error code, message, and
/// `record_errors` as (index in the batch, message).
type Answer = (i16, String, Vec<(i32, String)>);

/// Produces `records` to partition 0 of `topic` (Produce v9).
fn produce(pipeline: &Pipeline, topic: &str, records: Bytes) -> Answer {
    let mut client = KafkaClient::connect(pipeline.broker.kafka);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response = client.call(request, 9);
    let partition = &response.responses[0].partition_responses[0];
    let message = partition.error_message.as_ref().map(|m| m.to_string());
    let record_errors = partition
        .record_errors
        .iter()
        .map(|error| {
            let text = error.batch_index_error_message.as_ref();
            (
                error.batch_index,
                text.map(|m| m.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    (
        partition.error_code,
        message.unwrap_or_default(),
        record_errors,
    )
}

/// The broker answers a request, and its peak memory stayed bounded.
fn assert_serving_in_bounded_memory(pipeline: &Pipeline) {
    let mut client = KafkaClient::connect(pipeline.broker.kafka);
    let versions = client.call(ApiVersionsRequest::default(), 3);
    assert_eq!(versions.error_code, 0);
    let peak = pipeline.broker.peak_rss_bytes();
    assert!(peak < PEAK_RSS_BYTES_MAX, "broker peak RSS {peak} bytes");
}

/// Deploys `uppercase` from `in` to `out`.
fn deploy_uppercase(pipeline: &Pipeline) {
    pipeline.deploy("upper", "uppercase", &["--input", "in", "--output", "out"]);
}

#[test]
fn zstd_bomb_is_refused_on_produce_and_the_broker_keeps_serving() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    deploy_uppercase(&pipeline);
    let (code, message, _) = produce(&pipeline, "in", zstd_bomb(0));
    assert_eq!(code, INVALID_RECORD, "produce of the bomb: {message}");
    assert!(
        message.contains("decompressed_batch_bytes_max"),
        "{message}"
    );
    assert_serving_in_bounded_memory(&pipeline);
    pipeline.produce("in", &[(Some("k"), "after the bomb")]);
    pipeline.wait_caught_up("upper", 1);
    assert_eq!(values(&pipeline.consume("out")), ["AFTER THE BOMB"]);
}

/// Appends `batch` to the active (only) segment of `topic`'s partition 0.
fn plant(data_dir: &Path, topic: &str, batch: &[u8]) {
    let segment = crate::harness::topic_dir(data_dir, topic)
        .expect("topic directory")
        .join(format!("0/{:020}.log", 0));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap_or_else(|error| panic!("{}: {error}", segment.display()));
    std::io::Write::write_all(&mut file, batch).unwrap();
}

#[test]
fn zstd_bomb_already_in_the_log_stops_only_its_processor_with_the_reason() {
    let mut pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    pipeline.produce("in", &[(Some("k"), "before")]);
    // As an older broker, which did not look inside batches, would have
    // stored it.
    pipeline.restart_after(|data_dir| plant(data_dir, "in", &zstd_bomb(1)));
    deploy_uppercase(&pipeline);
    let status = pipeline.wait_for("upper", "the bomb's error", |status| {
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("decompressed_batch_bytes_max"))
    });
    assert_last_error(&status, "offset 1");
    assert_serving_in_bounded_memory(&pipeline);
}

#[test]
fn record_with_a_forged_offset_delta_is_refused_and_nothing_after_it_is_skipped() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    deploy_uppercase(&pipeline);
    // Two records, the header says offsets 0 and 1, the second record says
    // it is at offset 1 000 000.
    let mut records = record(0, b"k", b"first");
    records.extend(record(1_000_000, b"k", b"forged"));
    let (code, message, record_errors) = produce(&pipeline, "in", batch(0, 0, 2, &records));
    assert_eq!(
        code, INVALID_RECORD,
        "produce of the forged batch: {message}"
    );
    assert!(message.contains("offset delta 1000000"), "{message}");
    assert!(
        matches!(&record_errors[..], [(1, text)] if text.contains("offset delta 1000000")),
        "record_errors: {record_errors:?}"
    );

    let sent: Vec<String> = (0..10).map(|i| format!("record {i}")).collect();
    let borrowed: Vec<(Option<&str>, &str)> = sent
        .iter()
        .map(|value| (Some("k"), value.as_str()))
        .collect();
    pipeline.produce("in", &borrowed);
    pipeline.wait_caught_up("upper", 10);
    let expected: Vec<String> = sent.iter().map(|value| value.to_uppercase()).collect();
    assert_eq!(values(&pipeline.consume("out")), expected);
}
