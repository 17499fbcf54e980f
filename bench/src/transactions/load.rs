//! The native load generator: one producer writing prebuilt batches to
//! every partition of a topic, one connection and one request in flight
//! per partition (as `sluice-bench kafka`), acks=all. The same generator
//! runs idempotent (the baseline) or transactional.
//!
//! Transactional, it works as a transactional client does: AddPartitionsToTxn,
//! produce for `interval`, wait until every partition's last request is
//! answered (a client flushes before it commits), EndTxn, again. The time
//! from the end of one transaction's writes to the start of the next one's
//! is what transactions cost here, and it is inside the measured time.
//! Idempotent, it is one round for the whole duration.
//!
//! A controller (this task, on the coordinator's connection) hands each
//! partition's task a [`Round`]: send until this instant, then report.

use std::time::{Duration, Instant};

use anyhow::bail;
use sluice::client::Connection;
use tokio::sync::{mpsc, oneshot};

use super::protocol::{self, Batches, Producer};
use crate::kafka::{bootstrap, now_ms};

/// How the generator produces.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// An idempotent producer (InitProducerId without transactional id).
    Idempotent,
    /// A transactional producer that ends a transaction every `interval`
    /// (`Duration::ZERO`: one batch per partition per transaction) and
    /// aborts one in `abort_every` (never when `None`).
    Transactional {
        interval: Duration,
        abort_every: Option<u64>,
    },
}

/// What to produce.
pub(crate) struct Load<'a> {
    pub(crate) brokers: &'a str,
    pub(crate) topic: &'a str,
    /// Each partition's leader, by partition index.
    pub(crate) leaders: &'a [String],
    pub(crate) batch_records: usize,
    pub(crate) record_bytes: usize,
    /// Stop after the round that passes this much time…
    pub(crate) duration: Duration,
    /// …or this many bytes acknowledged, whichever comes first.
    pub(crate) bytes_max: u64,
    pub(crate) mode: Mode,
    /// Distinguishes the transactional ids of one process's producers.
    pub(crate) label: &'a str,
}

/// What a load produced.
#[derive(Debug, Default)]
pub(crate) struct Produced {
    /// Record batch bytes acknowledged.
    pub(crate) bytes: u64,
    pub(crate) records: u64,
    pub(crate) seconds: f64,
    pub(crate) transactions: u64,
    pub(crate) aborted: u64,
    /// EndTxn round trips.
    pub(crate) commit_ms: Vec<f64>,
    /// AddPartitionsToTxn round trips.
    pub(crate) add_partitions_ms: Vec<f64>,
    /// From a transaction's end of producing (`until`) to the last
    /// partition's last answer: the drain a commit waits for.
    pub(crate) drain_ms: Vec<f64>,
}

/// One round of a partition's task: send until `until` (at least one
/// batch), then report (bytes, records) acknowledged.
struct Round {
    until: Instant,
    done: oneshot::Sender<anyhow::Result<(u64, u64)>>,
}

/// A partition's task and how to reach it.
struct Worker {
    rounds: mpsc::Sender<Round>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs `load`; connections and InitProducerId are set up before the
/// clock starts.
pub(crate) async fn produce(load: &Load<'_>) -> anyhow::Result<Produced> {
    let transactional_id = match load.mode {
        Mode::Idempotent => None,
        Mode::Transactional { .. } => Some(format!(
            "sluice-bench-{}-{}",
            std::process::id(),
            load.label
        )),
    };
    let mut control = match &transactional_id {
        Some(id) => Connection::open(&protocol::coordinator(load.brokers, id).await?).await?,
        None => bootstrap(load.brokers).await?,
    };
    let producer = protocol::init_producer(&mut control, transactional_id.as_deref()).await?;
    let workers = spawn_workers(load, &producer).await?;
    let partitions: Vec<i32> = (0..load.leaders.len() as i32).collect();
    let mut produced = Produced::default();
    let started = Instant::now();
    let end = started + load.duration;
    loop {
        let transaction_started = Instant::now();
        let until = match load.mode {
            Mode::Idempotent => end,
            Mode::Transactional { interval, .. } => {
                protocol::add_partitions(&mut control, &producer, load.topic, &partitions).await?;
                let added = Instant::now();
                produced
                    .add_partitions_ms
                    .push(ms_between(transaction_started, added));
                (added + interval).min(end)
            }
        };
        let (bytes, records) = round(&workers, until).await?;
        produced.drain_ms.push(ms_between(until, Instant::now()));
        produced.bytes += bytes;
        produced.records += records;
        if let Mode::Transactional { abort_every, .. } = load.mode {
            let number = produced.transactions + 1;
            let commit = abort_every.is_none_or(|every| number % every != 0);
            let ending = Instant::now();
            protocol::end_transaction(&mut control, &producer, commit).await?;
            produced.commit_ms.push(ms_between(ending, Instant::now()));
            produced.transactions += 1;
            produced.aborted += u64::from(!commit);
        }
        if Instant::now() >= end || produced.bytes >= load.bytes_max {
            break;
        }
    }
    produced.seconds = started.elapsed().as_secs_f64();
    for worker in workers {
        drop(worker.rounds);
        worker.task.await?;
    }
    Ok(produced)
}

/// Milliseconds from `from` to `to` (0 if `to` is earlier).
fn ms_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1e3
}

/// Opens every partition's connection and starts its task.
async fn spawn_workers(load: &Load<'_>, producer: &Producer) -> anyhow::Result<Vec<Worker>> {
    let mut workers = Vec::with_capacity(load.leaders.len());
    for (partition, leader) in (0..).zip(load.leaders) {
        let connection = Connection::open(leader).await?;
        let batches = Batches::new(producer, load.batch_records, load.record_bytes, now_ms());
        let (rounds, receiver) = mpsc::channel(1);
        let sender = Sender {
            connection,
            batches,
            producer: producer.clone(),
            topic: load.topic.to_string(),
            partition,
        };
        let task = tokio::spawn(sender.serve(receiver));
        workers.push(Worker { rounds, task });
    }
    Ok(workers)
}

/// Runs one round on every partition; returns the (bytes, records) they
/// had acknowledged.
async fn round(workers: &[Worker], until: Instant) -> anyhow::Result<(u64, u64)> {
    let mut replies = Vec::with_capacity(workers.len());
    for worker in workers {
        let (done, reply) = oneshot::channel();
        if worker.rounds.send(Round { until, done }).await.is_err() {
            bail!("a partition's sender stopped");
        }
        replies.push(reply);
    }
    let (mut bytes, mut records) = (0, 0);
    for reply in replies {
        let (b, r) = reply.await??;
        bytes += b;
        records += r;
    }
    Ok((bytes, records))
}

/// One partition's sender.
struct Sender {
    connection: Connection,
    batches: Batches,
    producer: Producer,
    topic: String,
    partition: i32,
}

impl Sender {
    /// Serves rounds until the controller hangs up or one fails.
    async fn serve(mut self, mut rounds: mpsc::Receiver<Round>) {
        while let Some(round) = rounds.recv().await {
            let result = self.send_until(round.until).await;
            let failed = result.is_err();
            let _ = round.done.send(result);
            if failed {
                return;
            }
        }
    }

    /// Sends batches one at a time until `until` (at least one).
    async fn send_until(&mut self, until: Instant) -> anyhow::Result<(u64, u64)> {
        let (mut bytes, mut records, mut retries) = (0, 0, 0);
        loop {
            let batch = self.batches.next();
            let length = batch.len() as u64;
            let request = protocol::produce_request(
                &self.producer,
                &self.topic,
                vec![(self.partition, batch.clone())],
            );
            let response = self.connection.call(request).await?;
            self.batches.reuse(batch);
            match protocol::produce_error(&response) {
                0 => {
                    bytes += length;
                    records += self.batches.records();
                }
                // A new topic's leader settling (first batch only).
                code if crate::kafka::SETTLING.contains(&code) && bytes == 0 && retries < 100 => {
                    self.batches.unsend();
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                code => bail!("produce to {}/{}: error {code}", self.topic, self.partition),
            }
            if Instant::now() >= until {
                return Ok((bytes, records));
            }
        }
    }
}
