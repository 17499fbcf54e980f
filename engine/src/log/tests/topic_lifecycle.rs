//! Deleting and recreating a topic while handles of the old incarnation
//! are still live (a produce in flight, a processor step, a compaction
//! run): nothing done through an old handle may reach the new topic's
//! files, and what is acknowledged to the new topic survives a restart.

use std::path::Path;

use kafka_protocol::records::Compression;

use super::support::{self, Fixture, START_MS};
use crate::log::{FlushPolicy, LogError, Partition};

fn keyed(key: &str, value: &str) -> bytes::BytesMut {
    support::keyed_batch(&[(Some(key), Some(value))], START_MS, Compression::None)
}

/// Appends, rolls, retention and compaction through `old`, a handle of a
/// deleted incarnation; returns what each returned.
fn use_old_handle(old: &Partition) -> Vec<Result<(), LogError>> {
    let mut results = Vec::new();
    for index in 0..8 {
        // Same key again and again: compaction has something to rewrite.
        let batch = keyed("k", &format!("old-late-{index}"));
        results.push(old.append(&batch).map(|_| ()));
    }
    results.push(old.compact().map(|_| ()));
    results.push(old.enforce_retention().map(|_| ()));
    results
}

#[test]
fn an_old_partition_handle_cannot_touch_the_recreated_topic() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Always);
    let store = fixture.open()?;
    let overrides = support::overrides(&[
        ("cleanup.policy", "compact,delete"),
        ("segment.bytes", "200"),
        ("delete.retention.ms", "3600000"),
    ]);
    store.create_topic("t", 1, overrides.clone())?;
    let old = store.partition("t", 0)?;
    for index in 0..8 {
        old.append(&keyed("k", &format!("old-{index}")))?;
    }
    assert!(old.segment_metas().len() > 2, "several segments");

    store.delete_topic("t", None)?;
    store.create_topic("t", 1, overrides)?;
    let new = store.partition("t", 0)?;
    new.append(&keyed("n0", "new-0"))?;
    let results = use_old_handle(&old);
    new.append(&keyed("n1", "new-1"))?;
    let served = support::keyed(&support::read_all(&new, 1 << 20)?);
    drop((old, new, store));

    let expected = vec![
        (0, Some("n0".to_string()), Some("new-0".to_string())),
        (1, Some("n1".to_string()), Some("new-1".to_string())),
    ];
    assert_eq!(served, expected, "served before the restart");
    let store = fixture.open_std()?;
    let reopened = support::keyed(&support::read_all(&*store.partition("t", 0)?, 1 << 20)?);
    assert_eq!(reopened, expected, "after a restart");
    // The old handle failed cleanly: the topic it belonged to is gone.
    for result in &results[..8] {
        assert!(
            matches!(result, Err(LogError::UnknownTopic(name)) if name == "t"),
            "append through a deleted topic's handle: {result:?}"
        );
    }
    Ok(())
}

/// Names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| entry.expect("entry").file_name().to_string_lossy().into())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_deletion_cut_short_is_finished_on_open_and_never_adopted() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Always);
    let data = fixture.dir.path();
    let store = fixture.open()?;
    store.create_topic("t", 2, support::overrides(&[]))?;
    store.partition("t", 0)?.append(&keyed("k", "old"))?;
    let old_dir = support::topic_dir(data, "t");
    fixture.faults.set_cut_removals(true);
    store.delete_topic("t", None)?;
    fixture.faults.set_cut_removals(false);
    // Out of the namespace at once, durably; the files wait in deleting/.
    assert!(entries(&data.join("topics")).is_empty());
    let tombstone = data.join("deleting").join(old_dir.file_name().unwrap());
    assert!(
        tombstone.join("topic.json").exists(),
        "one file removed, not the rest"
    );
    let synced = fixture.faults.synced_dirs();
    assert!(synced.contains(&data.join("topics")), "{synced:?}");
    assert!(synced.contains(&data.join("deleting")), "{synced:?}");

    store.create_topic("t", 2, support::overrides(&[]))?;
    assert_ne!(support::topic_dir(data, "t"), old_dir, "a new directory");
    store.partition("t", 0)?.append(&keyed("n", "new"))?;
    drop(store);
    let store = fixture.open_std()?;
    assert!(
        entries(&data.join("deleting")).is_empty(),
        "deletion finished"
    );
    let records = support::keyed(&support::read_all(&*store.partition("t", 0)?, 1 << 20)?);
    assert_eq!(records, vec![(0, Some("n".into()), Some("new".into()))]);
    assert!(support::read_all(&*store.partition("t", 1)?, 1 << 20)?.is_empty());
    Ok(())
}

#[test]
fn a_topic_directory_without_its_id_is_migrated_on_open() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Always);
    let data = fixture.dir.path();
    let store = fixture.open()?;
    let id = store.create_topic("t", 1, support::overrides(&[]))?.id();
    store.partition("t", 0)?.append(&keyed("k", "kept"))?;
    drop(store);
    // The layout before ids were in directory names: topics/<name>/.
    std::fs::rename(support::topic_dir(data, "t"), data.join("topics/t"))?;

    let store = fixture.open_std()?;
    let id_hex = uuid::Uuid::from_bytes(id).simple().to_string();
    assert_eq!(entries(&data.join("topics")), vec![format!("t-{id_hex}")]);
    assert_eq!(store.topic("t").expect("topic t").id(), id);
    let records = support::keyed(&support::read_all(&*store.partition("t", 0)?, 1 << 20)?);
    assert_eq!(records, vec![(0, Some("k".into()), Some("kept".into()))]);
    Ok(())
}

#[test]
fn deleting_by_a_stale_id_leaves_the_new_incarnation() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Always);
    let store = fixture.open()?;
    let old_id = store.create_topic("t", 1, support::overrides(&[]))?.id();
    store.delete_topic("t", Some(old_id))?;
    let new_id = store.create_topic("t", 1, support::overrides(&[]))?.id();
    let stale = store.delete_topic("t", Some(old_id));
    assert!(matches!(stale, Err(LogError::UnknownTopic(_))), "{stale:?}");
    assert_eq!(store.topic("t").expect("topic t").id(), new_id);
    Ok(())
}
