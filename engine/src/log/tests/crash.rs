//! Crash tests through the fault-injecting I/O layer: a write torn at any
//! byte, whether the partition undoes it in process or a power cut leaves it
//! on disk, must leave exactly the acknowledged batches, and the log must go
//! on from where they end.

use std::io::Write;
use std::path::PathBuf;

use bytes::BytesMut;
use kafka_protocol::records::Record;

use super::support::{self, Fixture, START_MS};
use crate::log::batch;
use crate::log::{FlushPolicy, LogError, StoreOptions};

/// Small enough that the batches below get index entries, so torn index
/// writes are exercised too.
const INDEX_INTERVAL_BYTES: u64 = 64;

fn fixture(flush: FlushPolicy) -> Fixture {
    Fixture::with_options(StoreOptions {
        flush,
        index_interval_bytes: INDEX_INTERVAL_BYTES,
        ..StoreOptions::default()
    })
}

/// Two batches in one produce request, with distinct timestamps so that
/// they also get time index entries.
fn two_batches(tag: &str, timestamp: i64) -> BytesMut {
    let mut buffer = support::values_batch(&format!("{tag}a"), 2, 30, timestamp);
    buffer.extend_from_slice(&support::values_batch(
        &format!("{tag}b"),
        3,
        30,
        timestamp + 1,
    ));
    buffer
}

fn offsets_and_values(records: &[Record]) -> Vec<(i64, Option<bytes::Bytes>)> {
    records
        .iter()
        .map(|record| (record.offset, record.value.clone()))
        .collect()
}

/// The active segment's log file of partition `t-0`.
fn active_log(fixture: &Fixture) -> PathBuf {
    support::files_with_suffix(&fixture.partition_dir("t", 0), "log")
        .pop()
        .expect("an active segment")
}

#[test]
fn torn_append_is_undone_and_the_partition_stays_usable() -> anyhow::Result<()> {
    let fixture = fixture(FlushPolicy::Always);
    let store = fixture.open()?;
    store.create_topic("t", 1, Default::default())?;
    let partition = store.partition("t", 0)?;
    for index in 0..4 {
        let timestamp = START_MS + index * 10;
        partition.append(&support::values_batch(
            &format!("ack{index}"),
            2,
            40,
            timestamp,
        ))?;
    }
    let acknowledged = offsets_and_values(&support::read_all(&partition, 1 << 20)?);
    let end = partition.log_end_offset();
    let size = partition.size_bytes();
    drop(partition);
    drop(store);
    let produced = two_batches("torn", START_MS + 100);
    // Tear at every byte of the append's writes until the budget is enough
    // for all of them. After each failure the partition must be as before,
    // in process and after a restart.
    let mut budget = 0u64;
    let (store, partition) = loop {
        let store = fixture.open()?;
        let partition = store.partition("t", 0)?;
        fixture.faults.tear_writes_after(budget);
        let result = partition.append(&produced.clone());
        fixture.faults.tear_writes_after(u64::MAX);
        match result {
            Ok(info) => {
                assert!(
                    budget >= produced.len() as u64,
                    "append with a torn log write succeeded"
                );
                assert_eq!(info.base_offset, end);
                break (store, partition);
            }
            Err(LogError::Io { .. }) => {}
            Err(other) => panic!("torn write at byte {budget}: unexpected {other}"),
        }
        assert!(
            partition.poisoned().is_none(),
            "an undone write must not poison"
        );
        assert_eq!(partition.log_end_offset(), end, "torn at byte {budget}");
        assert_eq!(partition.high_watermark(), end);
        assert_eq!(partition.size_bytes(), size);
        assert_eq!(std::fs::metadata(active_log(&fixture))?.len(), size);
        support::check_active_index(&partition)?;
        assert_eq!(
            offsets_and_values(&support::read_all(&partition, 1 << 20)?),
            acknowledged
        );
        drop(partition);
        drop(store);
        let store = fixture.open_std()?;
        let partition = store.partition("t", 0)?;
        assert_eq!(
            partition.log_end_offset(),
            end,
            "torn at byte {budget}, restarted"
        );
        support::check_active_index(&partition)?;
        assert_eq!(
            offsets_and_values(&support::read_all(&partition, 1 << 20)?),
            acknowledged
        );
        budget += 1;
    };
    // Batches shaped differently from the torn ones land where they should
    // and every offset reads back from its own batch.
    let info = partition.append(&support::values_batch("after", 1, 150, START_MS + 200))?;
    assert_eq!(info.base_offset, end + 5);
    partition.append(&support::values_batch("last", 2, 10, START_MS + 300))?;
    support::check_active_index(&partition)?;
    let end = partition.log_end_offset();
    assert_eq!(end, acknowledged.len() as i64 + 8);
    for offset in 0..end {
        let records = support::decode(&partition.read(offset, 0)?.records)?;
        assert!(
            records.iter().any(|record| record.offset == offset),
            "read at {offset} served offsets {:?}",
            records
                .iter()
                .map(|record| record.offset)
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(
        partition.offset_for_timestamp(START_MS + 250)?,
        Some((end - 2, START_MS + 300))
    );
    // And all of it survives a restart.
    let everything = offsets_and_values(&support::read_all(&partition, 1 << 20)?);
    drop(partition);
    drop(store);
    let store = fixture.open_std()?;
    let partition = store.partition("t", 0)?;
    assert_eq!(
        offsets_and_values(&support::read_all(&partition, 1 << 20)?),
        everything
    );
    Ok(())
}

/// Appends `tail` to the active segment's log file as if a power cut had
/// left a partial write there.
fn leave_tail(fixture: &Fixture, tail: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(active_log(fixture))?;
    file.write_all(tail)?;
    Ok(file.sync_all()?)
}

/// The tails a power cut can leave after the acknowledged end `end`: every
/// prefix of the next batch, the whole batch with damaged contents, zeros
/// and garbage.
fn power_cut_tails(end: i64) -> Vec<(String, Vec<u8>)> {
    let mut next = support::values_batch("lost", 3, 20, START_MS + 1_000);
    batch::set_base_offset(&mut next, end);
    let mut tails: Vec<(String, Vec<u8>)> = (1..next.len())
        .map(|length| {
            (
                format!("{length} of {} bytes", next.len()),
                next[..length].to_vec(),
            )
        })
        .collect();
    let mut flipped = next.to_vec();
    flipped[batch::HEADER_BYTES + 3] ^= 0x10;
    tails.push(("whole batch with a flipped byte".into(), flipped));
    let mut unwritten_page = next.to_vec();
    unwritten_page[40..].fill(0);
    tails.push(("whole batch, zeros after byte 40".into(), unwritten_page));
    tails.push(("zeros".into(), vec![0; 300]));
    tails.push((
        "garbage".into(),
        (0..300u32).map(|i| (i * 7 + 3) as u8).collect(),
    ));
    tails
}

#[test]
fn power_cut_tail_is_truncated_on_recovery() -> anyhow::Result<()> {
    let fixture = fixture(FlushPolicy::Never);
    let store = fixture.open()?;
    store.create_topic("t", 1, Default::default())?;
    let partition = store.partition("t", 0)?;
    for index in 0..4 {
        partition.append(&two_batches(&format!("ack{index}"), START_MS + index * 10))?;
    }
    store.close()?;
    drop(partition);
    drop(store);
    let store = fixture.open_std()?;
    let partition = store.partition("t", 0)?;
    let mut acknowledged = offsets_and_values(&support::read_all(&partition, 1 << 20)?);
    drop(partition);
    drop(store);
    // Each round appends one batch after recovering, so the tail of the
    // next round is made for an end one further.
    let rounds = power_cut_tails(20).len();
    for (step, end) in (0..rounds).zip(20i64..) {
        let (name, tail) = power_cut_tails(end).swap_remove(step);
        let size = std::fs::metadata(active_log(&fixture))?.len();
        leave_tail(&fixture, &tail)?;
        let store = fixture.open_std()?;
        let partition = store.partition("t", 0)?;
        assert_eq!(partition.log_end_offset(), end, "tail: {name}");
        assert_eq!(partition.high_watermark(), end, "tail: {name}");
        assert_eq!(
            std::fs::metadata(active_log(&fixture))?.len(),
            size,
            "tail: {name}"
        );
        support::check_active_index(&partition)?;
        let records = offsets_and_values(&support::read_all(&partition, 1 << 20)?);
        assert_eq!(records, acknowledged, "tail: {name}");
        // The log goes on from the acknowledged end.
        let next = support::values_batch(&format!("next{step}"), 1, 10, START_MS + 2_000);
        assert_eq!(partition.append(&next)?.base_offset, end, "tail: {name}");
        acknowledged.push((
            end,
            Some(support::value(&format!("next{step}"), 0, 10).into()),
        ));
        store.close()?;
    }
    Ok(())
}

#[test]
fn whole_unacknowledged_batch_before_a_torn_one_survives() -> anyhow::Result<()> {
    // A power cut during a two-batch append that tore the second batch: the
    // first is whole and valid, so recovery keeps it, as Kafka does.
    let fixture = fixture(FlushPolicy::Never);
    let store = fixture.open()?;
    store.create_topic("t", 1, Default::default())?;
    let partition = store.partition("t", 0)?;
    partition.append(&support::values_batch("ack", 2, 10, START_MS))?;
    drop(partition);
    drop(store);
    let mut tail = two_batches("cut", START_MS + 5);
    let first = batch::verify(&tail)?.total_bytes();
    batch::set_base_offset(&mut tail[..first], 2);
    batch::set_base_offset(&mut tail[first..], 4);
    leave_tail(&fixture, &tail[..tail.len() - 7])?;
    let store = fixture.open_std()?;
    let partition = store.partition("t", 0)?;
    assert_eq!(partition.log_end_offset(), 4);
    let records = support::read_all(&partition, 1 << 20)?;
    let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3]);
    assert_eq!(
        partition
            .append(&support::values_batch("new", 1, 10, START_MS))?
            .base_offset,
        4
    );
    Ok(())
}

/// Appends one-record batches with rising timestamps, tearing writes
/// `extra_bytes` after each batch's log bytes, until an append fails.
/// Returns the acknowledged end and the failure, if any happened.
fn append_until_torn(
    partition: &crate::log::Partition,
    fixture: &Fixture,
    extra_bytes: u64,
) -> (i64, Option<LogError>) {
    for index in 0..200 {
        let produced = support::values_batch(&format!("i{index}"), 1, 10, START_MS + index);
        let end = partition.log_end_offset();
        fixture
            .faults
            .tear_writes_after(produced.len() as u64 + extra_bytes);
        let result = partition.append(&produced);
        fixture.faults.tear_writes_after(u64::MAX);
        if let Err(error) = result {
            return (end, Some(error));
        }
    }
    (partition.log_end_offset(), None)
}

#[test]
fn torn_index_write_fails_the_append_cleanly() -> anyhow::Result<()> {
    // An index entry for every batch; the entries go to the index files in
    // groups, and a group write torn at any point must not leave a log end
    // that includes a batch that is not there.
    for extra_bytes in [0, 1, 7, 8, 100, 511, 512, 513, 1000] {
        let fixture = Fixture::with_options(StoreOptions {
            flush: FlushPolicy::Never,
            index_interval_bytes: 0,
            ..StoreOptions::default()
        });
        let store = fixture.open()?;
        store.create_topic("t", 1, Default::default())?;
        let partition = store.partition("t", 0)?;
        let (end, error) = append_until_torn(&partition, &fixture, extra_bytes);
        let error = error.expect("a group of index entries is written within 200 appends");
        let context = format!("torn {extra_bytes} bytes into the index write: {error}");
        assert_eq!(partition.log_end_offset(), end, "{context}");
        assert_eq!(partition.high_watermark(), end, "{context}");
        assert_eq!(
            partition.segment_metas()[0].size,
            std::fs::metadata(active_log(&fixture))?.len()
        );
        support::check_active_index(&partition)?;
        assert!(partition.poisoned().is_none(), "{context}");
        let info = partition.append(&support::values_batch("after", 1, 10, START_MS + 500))?;
        assert_eq!(info.base_offset, end, "{context}");
        // A restart without a clean close finds the same log.
        let before = offsets_and_values(&support::read_all(&partition, 1 << 20)?);
        assert_eq!(before.len() as i64, end + 1);
        drop(partition);
        drop(store);
        let store = fixture.open_std()?;
        let partition = store.partition("t", 0)?;
        assert_eq!(
            offsets_and_values(&support::read_all(&partition, 1 << 20)?),
            before
        );
        support::check_active_index(&partition)?;
        assert_eq!(
            partition.offset_for_timestamp(START_MS + 3)?,
            Some((3, START_MS + 3))
        );
    }
    Ok(())
}
