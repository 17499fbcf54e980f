//! Operating errors injected through the I/O layer: a failed fsync poisons
//! the partition until restart, a full disk fails the append cleanly, and
//! concurrent appends share fsyncs (group commit).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::support::{self, Fixture, START_MS};
use crate::log::io::{Io, IoFile, OpenMode};
use crate::log::{FaultIo, FlushPolicy, LogError, LogStore, Partition};

#[test]
fn failed_fsync_poisons_the_partition_until_restart() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Always);
    let store = fixture.open()?;
    store.create_topic("t", 2, Default::default())?;
    let partition = store.partition("t", 0)?;
    partition.append(&support::values_batch("a", 2, 10, START_MS))?;
    partition.append(&support::values_batch("b", 2, 10, START_MS))?;
    fixture.faults.set_fail_sync(true);
    let error = partition
        .append(&support::values_batch("lost", 2, 10, START_MS))
        .expect_err("an append whose fsync fails must fail");
    let message = error.to_string();
    assert!(matches!(error, LogError::Poisoned { .. }), "{message}");
    assert!(
        message.contains("refuses writes until restart"),
        "{message}"
    );
    assert!(message.contains("fsync failed"), "{message}");
    assert!(
        message.contains(&io::Error::from_raw_os_error(libc::EIO).to_string()),
        "{message}"
    );
    assert!(partition
        .poisoned()
        .is_some_and(|reason| reason.contains("fsync failed")));
    // Nothing unacknowledged became visible.
    assert_eq!(partition.high_watermark(), 4);
    assert!(partition.read(4, 1 << 20)?.records.is_empty());
    // Working fsyncs do not make it trust the disk again.
    fixture.faults.set_fail_sync(false);
    let refused = partition.append(&support::values_batch("refused", 1, 10, START_MS));
    match refused {
        Err(LogError::Poisoned { reason, .. }) => {
            assert!(reason.contains("fsync failed"), "{reason}")
        }
        other => panic!("a poisoned partition accepted an append: {other:?}"),
    }
    // Poisoning is per partition.
    let other = store.partition("t", 1)?;
    assert_eq!(
        other
            .append(&support::values_batch("c", 1, 10, START_MS))?
            .base_offset,
        0
    );
    drop(partition);
    drop(other);
    drop(store);
    // After a restart the acknowledged records are there (the failed batch
    // may or may not be: it was never acknowledged) and writes resume.
    let store = fixture.open()?;
    let partition = store.partition("t", 0)?;
    assert!(partition.poisoned().is_none());
    let end = partition.log_end_offset();
    assert!(end == 4 || end == 6, "log end {end}");
    let records = support::read_all(&partition, 1 << 20)?;
    let values: Vec<_> = records[..4]
        .iter()
        .map(|record| record.value.clone())
        .collect();
    let expected: Vec<_> = ["a", "a", "b", "b"]
        .iter()
        .zip([0, 1, 0, 1])
        .map(|(tag, index)| Some(support::value(tag, index, 10).into()))
        .collect();
    assert_eq!(values, expected);
    assert_eq!(
        partition
            .append(&support::values_batch("d", 1, 10, START_MS))?
            .base_offset,
        end
    );
    Ok(())
}

#[test]
fn failed_fsync_at_a_roll_poisons_the_partition() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    let store = fixture.open()?;
    store.create_topic("t", 1, support::overrides(&[("segment.bytes", "100")]))?;
    let partition = store.partition("t", 0)?;
    partition.append(&support::values_batch("a", 1, 60, START_MS))?;
    fixture.faults.set_fail_sync(true);
    let error = partition
        .append(&support::values_batch("b", 1, 60, START_MS))
        .expect_err("a roll whose fsync fails must fail the append");
    assert!(
        error.to_string().contains("fsync of rolled segment failed"),
        "{error}"
    );
    assert_eq!(partition.segment_count(), 1);
    assert_eq!(partition.log_end_offset(), 1);
    fixture.faults.set_fail_sync(false);
    assert!(matches!(
        partition.append(&support::values_batch("c", 1, 60, START_MS)),
        Err(LogError::Poisoned { .. })
    ));
    Ok(())
}

fn is_disk_full(error: &LogError) -> bool {
    matches!(error, LogError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
}

#[test]
fn full_disk_fails_the_append_cleanly() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Always);
    let store = fixture.open()?;
    // Small segments: the first full-disk append falls on a roll (a new
    // segment cannot be created), the second one does not.
    store.create_topic("t", 1, support::overrides(&[("segment.bytes", "400")]))?;
    let partition = store.partition("t", 0)?;
    let mut expected = Vec::new();
    let mut append = |tag: &str| -> anyhow::Result<i64> {
        let info = partition.append(&support::values_batch(tag, 2, 50, START_MS))?;
        expected.extend([support::value(tag, 0, 50), support::value(tag, 1, 50)]);
        Ok(info.base_offset)
    };
    assert_eq!(append("a")?, 0);
    assert_eq!(append("b")?, 2);
    for attempt in 0..2 {
        let (segments, size, end) = (
            partition.segment_count(),
            partition.size_bytes(),
            partition.log_end_offset(),
        );
        let active_file = support::files_with_suffix(&fixture.partition_dir("t", 0), "log")
            .pop()
            .expect("an active segment");
        let file_size = std::fs::metadata(&active_file)?.len();
        fixture.faults.set_disk_full(true);
        let error = partition
            .append(&support::values_batch("full", 2, 50, START_MS))
            .expect_err("an append on a full disk must fail");
        fixture.faults.set_disk_full(false);
        assert!(is_disk_full(&error), "attempt {attempt}: {error}");
        assert!(
            error.to_string().contains("No space left on device"),
            "{error}"
        );
        assert!(
            partition.poisoned().is_none(),
            "a full disk must not poison"
        );
        assert_eq!(
            segments,
            attempt + 1,
            "attempt {attempt} is set up as planned"
        );
        assert_eq!(partition.segment_count(), segments);
        assert_eq!(partition.size_bytes(), size);
        assert_eq!(partition.log_end_offset(), end);
        assert_eq!(partition.high_watermark(), end);
        assert_eq!(
            std::fs::metadata(&active_file)?.len(),
            file_size,
            "nothing written"
        );
        assert_eq!(append(&format!("c{attempt}"))?, end);
    }
    assert_eq!(partition.segment_count(), 2);
    let values = |records: Vec<kafka_protocol::records::Record>| -> Vec<Vec<u8>> {
        records
            .into_iter()
            .map(|record| record.value.unwrap_or_default().to_vec())
            .collect()
    };
    assert_eq!(values(support::read_all(&partition, 1 << 20)?), expected);
    drop(partition);
    drop(store);
    let store = fixture.open()?;
    let partition = store.partition("t", 0)?;
    assert_eq!(values(support::read_all(&partition, 1 << 20)?), expected);
    Ok(())
}

/// Holds back log fsyncs, once armed, until a number of log writes have
/// happened: concurrent appenders then pile up behind one fsync however fast
/// the disk is, which makes group commit observable without timing.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    log_writes: usize,
    release_at: Option<usize>,
}

impl Gate {
    fn arm(&self, writes: usize) {
        let mut state = self.state.lock().expect("gate lock");
        state.release_at = Some(state.log_writes + writes);
    }
    fn wrote(&self) {
        self.state.lock().expect("gate lock").log_writes += 1;
        self.changed.notify_all();
    }
    /// Waits for the armed number of writes; gives up after a bound so that
    /// a broken group commit fails the test's assertions instead of hanging.
    fn wait(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut state = self.state.lock().expect("gate lock");
        while state.release_at.is_some_and(|at| state.log_writes < at) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self.changed.wait_timeout(state, left).expect("gate lock").0;
        }
    }
}

/// [`FaultIo`] with a [`Gate`] on the log files.
struct GatedIo {
    inner: FaultIo,
    gate: Arc<Gate>,
}

struct GatedFile {
    inner: Arc<dyn IoFile>,
    gate: Arc<Gate>,
    is_log: bool,
}

impl IoFile for GatedFile {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, position)
    }
    fn write_all_at(&self, data: &[u8], position: u64) -> io::Result<()> {
        self.inner.write_all_at(data, position)?;
        if self.is_log {
            self.gate.wrote();
        }
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        if self.is_log {
            self.gate.wait();
        }
        self.inner.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl Io for GatedIo {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn IoFile>> {
        Ok(Arc::new(GatedFile {
            inner: self.inner.open(path, mode)?,
            gate: self.gate.clone(),
            is_log: path.extension().is_some_and(|ext| ext == "log"),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.read_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
}

/// One round of `threads` appenders started together behind an armed gate;
/// returns their offsets and the fsyncs the round took.
fn append_round(
    partition: &Arc<Partition>,
    fixture: &Fixture,
    gate: &Gate,
    round: usize,
    threads: usize,
) -> anyhow::Result<(Vec<i64>, u64)> {
    let syncs_before = fixture.faults.syncs();
    // The first fsync waits until every thread has written its batch.
    gate.arm(threads);
    let start = Arc::new(Barrier::new(threads));
    let (done, results) = std::sync::mpsc::channel();
    for thread in 0..threads {
        let partition = partition.clone();
        let start = start.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            start.wait();
            let batch = support::values_batch(&format!("r{round}t{thread}"), 1, 10, START_MS);
            let _ = done.send(partition.append(&batch).map(|info| info.base_offset));
        });
    }
    // A bound, so that appenders stranded without a flusher fail the test
    // instead of hanging it.
    let mut offsets = Vec::new();
    for _ in 0..threads {
        let result = results
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow::anyhow!("round {round}: an append never returned (no flusher)"))?;
        offsets.push(result?);
    }
    Ok((offsets, fixture.faults.syncs() - syncs_before))
}

#[test]
fn concurrent_appends_share_fsyncs() -> anyhow::Result<()> {
    const THREADS: usize = 8;
    // Many rounds: whether a woken appender finds the flush still marked in
    // flight is up to the scheduler, and each round is a chance to strand it.
    const ROUNDS: usize = 30;
    let fixture = Fixture::new(FlushPolicy::Always);
    let gate = Arc::new(Gate::default());
    let io = Arc::new(GatedIo {
        inner: FaultIo::new(fixture.faults.clone()),
        gate: gate.clone(),
    });
    let store = LogStore::open(
        fixture.dir.path(),
        fixture.options.clone(),
        io,
        fixture.clock.clone(),
    )?;
    store.create_topic("t", 1, Default::default())?;
    let partition = store.partition("t", 0)?;
    let mut offsets = Vec::new();
    for round in 0..ROUNDS {
        let (round_offsets, syncs) = append_round(&partition, &fixture, &gate, round, THREADS)?;
        // One fsync for the first writer, one for everyone who queued
        // behind it.
        assert!(
            syncs <= 2,
            "round {round}: {syncs} fsyncs for {THREADS} concurrent appends"
        );
        offsets.extend(round_offsets);
    }
    let appends = (ROUNDS * THREADS) as i64;
    offsets.sort_unstable();
    assert_eq!(offsets, (0..appends).collect::<Vec<_>>());
    assert_eq!(partition.high_watermark(), appends);
    let mut values: Vec<_> = support::read_all(&partition, 1 << 20)?
        .into_iter()
        .map(|record| record.value)
        .collect();
    values.sort();
    let mut expected: Vec<_> = (0..ROUNDS)
        .flat_map(|round| (0..THREADS).map(move |thread| (round, thread)))
        .map(|(round, thread)| Some(support::value(&format!("r{round}t{thread}"), 0, 10).into()))
        .collect();
    expected.sort();
    assert_eq!(values, expected);
    Ok(())
}
