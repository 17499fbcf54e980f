//! Timestamps: `LogAppendTime` topics stamp batches with the broker's clock
//! (keeping the CRC valid), and `offset_for_timestamp` finds the exact
//! record, within a batch and across segments.

use kafka_protocol::records::{Compression, TimestampType};

use super::support::{self, Fixture, START_MS};
use crate::log::batch::{self, build};
use crate::log::{FlushPolicy, Partition, StoreOptions};

#[test]
fn log_append_time_stamps_batches_with_the_clock() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Always);
    let store = fixture.open()?;
    store.create_topic(
        "t",
        1,
        support::overrides(&[("message.timestamp.type", "LogAppendTime")]),
    )?;
    let partition = store.partition("t", 0)?;
    fixture.clock.advance(5_000);
    let first_ms = fixture.now_ms();
    // Producer timestamps are an hour old; the broker's time replaces them.
    let produced_ms = START_MS - 3_600_000;
    let info = partition.append(&support::values_batch("a", 3, 10, produced_ms))?;
    assert_eq!(info.log_append_time_ms, first_ms);
    fixture.clock.advance(1_000);
    let second_ms = fixture.now_ms();
    let mut two = support::values_batch("b", 2, 10, produced_ms);
    two.extend_from_slice(&support::values_batch("c", 1, 10, produced_ms));
    assert_eq!(partition.append(&two)?.log_append_time_ms, second_ms);

    let check = |partition: &Partition| -> anyhow::Result<()> {
        let read = partition.read(0, 1 << 20)?;
        // `split` verifies every CRC.
        let batches = support::split(&read.records)?;
        let stamps: Vec<i64> = batches
            .iter()
            .map(|(header, _)| header.max_timestamp)
            .collect();
        assert_eq!(stamps, [first_ms, second_ms, second_ms]);
        assert!(batches
            .iter()
            .all(|(header, _)| batch::is_log_append_time(header)));
        let records = support::decode(&read.records)?;
        assert!(records
            .iter()
            .all(|record| record.timestamp_type == TimestampType::LogAppend));
        assert_eq!(
            partition.offset_for_timestamp(produced_ms)?,
            Some((0, first_ms))
        );
        assert_eq!(
            partition.offset_for_timestamp(first_ms)?,
            Some((0, first_ms))
        );
        assert_eq!(
            partition.offset_for_timestamp(first_ms + 1)?,
            Some((3, second_ms))
        );
        assert_eq!(partition.offset_for_timestamp(second_ms + 1)?, None);
        Ok(())
    };
    check(&partition)?;
    drop(partition);
    drop(store);
    let store = fixture.open_std()?;
    let partition = store.partition("t", 0)?;
    check(&partition)
}

#[test]
fn create_time_lookup_finds_the_exact_record() -> anyhow::Result<()> {
    let fixture = Fixture::with_options(StoreOptions {
        flush: FlushPolicy::Never,
        index_interval_bytes: 64,
        ..StoreOptions::default()
    });
    let store = fixture.open()?;
    store.create_topic("t", 1, support::overrides(&[("segment.bytes", "600")]))?;
    let partition = store.partition("t", 0)?;
    // Batches 100 ms apart, records within them 10 ms apart.
    let mut timestamps = Vec::new();
    for index in 0..30 {
        let entries: Vec<build::Entry> = (0..3)
            .map(|record| {
                let timestamp = START_MS + index * 100 + record * 10;
                timestamps.push(timestamp);
                (
                    None,
                    Some(support::value(&format!("b{index}"), record as usize, 20)),
                    timestamp,
                )
            })
            .collect();
        partition.append(&build::batch(&entries, Compression::None))?;
    }
    assert!(partition.segment_count() > 3, "setup must roll");
    let check = |partition: &Partition| -> anyhow::Result<()> {
        for (offset, timestamp) in timestamps.iter().enumerate() {
            let expected = Some((offset as i64, *timestamp));
            assert_eq!(
                partition.offset_for_timestamp(*timestamp)?,
                expected,
                "at {timestamp}"
            );
            // Between two records: the later one.
            assert_eq!(
                partition.offset_for_timestamp(timestamp - 5)?,
                expected,
                "before {timestamp}"
            );
        }
        assert_eq!(partition.offset_for_timestamp(0)?, Some((0, START_MS)));
        let last = timestamps.last().copied().unwrap_or_default();
        assert_eq!(partition.offset_for_timestamp(last + 1)?, None);
        Ok(())
    };
    check(&partition)?;
    drop(partition);
    drop(store);
    let store = fixture.open_std()?;
    let partition = store.partition("t", 0)?;
    check(&partition)
}
