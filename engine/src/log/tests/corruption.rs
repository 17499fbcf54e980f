//! Damage to data at rest: a flipped byte in a closed segment is reported,
//! never served; a closed segment that lost its structure takes only its own
//! partition offline; missing or garbage indexes are rebuilt from the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::support::{self, Fixture, START_MS};
use crate::log::batch::{self, BatchHeader};
use crate::log::{FlushPolicy, LogError, PartitionSlot, StoreOptions};

/// Segment files of `t-0` by extension, oldest first.
fn segment_files(fixture: &Fixture, suffix: &str) -> Vec<PathBuf> {
    support::files_with_suffix(&fixture.partition_dir("t", 0), suffix)
}

/// Byte positions of the batches in a log file.
fn batch_positions(path: &Path) -> anyhow::Result<Vec<(u64, BatchHeader)>> {
    let bytes = std::fs::read(path)?;
    let mut positions = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let header = batch::verify(&bytes[position..])?;
        positions.push((position as u64, header));
        position += header.total_bytes();
    }
    Ok(positions)
}

fn flip_byte(path: &Path, position: u64) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(path)?;
    bytes[position as usize] ^= 0x20;
    Ok(std::fs::write(path, bytes)?)
}

#[test]
fn flipped_byte_in_a_closed_segment_is_reported_not_served() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    let store = fixture.open()?;
    store.create_topic("t", 1, support::overrides(&[("segment.bytes", "1024")]))?;
    let partition = store.partition("t", 0)?;
    for index in 0..20 {
        partition.append(&support::values_batch(
            &format!("b{index}"),
            2,
            50,
            START_MS,
        ))?;
    }
    assert!(partition.segment_count() > 2);
    store.close()?;
    drop(partition);
    drop(store);
    let closed = segment_files(&fixture, "log").remove(0);
    let batches = batch_positions(&closed)?;
    let (position, damaged) = batches[1];
    flip_byte(&closed, position + batch::HEADER_BYTES as u64 + 5)?;
    // Only the contents changed, so the partition opens; the damage shows
    // when the batch is read.
    let store = fixture.open_std()?;
    let partition = store.partition("t", 0)?;
    for (offset, max_bytes) in [
        (damaged.base_offset, 0),
        (damaged.last_offset(), 1 << 20),
        (0, 1 << 20),
    ] {
        match partition.read(offset, max_bytes) {
            Err(error @ LogError::Corrupt { .. }) => {
                let LogError::Corrupt {
                    path, position: at, ..
                } = &error
                else {
                    unreachable!()
                };
                assert_eq!(path, &closed);
                assert_eq!(*at, position);
                let name = closed
                    .file_name()
                    .and_then(|name| name.to_str())
                    .unwrap_or_default();
                assert!(error.to_string().contains(name), "{error}");
            }
            other => panic!("read at {offset} of a damaged batch returned {other:?}"),
        }
    }
    // The batches around it are still served.
    let before = partition.read(0, 0)?;
    assert_eq!(support::split(&before.records)?.len(), 1);
    let after = partition.read(damaged.next_offset(), 1 << 20)?;
    assert_eq!(
        support::split(&after.records)?[0].0.base_offset,
        damaged.next_offset()
    );
    Ok(())
}

/// Two topics, one with two partitions, each with closed segments.
fn three_partitions(fixture: &Fixture) -> anyhow::Result<()> {
    let store = fixture.open()?;
    store.create_topic("t", 2, support::overrides(&[("segment.bytes", "1024")]))?;
    store.create_topic("u", 1, support::overrides(&[("segment.bytes", "1024")]))?;
    for (topic, partition) in [("t", 0), ("t", 1), ("u", 0)] {
        let partition = store.partition(topic, partition)?;
        for index in 0..20 {
            partition.append(&support::values_batch(
                &format!("b{index}"),
                2,
                50,
                START_MS,
            ))?;
        }
        assert!(partition.segment_count() > 2);
    }
    Ok(store.close()?)
}

#[test]
fn damaged_closed_segment_takes_only_its_partition_offline() -> anyhow::Result<()> {
    type Damage = fn(&Path) -> anyhow::Result<()>;
    let damages: [(&str, Damage); 2] = [
        ("truncated mid-batch", |path| {
            let len = std::fs::metadata(path)?.len();
            let file = std::fs::OpenOptions::new().write(true).open(path)?;
            Ok(file.set_len(len - 10)?)
        }),
        ("batch length runs past the end", |path| {
            let (position, _) = batch_positions(path)?[1];
            // The high byte of batch_length (offset 8 of the batch).
            flip_byte(path, position + 8)
        }),
    ];
    for (name, damage) in damages {
        let fixture = Fixture::new(FlushPolicy::Never);
        three_partitions(&fixture)?;
        let closed = segment_files(&fixture, "log").remove(0);
        damage(&closed)?;
        let store = fixture.open_std()?;
        match store.partition("t", 0) {
            Err(LogError::Unavailable {
                topic,
                partition,
                reason,
            }) => {
                assert_eq!((topic.as_str(), partition), ("t", 0));
                assert!(
                    reason.contains(&closed.display().to_string()),
                    "{name}: {reason}"
                );
            }
            Err(other) => panic!("{name}: unexpected {other}"),
            Ok(_) => panic!("{name}: a damaged closed segment was opened"),
        }
        let topic = store.topic("t").expect("topic t");
        assert!(
            matches!(topic.partitions()[0], PartitionSlot::Failed(_)),
            "{name}"
        );
        // Everything else serves reads and writes.
        for (topic, id) in [("t", 1), ("u", 0)] {
            let partition = store.partition(topic, id)?;
            assert_eq!(
                support::read_all(&partition, 1 << 20)?.len(),
                40,
                "{name}: {topic}-{id}"
            );
            let info = partition.append(&support::values_batch("more", 1, 10, START_MS))?;
            assert_eq!(info.base_offset, 40, "{name}: {topic}-{id}");
        }
    }
    Ok(())
}

/// Contents of every index file of `t-0`, by path.
fn index_files(fixture: &Fixture) -> anyhow::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for suffix in ["index", "timeindex"] {
        for path in segment_files(fixture, suffix) {
            files.insert(path.clone(), std::fs::read(&path)?);
        }
    }
    Ok(files)
}

#[test]
fn missing_or_garbage_indexes_are_rebuilt() -> anyhow::Result<()> {
    let fixture = Fixture::with_options(StoreOptions {
        flush: FlushPolicy::Never,
        index_interval_bytes: 100,
        ..StoreOptions::default()
    });
    let store = fixture.open()?;
    store.create_topic("t", 1, support::overrides(&[("segment.bytes", "2048")]))?;
    let partition = store.partition("t", 0)?;
    // Three records per batch, 10 ms apart, batches 100 ms apart: every
    // record has its own timestamp.
    let mut timestamps = Vec::new();
    for index in 0..40 {
        let entries: Vec<_> = (0..3)
            .map(|record| {
                let timestamp = START_MS + index * 100 + record * 10;
                timestamps.push(timestamp);
                (
                    None,
                    Some(support::value(&format!("b{index}"), record as usize, 30)),
                    timestamp,
                )
            })
            .collect();
        partition.append(&batch::build::batch(
            &entries,
            kafka_protocol::records::Compression::None,
        ))?;
    }
    assert!(partition.segment_count() >= 4, "setup must roll");
    let records = support::read_all(&partition, 1 << 20)?;
    store.close()?;
    drop(partition);
    drop(store);
    let written = index_files(&fixture)?;
    assert!(
        written.values().any(|bytes| bytes.len() >= 16),
        "setup must index"
    );
    let indexes = segment_files(&fixture, "index");
    let time_indexes = segment_files(&fixture, "timeindex");
    let active = indexes.len() - 1;
    // Segment 0 loses both, segment 1 gets bytes that do not parse,
    // segment 2 gets well-formed entries pointing at the wrong places, and
    // the active segment gets a mix.
    std::fs::remove_file(&indexes[0])?;
    std::fs::remove_file(&time_indexes[0])?;
    std::fs::write(&indexes[1], b"not an index")?;
    std::fs::write(&time_indexes[1], [0xAB; 25])?;
    let wrong: Vec<u8> = [(1u32, 7u32), (2, 300)]
        .iter()
        .flat_map(|(offset, position)| [offset.to_be_bytes(), position.to_be_bytes()].concat())
        .collect();
    std::fs::write(&indexes[2], &wrong)?;
    std::fs::write(&indexes[active], &wrong)?;
    std::fs::remove_file(&time_indexes[active])?;

    let store = fixture.open_std()?;
    let partition = store.partition("t", 0)?;
    assert_eq!(
        index_files(&fixture)?,
        written,
        "rebuilt indexes differ from the ones written"
    );
    support::check_active_index(&partition)?;
    assert_eq!(
        support::keyed(&support::read_all(&partition, 1 << 20)?),
        support::keyed(&records)
    );
    for record in &records {
        let served = support::decode(&partition.read(record.offset, 0)?.records)?;
        assert!(served.iter().any(|served| served.offset == record.offset));
    }
    for (offset, timestamp) in timestamps.iter().enumerate() {
        let expected = Some((offset as i64, *timestamp));
        assert_eq!(partition.offset_for_timestamp(*timestamp)?, expected);
        assert_eq!(partition.offset_for_timestamp(timestamp - 1)?, expected);
    }
    assert_eq!(
        partition.offset_for_timestamp(START_MS - 1_000)?,
        Some((0, START_MS))
    );
    let last = *timestamps.last().expect("timestamps");
    assert_eq!(partition.offset_for_timestamp(last + 1)?, None);
    Ok(())
}
