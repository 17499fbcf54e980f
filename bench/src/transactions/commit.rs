//! Commit latency: the EndTxn round trip (request written → response
//! read) of small transactions over 1, 3, 10… partitions, against a broker
//! with `flush=always`. Sluice answers EndTxn once the Prepare state is
//! fsynced to its transaction log, a marker is written and fsynced in
//! every partition (one after another), and the Complete state is fsynced:
//! 2 + N fdatasyncs in sequence for N partitions.
//!
//! So after every commit, on the same disk at the same moment, the
//! physical floor ([`Floor`]): one small append + fdatasync; the 2 + N of
//! them in sequence, as the commit does them; and 2 in sequence around N
//! issued at once by N threads, what the commit would cost if the markers'
//! fsyncs overlapped.
//!
//! Each transaction: AddPartitionsToTxn (timed too: it begins the
//! transaction, one transaction-log fsync), one Produce with `records`
//! 1 KiB records per partition (acks=all, timed), EndTxn commit.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, Context};
use sluice::client::Connection;

use super::protocol::{self, Batches};
use crate::kafka::now_ms;

/// Bytes appended before each fdatasync of the floor: about a marker.
const FLOOR_APPEND_BYTES: usize = 100;

/// One partition count's round trips, in milliseconds.
#[derive(Debug, Default)]
pub(crate) struct CommitSamples {
    pub(crate) end_txn_ms: Vec<f64>,
    pub(crate) add_partitions_ms: Vec<f64>,
    pub(crate) produce_ms: Vec<f64>,
    /// The disk's floor, sampled after each commit.
    pub(crate) floor: Vec<FloorSample>,
}

/// `commits` transactions of `records` records per partition over every
/// partition of `topic` (`leaders` by partition), one producer.
pub(crate) async fn measure(
    brokers: &str,
    topic: &str,
    leaders: &[String],
    commits: usize,
    records: usize,
    floor: &mut Floor,
) -> anyhow::Result<CommitSamples> {
    let id = format!("sluice-bench-{}-{topic}", std::process::id());
    let mut control = Connection::open(&protocol::coordinator(brokers, &id).await?).await?;
    let producer = protocol::init_producer(&mut control, Some(&id)).await?;
    // One connection per leader, carrying all its partitions' batches.
    let mut by_leader: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (partition, leader) in (0..).zip(leaders) {
        by_leader.entry(leader).or_default().push(partition);
    }
    let mut connections = Vec::new();
    for (leader, partitions) in by_leader {
        connections.push((Connection::open(leader).await?, partitions));
    }
    let mut batches: Vec<Batches> = leaders
        .iter()
        .map(|_| Batches::new(&producer, records, 1024, now_ms()))
        .collect();
    let all: Vec<i32> = (0..leaders.len() as i32).collect();
    let mut samples = CommitSamples::default();
    for _ in 0..commits {
        let started = Instant::now();
        protocol::add_partitions(&mut control, &producer, topic, &all).await?;
        samples.add_partitions_ms.push(ms_since(started));
        let started = Instant::now();
        for (connection, partitions) in &mut connections {
            let sent: Vec<(i32, bytes::Bytes)> = partitions
                .iter()
                .map(|p| (*p, batches[*p as usize].next()))
                .collect();
            let request = protocol::produce_request(&producer, topic, sent.clone());
            let response = connection.call(request).await?;
            let code = protocol::produce_error(&response);
            if code != 0 {
                bail!("transactional produce to {topic}: error {code}");
            }
            for (partition, batch) in sent {
                batches[partition as usize].reuse(batch);
            }
        }
        samples.produce_ms.push(ms_since(started));
        let started = Instant::now();
        protocol::end_transaction(&mut control, &producer, true).await?;
        samples.end_txn_ms.push(ms_since(started));
        // Blocking, between transactions: nothing else runs meanwhile.
        samples.floor.push(floor.sample()?);
    }
    Ok(samples)
}

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

/// The disk's own cost of what a commit makes durable, sampled between
/// the commits so both see the same moment of a shared machine. Files
/// stand for the transaction log (`journal`) and for `partitions`
/// partitions twice: synced one after another by the caller's thread, as
/// the commit does now, and each owned by a thread of its own so that they
/// can be fdatasynced at once.
pub(crate) struct Floor {
    journal: File,
    partitions: Vec<File>,
    workers: Vec<mpsc::Sender<()>>,
    done: mpsc::Receiver<std::io::Result<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// One sample of each of the floor's figures, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FloorSample {
    /// One append + fdatasync.
    pub(crate) fsync_ms: f64,
    /// What Sluice's commit does now: journal, every partition one after
    /// another, journal (2 + N in sequence).
    pub(crate) sequential_ms: f64,
    /// The same with the partitions' fdatasyncs issued at once.
    pub(crate) parallel_ms: f64,
}

fn append_and_sync(file: &mut File) -> std::io::Result<()> {
    file.write_all(&[b'x'; FLOOR_APPEND_BYTES])?;
    file.sync_data()
}

impl Floor {
    /// Creates the files in `dir` (removed again on drop).
    pub(crate) fn new(dir: &Path, partitions: usize) -> anyhow::Result<Self> {
        let create = |name: String| {
            let path = dir.join(name);
            let file = File::create(&path).context("creating the fsync floor's files")?;
            anyhow::Ok((path, file))
        };
        // Unlinked at once: the open files stay writable, nothing is left.
        let unlinked = |name: String| {
            let (path, file) = create(name)?;
            std::fs::remove_file(path)?;
            anyhow::Ok(file)
        };
        let journal = unlinked("floor-journal.bin".into())?;
        let partition_files = (0..partitions)
            .map(|index| unlinked(format!("floor-partition-{index}.bin")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (done_tx, done) = mpsc::channel();
        let (mut workers, mut threads) = (Vec::new(), Vec::new());
        for index in 0..partitions {
            let mut file = unlinked(format!("floor-parallel-{index}.bin"))?;
            let (go, go_rx) = mpsc::channel::<()>();
            let done_tx = done_tx.clone();
            threads.push(std::thread::spawn(move || {
                while go_rx.recv().is_ok() {
                    if done_tx.send(append_and_sync(&mut file)).is_err() {
                        break;
                    }
                }
            }));
            workers.push(go);
        }
        Ok(Self {
            journal,
            partitions: partition_files,
            workers,
            done,
            threads,
        })
    }

    /// Has every worker append and fdatasync, all at once; waits for them.
    fn sync_at_once(&self) -> anyhow::Result<()> {
        for worker in &self.workers {
            worker.send(()).context("an fsync thread stopped")?;
        }
        for _ in 0..self.workers.len() {
            self.done.recv().context("an fsync thread stopped")??;
        }
        Ok(())
    }

    pub(crate) fn sample(&mut self) -> anyhow::Result<FloorSample> {
        let started = Instant::now();
        append_and_sync(&mut self.journal)?;
        let fsync_ms = ms_since(started);
        let started = Instant::now();
        append_and_sync(&mut self.journal)?;
        for partition in &mut self.partitions {
            append_and_sync(partition)?;
        }
        append_and_sync(&mut self.journal)?;
        let sequential_ms = ms_since(started);
        let started = Instant::now();
        append_and_sync(&mut self.journal)?;
        self.sync_at_once()?;
        append_and_sync(&mut self.journal)?;
        let parallel_ms = ms_since(started);
        Ok(FloorSample {
            fsync_ms,
            sequential_ms,
            parallel_ms,
        })
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.workers.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
