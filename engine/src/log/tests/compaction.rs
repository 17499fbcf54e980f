//! Compaction (`cleanup.policy=compact`) with an injected clock: the latest
//! value per key survives at its original offset, tombstones last until
//! `delete.retention.ms`, unkeyed records stay, compressed batches are
//! rewritten in their codec, and the result reopens with consistent indexes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use bytes::Bytes;
use kafka_protocol::records::Compression;

use super::support::{self, Fixture, START_MS};
use crate::log::batch::{self, BatchHeader};
use crate::log::{FlushPolicy, LogError, Partition, StoreOptions};

const HOUR_MS: i64 = 3_600_000;

type Row = (i64, Option<String>, Option<String>);

fn compacted_topic(fixture: &Fixture, segment_bytes: &str) -> anyhow::Result<crate::log::LogStore> {
    let store = fixture.open()?;
    store.create_topic(
        "t",
        1,
        support::overrides(&[
            ("cleanup.policy", "compact"),
            ("segment.bytes", segment_bytes),
            ("delete.retention.ms", &HOUR_MS.to_string()),
        ]),
    )?;
    Ok(store)
}

/// Every batch served from the log start, as stored.
fn served_batches(partition: &Partition) -> anyhow::Result<Vec<(BatchHeader, Bytes)>> {
    let mut batches = Vec::new();
    let mut offset = partition.log_start_offset();
    while offset < partition.high_watermark() {
        let served = support::split(&partition.read(offset, 1 << 20)?.records)?;
        let Some((last, _)) = served.last() else {
            break;
        };
        offset = last.next_offset();
        batches.extend(served);
    }
    Ok(batches)
}

/// What compaction must leave of `rows`: in closed segments (below
/// `active_base`) a keyed record only if it is the latest for its key, and
/// a tombstone only while `keep_tombstones`; everything else as it was.
fn compacted(rows: &[Row], active_base: i64, keep_tombstones: bool) -> Vec<Row> {
    let latest: HashMap<&String, i64> = rows
        .iter()
        .filter_map(|(offset, key, _)| key.as_ref().map(|key| (key, *offset)))
        .collect();
    rows.iter()
        .filter(|(offset, key, value)| {
            let Some(key) = key else {
                return true;
            };
            *offset >= active_base
                || (latest[key] == *offset && (value.is_some() || keep_tombstones))
        })
        .cloned()
        .collect()
}

/// A deterministic pseudo-random sequence (64-bit LCG), so that the data
/// set is varied but every run is the same.
struct Sequence(u64);

impl Sequence {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// Appends 80 batches of keyed records (some unkeyed, some tombstones) a
/// second apart; returns the rows and each batch's last offset.
fn append_keyed(
    partition: &Partition,
    fixture: &Fixture,
) -> anyhow::Result<(Vec<Row>, BTreeSet<i64>)> {
    let mut sequence = Sequence(7);
    let mut rows = Vec::new();
    let mut last_offsets = BTreeSet::new();
    for index in 0..80 {
        let records: Vec<(Option<String>, Option<String>)> = (0..1 + sequence.below(3))
            .map(|record| {
                let key = (sequence.below(8) != 0).then(|| format!("k{}", sequence.below(7)));
                let tombstone = key.is_some() && sequence.below(6) == 0;
                (key, (!tombstone).then(|| format!("v{index}.{record}")))
            })
            .collect();
        let borrowed: Vec<_> = records
            .iter()
            .map(|(key, value)| (key.as_deref(), value.as_deref()))
            .collect();
        let info = partition.append(&support::keyed_batch(
            &borrowed,
            fixture.now_ms(),
            Compression::None,
        ))?;
        rows.extend(
            (info.base_offset..)
                .zip(records)
                .map(|(offset, (key, value))| (offset, key, value)),
        );
        last_offsets.insert(info.last_offset);
        fixture.clock.advance(1_000);
    }
    Ok((rows, last_offsets))
}

/// Contents of the index files of `t-0`.
fn index_files(fixture: &Fixture) -> anyhow::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let dir = fixture.partition_dir("t", 0);
    let mut files = BTreeMap::new();
    for suffix in ["index", "timeindex"] {
        for path in support::files_with_suffix(&dir, suffix) {
            files.insert(path.clone(), std::fs::read(&path)?);
        }
    }
    Ok(files)
}

#[test]
fn compaction_keeps_the_latest_value_per_key() -> anyhow::Result<()> {
    let fixture = Fixture::with_options(StoreOptions {
        flush: FlushPolicy::Never,
        index_interval_bytes: 0,
        ..StoreOptions::default()
    });
    let store = compacted_topic(&fixture, "400")?;
    let partition = store.partition("t", 0)?;
    let (rows, last_offsets) = append_keyed(&partition, &fixture)?;
    let end = partition.log_end_offset();
    let active_base = partition
        .segment_metas()
        .last()
        .expect("active")
        .base_offset;
    assert!(partition.segment_count() > 5, "setup must roll");
    assert!(
        rows.iter().any(|(_, key, _)| key.is_none()),
        "setup must have unkeyed records"
    );
    assert!(
        rows.iter()
            .any(|(offset, key, value)| key.is_some() && value.is_none() && *offset < active_base),
        "setup must have tombstones in closed segments"
    );

    // Tombstones are young: kept.
    let stats = partition.compact()?;
    let expected = compacted(&rows, active_base, true);
    assert_eq!(
        support::keyed(&support::read_all(&partition, 1 << 20)?),
        expected
    );
    assert_eq!(stats.records_removed, (rows.len() - expected.len()) as u64);
    assert!(stats.segments_rewritten > 0 && stats.bytes_after < stats.bytes_before);
    // Rewritten batches end where the originals did.
    for (header, _) in served_batches(&partition)? {
        assert!(last_offsets.contains(&header.last_offset()), "{header:?}");
    }
    assert_eq!(
        partition.compact()?.records_removed,
        0,
        "a second run finds nothing"
    );
    let before_expiry = index_files(&fixture)?;

    // Past delete.retention.ms the tombstones in closed segments go too.
    fixture.clock.advance(2 * HOUR_MS);
    let stats = partition.compact()?;
    let expected_final = compacted(&rows, active_base, false);
    assert!(expected_final.len() < expected.len());
    assert_eq!(
        stats.records_removed,
        (expected.len() - expected_final.len()) as u64
    );
    assert_eq!(
        support::keyed(&support::read_all(&partition, 1 << 20)?),
        expected_final
    );
    assert_eq!(partition.log_end_offset(), end);

    // Reopening finds indexes consistent with the rewritten logs, even if a
    // crash between the log and index renames left a stale index behind.
    // (Closing writes the active segment's pending index entries.)
    store.close()?;
    let after = index_files(&fixture)?;
    let stale = before_expiry
        .iter()
        .find(|(path, bytes)| {
            after.get(*path) != Some(*bytes) && path.extension().is_some_and(|ext| ext == "index")
        })
        .expect("the second run rewrote some segment");
    std::fs::write(stale.0, stale.1)?;
    drop(partition);
    drop(store);
    let store = fixture.open_std()?;
    let partition = store.partition("t", 0)?;
    assert_eq!(index_files(&fixture)?, after);
    support::check_active_index(&partition)?;
    assert_eq!(
        support::keyed(&support::read_all(&partition, 1 << 20)?),
        expected_final
    );
    for (offset, _, _) in &expected_final {
        let records = support::decode(&partition.read(*offset, 0)?.records)?;
        assert!(
            records.iter().any(|record| record.offset == *offset),
            "read at {offset}"
        );
    }
    assert_eq!(partition.log_end_offset(), end);
    let next = support::keyed_batch(
        &[(Some("k0"), Some("after"))],
        fixture.now_ms(),
        Compression::None,
    );
    assert_eq!(partition.append(&next.clone())?.base_offset, end);
    Ok(())
}

#[test]
fn segments_emptied_by_compaction_are_skipped() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    // Every batch gets its own segment.
    let store = compacted_topic(&fixture, "100")?;
    let partition = store.partition("t", 0)?;
    for (key, value) in [("a", "1"), ("a", "2"), ("b", "1"), ("a", "3")] {
        let batch = support::keyed_batch(&[(Some(key), Some(value))], START_MS, Compression::None);
        partition.append(&batch)?;
    }
    assert_eq!(partition.segment_count(), 4);
    assert_eq!(partition.compact()?.records_removed, 2);
    let sizes: Vec<u64> = partition
        .segment_metas()
        .iter()
        .map(|meta| meta.size)
        .collect();
    assert_eq!(&sizes[..2], [0, 0]);
    let expected: Vec<Row> = vec![
        (2, Some("b".into()), Some("1".into())),
        (3, Some("a".into()), Some("3".into())),
    ];
    // The log still starts at 0; a read there continues in the next
    // segment that has data.
    assert_eq!(partition.log_start_offset(), 0);
    assert_eq!(
        support::keyed(&support::decode(&partition.read(0, 1 << 20)?.records)?)[0],
        expected[0]
    );
    assert_eq!(
        support::keyed(&support::read_all(&partition, 1 << 20)?),
        expected
    );
    drop(partition);
    drop(store);
    let store = fixture.open_std()?;
    let partition = store.partition("t", 0)?;
    assert_eq!(partition.log_start_offset(), 0);
    assert_eq!(partition.log_end_offset(), 4);
    assert_eq!(
        support::keyed(&support::read_all(&partition, 1 << 20)?),
        expected
    );
    Ok(())
}

#[test]
fn compressed_batches_are_compacted_in_their_codec() -> anyhow::Result<()> {
    for (compression, codec) in [
        (Compression::Gzip, 1),
        (Compression::Snappy, 2),
        (Compression::Lz4, 3),
        (Compression::Zstd, 4),
    ] {
        let fixture = Fixture::new(FlushPolicy::Never);
        let store = compacted_topic(&fixture, "100")?;
        let partition = store.partition("t", 0)?;
        let batches: [&[(Option<&str>, Option<&str>)]; 3] = [
            &[
                (Some("k1"), Some("a")),
                (Some("k2"), Some("a")),
                (None, Some("x")),
                (Some("k4"), Some("d")),
                (Some("k3"), Some("a")),
            ],
            &[(Some("k1"), Some("b")), (Some("k2"), None)],
            &[(Some("k3"), Some("c"))],
        ];
        for records in batches {
            partition.append(&support::keyed_batch(records, START_MS, compression))?;
        }
        let row = |offset: i64, key: Option<&str>, value: Option<&str>| -> Row {
            (offset, key.map(Into::into), value.map(Into::into))
        };
        let young = vec![
            row(2, None, Some("x")),
            row(3, Some("k4"), Some("d")),
            row(5, Some("k1"), Some("b")),
            row(6, Some("k2"), None),
            row(7, Some("k3"), Some("c")),
        ];
        assert_eq!(partition.compact()?.records_removed, 3, "{compression:?}");
        assert_eq!(
            support::keyed(&support::read_all(&partition, 1 << 20)?),
            young,
            "{compression:?}"
        );
        let served = served_batches(&partition)?;
        assert!(
            served
                .iter()
                .all(|(header, _)| header.compression() == codec),
            "{compression:?}"
        );
        // The kept records are copied as stored: the batch keeps its base
        // offset (so their offset deltas stay valid) and last offset, as in
        // Kafka's cleaner.
        let (rewritten, _) = served[0];
        assert_eq!(
            (
                rewritten.base_offset,
                rewritten.last_offset(),
                rewritten.records_count
            ),
            (0, 4, 2)
        );

        fixture.clock.advance(2 * HOUR_MS);
        assert_eq!(partition.compact()?.records_removed, 1, "{compression:?}");
        let old: Vec<Row> = young
            .iter()
            .filter(|(offset, _, _)| *offset != 6)
            .cloned()
            .collect();
        assert_eq!(
            support::keyed(&support::read_all(&partition, 1 << 20)?),
            old,
            "{compression:?}"
        );
        drop(partition);
        drop(store);
        let store = fixture.open_std()?;
        let partition = store.partition("t", 0)?;
        assert_eq!(
            support::keyed(&support::read_all(&partition, 1 << 20)?),
            old,
            "{compression:?}"
        );
    }
    Ok(())
}

#[test]
fn leftover_cleaned_files_are_removed_on_open() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    let store = compacted_topic(&fixture, "100")?;
    let partition = store.partition("t", 0)?;
    for value in ["1", "2"] {
        partition.append(&support::keyed_batch(
            &[(Some("k"), Some(value))],
            START_MS,
            Compression::None,
        ))?;
    }
    let records = support::keyed(&support::read_all(&partition, 1 << 20)?);
    drop(partition);
    drop(store);
    // What a compaction interrupted before its renames leaves behind.
    let dir = fixture.partition_dir("t", 0);
    let leftovers: Vec<PathBuf> = ["log", "index", "timeindex"]
        .iter()
        .map(|suffix| dir.join(format!("{:020}.{suffix}.cleaned", 0)))
        .collect();
    for path in &leftovers {
        std::fs::write(path, b"half-written compaction output")?;
    }
    let store = fixture.open_std()?;
    for path in &leftovers {
        assert!(!path.exists(), "{} was not removed", path.display());
    }
    let partition = store.partition("t", 0)?;
    assert_eq!(
        support::keyed(&support::read_all(&partition, 1 << 20)?),
        records
    );
    assert_eq!(partition.compact()?.records_removed, 1);
    Ok(())
}

/// Compaction that meets a batch header it cannot parse in a closed segment
/// (bit rot after the partition opened) refuses with `LogError::Corrupt`
/// naming the file and byte, and leaves the segment as it was: it must not
/// take the header for the end of the segment and drop the batches after it.
#[test]
fn unreadable_header_refuses_compaction_and_keeps_the_segment() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    let store = fixture.open()?;
    store.create_topic(
        "t",
        2,
        support::overrides(&[("cleanup.policy", "compact"), ("segment.bytes", "600")]),
    )?;
    for id in [0, 1] {
        let partition = store.partition("t", id)?;
        for index in 0..30 {
            // Key k0 repeats, so every run has something to remove.
            let key = if index % 3 == 0 {
                "k0".to_string()
            } else {
                format!("k{index}")
            };
            let value = format!("v{index}");
            let batch = support::keyed_batch(
                &[(Some(key.as_str()), Some(value.as_str()))],
                START_MS,
                Compression::None,
            );
            partition.append(&batch)?;
        }
        assert!(partition.segment_count() > 2, "setup must roll");
    }
    let partition = store.partition("t", 0)?;
    let first = partition.segment_metas()[0].clone();
    let path = fixture.partition_dir("t", 0).join(format!("{:020}.log", 0));
    let original = std::fs::read(&path)?;
    // The third batch's magic byte (offset 16 of the batch): its header no
    // longer parses. The file keeps its length, so the open store serves on.
    let mut position = 0usize;
    for _ in 0..2 {
        position += batch::verify(&original[position..])?.total_bytes();
    }
    let later = batch::verify(&original[position..])?;
    let after_damage = later.next_offset();
    assert!(
        after_damage < first.next_offset,
        "setup: a batch after the damaged one"
    );
    let mut damaged = original.clone();
    damaged[position + 16] ^= 0x20;
    std::fs::write(&path, &damaged)?;
    let before: Vec<Row> = support::keyed(&support::decode(
        &partition.read(after_damage, 1 << 20)?.records,
    )?);

    match partition.compact() {
        Err(LogError::Corrupt {
            path: at_path,
            position: at,
            ..
        }) => {
            assert_eq!(at_path, path);
            assert_eq!(at, position as u64);
        }
        other => panic!("compaction over a damaged header returned {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path)?,
        damaged,
        "the damaged segment is untouched"
    );
    // The batches after the damage are still served as they were.
    assert_eq!(
        support::keyed(&support::decode(
            &partition.read(after_damage, 1 << 20)?.records
        )?),
        before
    );
    // Other partitions keep compacting, through the store's round too.
    store.run_maintenance();
    let other = store.partition("t", 1)?;
    assert_eq!(
        other.compact()?.records_removed,
        0,
        "the round compacted t-1"
    );
    // Only the active segment may still hold superseded k0 records.
    let active_base = other.segment_metas().last().expect("active").base_offset;
    let k0: Vec<i64> = support::keyed(&support::read_all(&other, 1 << 20)?)
        .into_iter()
        .filter(|(_, key, _)| key.as_deref() == Some("k0"))
        .map(|(offset, _, _)| offset)
        .collect();
    assert!(
        k0[..k0.len() - 1]
            .iter()
            .all(|offset| *offset >= active_base),
        "{k0:?}"
    );
    Ok(())
}

/// The keyed data set (seven keys, tombstones, unkeyed records) on a
/// compacted topic whose key map holds four 24-byte slots: three keys a
/// pass.
struct InPasses {
    fixture: Fixture,
    /// Kept open for the partition.
    _store: crate::log::LogStore,
    partition: std::sync::Arc<Partition>,
    rows: Vec<Row>,
    /// Base offset of the active segment, which compaction leaves alone.
    active_base: i64,
}

fn keyed_in_passes() -> anyhow::Result<InPasses> {
    let fixture = Fixture::with_options(StoreOptions {
        flush: FlushPolicy::Never,
        compaction_memory_bytes_max: 4 * 24,
        ..StoreOptions::default()
    });
    let store = compacted_topic(&fixture, "400")?;
    let partition = store.partition("t", 0)?;
    let (rows, _) = append_keyed(&partition, &fixture)?;
    let active_base = partition
        .segment_metas()
        .last()
        .expect("active")
        .base_offset;
    Ok(InPasses {
        fixture,
        _store: store,
        partition,
        rows,
        active_base,
    })
}

/// A key map smaller than the partition's keys: compaction runs in passes
/// (each mapping as many keys as the budget holds) and leaves exactly what
/// one pass with every key would, tombstones and unkeyed records included.
#[test]
fn compaction_in_passes_matches_one_pass() -> anyhow::Result<()> {
    let InPasses {
        fixture,
        partition,
        rows,
        active_base,
        _store,
    } = keyed_in_passes()?;
    let stats = partition.compact()?;
    assert!(stats.passes > 2, "{stats:?}");
    assert_eq!(stats.key_map_bytes, 4 * 24, "{stats:?}");
    let expected = compacted(&rows, active_base, true);
    assert_eq!(stats.records_removed, (rows.len() - expected.len()) as u64);
    assert_eq!(
        support::keyed(&support::read_all(&partition, 1 << 20)?),
        expected
    );
    fixture.clock.advance(2 * HOUR_MS);
    partition.compact()?;
    assert_eq!(
        support::keyed(&support::read_all(&partition, 1 << 20)?),
        compacted(&rows, active_base, false)
    );
    Ok(())
}

/// Compaction in passes with tombstones already past `delete.retention.ms`
/// on the first run: a tombstone may only go once the pass that drops it
/// has also mapped its key, or a value it superseded in an earlier part of
/// the log comes back (the deleted key reappears).
#[test]
fn expired_tombstones_in_passes_never_bring_a_deleted_key_back() -> anyhow::Result<()> {
    let InPasses {
        fixture,
        partition,
        rows,
        active_base,
        _store,
    } = keyed_in_passes()?;
    fixture.clock.advance(2 * HOUR_MS);
    let stats = partition.compact()?;
    assert!(stats.passes > 2, "{stats:?}");
    assert_eq!(
        support::keyed(&support::read_all(&partition, 1 << 20)?),
        compacted(&rows, active_base, false)
    );
    Ok(())
}
