//! Fetch throughput over one transactional log at both isolation levels:
//! read_uncommitted (0) reads to the high watermark; read_committed (1)
//! reads to the last stable offset, gets the aborted transactions listed
//! with every partition, and drops their records as a consumer must
//! (Kafka's consumer algorithm: an aborted transaction's producer is
//! skipped from its first offset up to its abort marker). Both read the
//! same bytes when every transaction has ended, so the ratio shows what
//! read_committed costs the broker and the client.
//!
//! One connection per partition, each reading from offset 0 to the end,
//! as `sluice-bench kafka` consumes.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::bail;
use sluice::client::Connection;
use sluice::log::batch::BatchHeader;

use crate::kafka::fetch;

/// Kafka's `isolation_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    ReadUncommitted = 0,
    ReadCommitted = 1,
}

/// Batch attribute bits.
const TRANSACTIONAL: i16 = 1 << 4;
const CONTROL: i16 = 1 << 5;

/// What one read of the whole topic saw.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fetched {
    /// Record batch bytes received.
    pub(crate) bytes: u64,
    /// Records handed to the application (not control, not aborted).
    pub(crate) delivered: u64,
    /// Aborted transactions the broker listed.
    pub(crate) aborted_listed: u64,
    pub(crate) seconds: f64,
}

/// Reads every partition from offset 0 to its end at `isolation`.
pub(crate) async fn read_all(
    leaders: &[String],
    topic: &str,
    isolation: Isolation,
) -> anyhow::Result<Fetched> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (partition, leader) in (0..).zip(leaders) {
        let (leader, topic) = (leader.clone(), topic.to_string());
        tasks.push(tokio::spawn(async move {
            let connection = Connection::open(&leader).await?;
            read_partition(connection, &topic, partition, isolation).await
        }));
    }
    let mut total = Fetched::default();
    for task in tasks {
        let one = task.await??;
        total.bytes += one.bytes;
        total.delivered += one.delivered;
        total.aborted_listed += one.aborted_listed;
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// The aborted transactions of a read_committed consumer, as Kafka's
/// consumer tracks them.
#[derive(Default)]
struct Aborts {
    /// Listed by the broker, by first offset descending (popped from the
    /// end as the reader reaches them).
    pending: Vec<(i64, i64)>,
    /// Producers whose records are dropped until their abort marker.
    dropping: HashSet<i64>,
}

impl Aborts {
    fn listed(&mut self, listed: impl IntoIterator<Item = (i64, i64)>) {
        self.pending.extend(listed);
        self.pending
            .sort_unstable_by_key(|(_, first)| std::cmp::Reverse(*first));
        self.pending.dedup();
    }

    /// Whether the batch `header` reaches the application.
    fn delivers(&mut self, header: &BatchHeader) -> bool {
        let last_offset = header.next_offset() - 1;
        while self
            .pending
            .last()
            .is_some_and(|(_, first)| *first <= last_offset)
        {
            let (producer_id, _) = self.pending.pop().expect("checked");
            self.dropping.insert(producer_id);
        }
        if header.attributes & CONTROL != 0 {
            // The marker ends the producer's transaction either way.
            self.dropping.remove(&header.producer_id);
            return false;
        }
        !(header.attributes & TRANSACTIONAL != 0 && self.dropping.contains(&header.producer_id))
    }
}

async fn read_partition(
    mut connection: Connection,
    topic: &str,
    partition: i32,
    isolation: Isolation,
) -> anyhow::Result<Fetched> {
    let (mut offset, mut fetched) = (0i64, Fetched::default());
    let mut aborts = Aborts::default();
    loop {
        let data = fetch(&mut connection, topic, partition, offset, isolation as i8).await?;
        let listed = data.aborted_transactions.iter().flatten();
        let listed: Vec<(i64, i64)> = listed.map(|a| (a.producer_id.0, a.first_offset)).collect();
        fetched.aborted_listed += listed.len() as u64;
        aborts.listed(listed);
        let records = data.records.clone().unwrap_or_default();
        if records.is_empty() {
            let end = match isolation {
                Isolation::ReadUncommitted => data.high_watermark,
                Isolation::ReadCommitted => data.last_stable_offset,
            };
            if offset >= end {
                return Ok(fetched);
            }
            bail!("empty fetch below the end ({end}) at offset {offset}");
        }
        let mut position = 0;
        while position < records.len() {
            let header = BatchHeader::parse(&records[position..])?;
            let delivered = match isolation {
                Isolation::ReadUncommitted => header.attributes & CONTROL == 0,
                Isolation::ReadCommitted => aborts.delivers(&header),
            };
            if delivered {
                fetched.delivered += header.records_count as u64;
            }
            offset = header.next_offset();
            position += header.total_bytes();
        }
        fetched.bytes += records.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(base_offset: i64, count: i32, producer_id: i64, attributes: i16) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            records_count: count,
        }
    }

    #[test]
    fn aborted_records_are_dropped_up_to_their_marker() {
        let mut aborts = Aborts::default();
        aborts.listed([(7, 10)]);
        // Committed data before the aborted transaction.
        assert!(aborts.delivers(&header(0, 10, 7, TRANSACTIONAL)));
        // The aborted transaction's data, then its marker.
        assert!(!aborts.delivers(&header(10, 5, 7, TRANSACTIONAL)));
        assert!(!aborts.delivers(&header(15, 1, 7, TRANSACTIONAL | CONTROL)));
        // Another producer meanwhile, and the same one afterwards.
        assert!(aborts.delivers(&header(16, 5, 8, TRANSACTIONAL)));
        assert!(aborts.delivers(&header(21, 5, 7, TRANSACTIONAL)));
    }
}
