//! A read of a closed segment whose files are not cached loads its index
//! without holding the partition lock, so appends to the same partition do
//! not wait for that disk read; and opening a partition reads each closed
//! segment's batch headers once, not once to check them and again to
//! rebuild producer state.

use std::sync::Arc;
use std::time::Duration;

use super::support::{self, Fixture, START_MS};
use crate::log::FlushPolicy;

/// Bound on waits for the other threads; never reached when the code is
/// right, it turns a hang into a failure.
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn an_append_completes_while_a_cold_read_loads_an_index() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    let store = fixture.open()?;
    store.create_topic("t", 1, support::overrides(&[("segment.bytes", "100")]))?;
    let partition = store.partition("t", 0)?;
    // Each batch fills a segment: offset 0 ends up in a closed segment that
    // no read has opened yet.
    for index in 0..2 {
        partition.append(&support::values_batch(
            &format!("b{index}"),
            1,
            60,
            START_MS,
        ))?;
    }
    anyhow::ensure!(partition.segment_count() > 1, "setup must roll");
    fixture.faults.close_index_gate();
    let reader = {
        let partition = Arc::clone(&partition);
        std::thread::spawn(move || partition.read(0, 0).map(|result| result.records))
    };
    if !fixture.faults.wait_at_index_gate(WAIT) {
        fixture.faults.open_index_gate();
        anyhow::bail!("the read never loaded the closed segment's index");
    }
    let (done, appended) = std::sync::mpsc::channel();
    let appender = {
        let partition = Arc::clone(&partition);
        std::thread::spawn(move || {
            let result = partition.append(&support::values_batch("late", 1, 10, START_MS));
            let _ = done.send(result.map(|info| info.base_offset));
        })
    };
    // The gate is still closed: the reader is in the middle of its load.
    let appended = appended.recv_timeout(WAIT);
    fixture.faults.open_index_gate();
    let appended =
        appended.map_err(|_| anyhow::anyhow!("the append waited for the cold index load"))?;
    assert_eq!(appended?, 2);
    appender.join().expect("appender");
    let records = reader.join().expect("reader")?;
    let records = support::decode(&records)?;
    assert_eq!(records.first().map(|record| record.offset), Some(0));
    Ok(())
}

#[test]
fn opening_a_partition_reads_each_closed_batch_header_once() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    {
        let store = fixture.open()?;
        store.create_topic("t", 1, support::overrides(&[("segment.bytes", "100")]))?;
        let partition = store.partition("t", 0)?;
        // One batch per segment: five closed segments and the active one.
        for index in 0..6 {
            partition.append(&support::values_batch(
                &format!("b{index}"),
                1,
                60,
                START_MS,
            ))?;
        }
        anyhow::ensure!(partition.segment_count() == 6, "setup must roll per batch");
    }
    let before = fixture.faults.log_reads();
    let store = fixture.open()?;
    let metas = store.partition("t", 0)?.segment_metas();
    let after = fixture.faults.log_reads();
    let dir = fixture.partition_dir("t", 0);
    for meta in &metas[..metas.len() - 1] {
        let path = crate::log::segment::segment_path(&dir, meta.base_offset, "log");
        let reads =
            after.get(&path).copied().unwrap_or(0) - before.get(&path).copied().unwrap_or(0);
        assert_eq!(reads, 1, "reads of {} while opening", path.display());
    }
    Ok(())
}
