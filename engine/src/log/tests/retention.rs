//! Retention by time and size with an injected clock, and truncation.

use anyhow::ensure;

use super::support::{self, Fixture, START_MS};
use crate::log::{FlushPolicy, LogError, StoreOptions};

const MINUTE_MS: i64 = 60_000;

#[test]
fn truncation_into_a_closed_segment_forgets_its_cached_index() -> anyhow::Result<()> {
    // An index entry per batch, so that a stale index points at positions
    // the rewritten segment no longer has batches at.
    let fixture = Fixture::with_options(StoreOptions {
        flush: FlushPolicy::Never,
        index_interval_bytes: 0,
        ..StoreOptions::default()
    });
    let store = fixture.open()?;
    store.create_topic("t", 1, support::overrides(&[("segment.bytes", "1024")]))?;
    let partition = store.partition("t", 0)?;
    for index in 0..10 {
        let tag = format!("old{index}");
        partition.append(&support::values_batch(&tag, 1, 100, START_MS))?;
    }
    ensure!(partition.segment_count() > 1, "setup must roll");
    let first_segment_end = partition.segment_metas()[0].next_offset;
    // Reading the closed segment caches its files and index.
    for offset in 0..first_segment_end {
        partition.read(offset, 0)?;
    }
    partition.truncate_to(2)?;
    assert_eq!(partition.log_end_offset(), 2);
    assert_eq!(partition.segment_count(), 1);
    // Smaller batches this time, until the segment rolls again.
    let mut next = 2;
    while partition.segment_count() == 1 {
        let tag = format!("new{next}");
        let info = partition.append(&support::values_batch(&tag, 1, 20, START_MS))?;
        assert_eq!(info.base_offset, next);
        next += 1;
    }
    for offset in 0..next {
        let records = support::decode(&partition.read(offset, 0)?.records)?;
        let first = records.first().map(|record| record.offset);
        assert_eq!(first, Some(offset), "read at {offset}");
    }
    Ok(())
}

#[test]
fn retention_ms_deletes_old_closed_segments() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    let store = fixture.open()?;
    store.create_topic(
        "t",
        1,
        support::overrides(&[("segment.bytes", "100"), ("retention.ms", "600000")]),
    )?;
    let partition = store.partition("t", 0)?;
    // Each batch is larger than half a segment, so every append rolls:
    // segments [0], [1], [2], [3] with the last one active.
    for (index, age_ms) in [(0, 0), (1, 0), (2, 5 * MINUTE_MS), (3, 5 * MINUTE_MS)] {
        let tag = format!("b{index}");
        partition.append(&support::values_batch(&tag, 1, 60, START_MS + age_ms))?;
    }
    assert_eq!(partition.segment_count(), 4);
    // Nothing is old enough yet.
    fixture.clock.advance(10 * MINUTE_MS);
    assert_eq!(partition.enforce_retention()?, 0);
    assert_eq!(partition.log_start_offset(), 0);
    // Now the first two are 11 minutes old, the others 6.
    fixture.clock.advance(MINUTE_MS);
    assert_eq!(partition.enforce_retention()?, 2);
    assert_eq!(partition.log_start_offset(), 2);
    assert_eq!(partition.segment_count(), 2);
    let dir = fixture.partition_dir("t", 0);
    assert_eq!(support::files_with_suffix(&dir, "log").len(), 2);
    assert_eq!(support::files_with_suffix(&dir, "index").len(), 2);
    assert_eq!(support::files_with_suffix(&dir, "timeindex").len(), 2);
    match partition.read(1, 1 << 20) {
        Err(LogError::OffsetOutOfRange {
            offset: 1,
            log_start_offset: 2,
            high_watermark: 4,
        }) => {}
        other => panic!("read below the log start returned {other:?}"),
    }
    let records = support::read_all(&partition, 1 << 20)?;
    let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
    assert_eq!(offsets, [2, 3]);
    // The new start survives a restart.
    drop(partition);
    drop(store);
    let store = fixture.open()?;
    let partition = store.partition("t", 0)?;
    assert_eq!(partition.log_start_offset(), 2);
    assert_eq!(partition.log_end_offset(), 4);
    assert_eq!(
        partition
            .append(&support::values_batch("b4", 1, 60, START_MS))?
            .base_offset,
        4
    );
    Ok(())
}

#[test]
fn retention_bytes_bounds_the_partition() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    let store = fixture.open()?;
    let segment_bytes = 600u64;
    let retention_bytes = 1500u64;
    store.create_topic(
        "t",
        1,
        support::overrides(&[
            ("segment.bytes", &segment_bytes.to_string()),
            ("retention.bytes", &retention_bytes.to_string()),
            ("retention.ms", "-1"),
        ]),
    )?;
    let partition = store.partition("t", 0)?;
    for index in 0..40 {
        let tag = format!("b{index}");
        partition.append(&support::values_batch(&tag, 1, 50, START_MS))?;
    }
    let before = partition.size_bytes();
    assert!(before > 3 * retention_bytes, "setup must exceed the bound");
    let deleted = partition.enforce_retention()?;
    assert!(deleted > 0);
    let metas = partition.segment_metas();
    let after = partition.size_bytes();
    assert_eq!(after, metas.iter().map(|meta| meta.size).sum::<u64>());
    // Kafka's rule: the oldest segment goes while the rest still holds at
    // least retention.bytes. So the log keeps at least the bound, and at
    // most the bound plus one segment.
    assert!(
        after >= retention_bytes,
        "deleted too much: {after} bytes left"
    );
    assert!(
        after - metas[0].size < retention_bytes,
        "the oldest segment should have gone: {metas:?}"
    );
    assert!(after < retention_bytes + segment_bytes);
    assert_eq!(partition.log_start_offset(), metas[0].base_offset);
    // What is left reads back in full, and a second run deletes nothing.
    let records = support::read_all(&partition, 1 << 20)?;
    let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
    let expected: Vec<i64> = (metas[0].base_offset..40).collect();
    assert_eq!(offsets, expected);
    assert_eq!(partition.enforce_retention()?, 0);
    Ok(())
}

#[test]
fn idle_expired_active_segment_is_rolled_and_deleted() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Always);
    let store = fixture.open()?;
    store.create_topic("t", 1, support::overrides(&[("retention.ms", "60000")]))?;
    let partition = store.partition("t", 0)?;
    partition.append(&support::values_batch("b", 3, 10, START_MS))?;
    assert_eq!(partition.segment_count(), 1);
    fixture.clock.advance(MINUTE_MS);
    assert_eq!(
        partition.enforce_retention()?,
        0,
        "exactly retention.ms old is kept"
    );
    fixture.clock.advance(1);
    assert_eq!(partition.enforce_retention()?, 1);
    assert_eq!(partition.log_start_offset(), 3);
    assert_eq!(partition.log_end_offset(), 3);
    assert_eq!(partition.high_watermark(), 3);
    assert_eq!(partition.size_bytes(), 0);
    assert_eq!(partition.segment_count(), 1);
    assert!(matches!(
        partition.read(0, 1 << 20),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(partition.read(3, 1 << 20)?.records.is_empty());
    // The empty log keeps its offsets across a restart and goes on from them.
    drop(partition);
    drop(store);
    let store = fixture.open()?;
    let partition = store.partition("t", 0)?;
    assert_eq!(partition.log_start_offset(), 3);
    assert_eq!(partition.log_end_offset(), 3);
    let now_ms = fixture.now_ms();
    let info = partition.append(&support::values_batch("c", 1, 10, now_ms))?;
    assert_eq!(info.base_offset, 3);
    assert_eq!(info.log_start_offset, 3);
    assert_eq!(
        partition.enforce_retention()?,
        0,
        "a fresh batch is not expired"
    );
    Ok(())
}

#[test]
fn compacted_topics_are_not_deleted_by_retention() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    let store = fixture.open()?;
    store.create_topic(
        "t",
        1,
        support::overrides(&[
            ("cleanup.policy", "compact"),
            ("retention.ms", "1000"),
            ("segment.bytes", "100"),
        ]),
    )?;
    let partition = store.partition("t", 0)?;
    for index in 0..3 {
        partition.append(&support::values_batch(
            &format!("b{index}"),
            1,
            60,
            START_MS,
        ))?;
    }
    fixture.clock.advance(MINUTE_MS);
    assert_eq!(partition.enforce_retention()?, 0);
    assert_eq!(partition.log_start_offset(), 0);
    Ok(())
}

#[test]
fn delete_records_moves_the_start_durably_and_drops_whole_segments() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    {
        let store = fixture.open()?;
        store.create_topic("t", 1, support::overrides(&[("segment.bytes", "1024")]))?;
        let partition = store.partition("t", 0)?;
        for index in 0..10 {
            partition.append(&support::values_batch(
                &format!("r{index}"),
                1,
                300,
                START_MS,
            ))?;
        }
        let segments_before = partition.segment_count();
        ensure!(segments_before > 2, "setup must roll");
        assert!(matches!(
            partition.delete_records_before(11),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(partition.delete_records_before(7)?, 7);
        assert_eq!(partition.log_start_offset(), 7);
        assert!(
            partition.segment_count() < segments_before,
            "segments below the start are deleted"
        );
        assert!(matches!(
            partition.read(6, 0),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        let records = support::decode(&partition.read(7, 0)?.records)?;
        assert!(records.iter().any(|record| record.offset == 7));
        // Moving backwards is a no-op.
        assert_eq!(partition.delete_records_before(3)?, 7);
    }
    let store = fixture.open()?;
    assert_eq!(
        store.partition("t", 0)?.log_start_offset(),
        7,
        "the start survives a restart"
    );
    Ok(())
}

/// 2500-01-01T00:00:00Z: a producer with a broken clock.
const YEAR_2500_MS: i64 = 16_725_225_600_000;

#[test]
fn a_future_timestamp_ages_from_the_last_append_and_after_a_restart() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    let overrides = support::overrides(&[("segment.bytes", "100"), ("retention.ms", "600000")]);
    {
        let store = fixture.open()?;
        store.create_topic("t", 1, overrides)?;
        let partition = store.partition("t", 0)?;
        // Segments [future], [now], [now] with the last one active.
        for (index, timestamp) in [(0, YEAR_2500_MS), (1, START_MS), (2, START_MS)] {
            let tag = format!("b{index}");
            partition.append(&support::values_batch(&tag, 1, 60, timestamp))?;
        }
        fixture.clock.advance(11 * MINUTE_MS);
        assert_eq!(partition.enforce_retention()?, 3, "aged by the last append");
        assert_eq!(partition.log_start_offset(), 3);
        partition.append(&support::values_batch("b3", 1, 60, YEAR_2500_MS))?;
        partition.append(&support::values_batch("b4", 1, 60, fixture.now_ms()))?;
    }
    // After a restart the log files' modification times (the real clock)
    // stand in for the appends; move the test clock past them.
    let real_now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let store = fixture.open()?;
    let partition = store.partition("t", 0)?;
    assert_eq!(partition.enforce_retention()?, 0);
    fixture
        .clock
        .advance(real_now_ms - fixture.now_ms() + 11 * MINUTE_MS);
    assert_eq!(partition.enforce_retention()?, 2);
    assert_eq!(partition.log_start_offset(), 5);
    Ok(())
}
