//! Fetch (key 1): whole stored batches from each requested partition, with
//! long polling. The wait ends as soon as `min_bytes` are available (woken
//! by the partitions' high-watermark watches, not a timer loop), at
//! `max_wait_ms` (capped by `kafka.fetch_wait_max_ms`), or at shutdown.
//! Incremental fetch sessions are not kept: every response is a full one
//! with session id 0, which clients treat as "no session".
//!
//! With `isolation_level` read_committed (1), a partition is read only up
//! to its last stable offset, and the aborted transactions among the
//! batches returned are listed so the client drops their records; a long
//! poll wakes when the LSO moves, since only a marker moves it and a
//! marker moves the high watermark too.
//!
//! A response is at most `kafka.fetch_bytes_max` (Kafka's `fetch.max.bytes`),
//! whatever `max_bytes` says (`<= 0` included), so one request cannot make the
//! broker hold gigabytes. A partition listed again in the same request is
//! answered INVALID_REQUEST with no records (as Kafka answers duplicate
//! partitions in ListOffsets; its Fetch would merge them silently): listing
//! it 64 times must not read it 64 times. And since a connection may have
//! many fetches in flight, whose responses wait to be written in order, the
//! record bytes read are charged to a broker-wide budget
//! (`kafka.queued_fetch_bytes_max`) until written; a fetch finding it full
//! answers with fewer records instead of waiting, so it cannot deadlock.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, ProducerId, TopicName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::{blocking, topic_allowed};
use crate::acl::{Caller, Operation};
use crate::log::{Isolation, LogError, Partition};
use crate::protocol::errors::log_error_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (4, 12);

struct Target {
    index: i32,
    partition: Result<Arc<Partition>, i16>,
    offset: i64,
    max_bytes: usize,
}

/// The partitions to read, or each one's error code: a topic `caller` may
/// not READ is TOPIC_AUTHORIZATION_FAILED whether or not it exists.
fn resolve(
    context: &BrokerContext,
    caller: &Caller,
    topics: Vec<FetchTopic>,
) -> Vec<(TopicName, Vec<Target>)> {
    let mut seen = HashSet::new();
    topics
        .into_iter()
        .map(|topic| {
            let allowed = topic_allowed(context, caller, Operation::Read, &topic.topic);
            let found = context.store.topic(&topic.topic);
            let targets = topic
                .partitions
                .into_iter()
                .map(|p| Target {
                    index: p.partition,
                    partition: match &found {
                        _ if !seen.insert((topic.topic.clone(), p.partition)) => {
                            Err(ResponseError::InvalidRequest.code())
                        }
                        _ if !allowed => Err(ResponseError::TopicAuthorizationFailed.code()),
                        Some(found) => found
                            .partition(p.partition)
                            .map_err(|error| log_error_code(&error)),
                        None => Err(ResponseError::UnknownTopicOrPartition.code()),
                    },
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                })
                .collect();
            (topic.topic, targets)
        })
        .collect()
}

/// What one pass over the targets read.
struct Gathered {
    responses: Vec<FetchableTopicResponse>,
    /// Record bytes read.
    bytes: usize,
    /// Whether any partition reported an error.
    errors: bool,
    /// The record bytes' charge to `kafka.queued_fetch_bytes_max`.
    charge: Option<OwnedSemaphorePermit>,
    /// Per partition read, its records and bytes: counted as fetched
    /// (`/metrics`) only if this read is the one answered.
    served: Vec<(Arc<Partition>, u64, u64)>,
}

/// Answers a Fetch. The response's record bytes are charged to the
/// broker-wide budget of fetched bytes in memory (`kafka.queued_fetch_bytes_max`);
/// the charge returned is held until the response is written.
pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: FetchRequest,
    _version: i16,
) -> (FetchResponse, Option<OwnedSemaphorePermit>) {
    let wait_ms = (request.max_wait_ms.max(0) as u64).min(context.config.fetch_wait_max_ms);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let min_bytes = request.min_bytes.max(0) as usize;
    let fetch_bytes_max = context.config.fetch_bytes_max as usize;
    let max_bytes = if request.max_bytes <= 0 {
        fetch_bytes_max
    } else {
        (request.max_bytes as usize).min(fetch_bytes_max)
    };
    let targets = Arc::new(resolve(context, caller, request.topics));
    let isolation = if request.isolation_level == 1 {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    let mut shutdown = context.shutdown.clone();
    loop {
        // Subscribe before reading, so an append between the read and the
        // wait still wakes us.
        let mut watches: Vec<_> = targets
            .iter()
            .flat_map(|(_, targets)| targets.iter())
            .filter_map(|target| target.partition.as_ref().ok().map(|p| p.subscribe()))
            .collect();
        let (gathered, budget) = (targets.clone(), context.fetch_bytes.clone());
        let read = blocking(move || gather(&gathered, max_bytes, isolation, &budget)).await;
        let now = Instant::now();
        if read.bytes >= min_bytes
            || read.errors
            || now >= deadline
            || watches.is_empty()
            || *shutdown.borrow()
        {
            for (partition, records, bytes) in &read.served {
                partition.traffic().fetched(*records, *bytes);
            }
            let response = FetchResponse::default().with_responses(read.responses);
            return (response, read.charge);
        }
        drop(read);
        let changed = select_all(watches.iter_mut().map(|watch| Box::pin(watch.changed())));
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Reads every target once, up to `max_bytes` in all and as far as the
/// broker-wide `budget` has room (when it has none, partitions come back
/// without records and the client fetches again).
fn gather(
    targets: &[(TopicName, Vec<Target>)],
    max_bytes: usize,
    isolation: Isolation,
    budget: &Arc<Semaphore>,
) -> Gathered {
    let mut remaining = max_bytes;
    let mut total = 0;
    let mut errors = false;
    let mut charge: Option<OwnedSemaphorePermit> = None;
    let mut served = Vec::new();
    let responses = targets
        .iter()
        .map(|(name, targets)| {
            let partitions = targets
                .iter()
                .map(|target| {
                    let data = PartitionData::default().with_partition_index(target.index);
                    let partition = match &target.partition {
                        Ok(partition) => partition,
                        Err(code) => {
                            errors = true;
                            crate::metrics::REQUESTS.failed(ApiKey::Fetch as i16, *code);
                            return data.with_error_code(*code);
                        }
                    };
                    // The partition's offsets for an answer without a
                    // read (a read returns its own).
                    let with_offsets = |data: PartitionData| {
                        let (high_watermark, last_stable_offset) = partition.watermarks();
                        data.with_high_watermark(high_watermark)
                            .with_last_stable_offset(last_stable_offset)
                            .with_log_start_offset(partition.log_start_offset())
                    };
                    // Once the response is full only the first partition
                    // with data may overshoot (a whole first batch always
                    // goes out, so consumers make progress).
                    if remaining == 0 {
                        return with_offsets(data);
                    }
                    match partition.read_isolated(target.offset, target.max_bytes.min(remaining), isolation) {
                        Ok(read) => {
                            // Only the first partition with data may go over
                            // max_bytes (KIP-74); later ones wait their turn.
                            let records = if total > 0 && read.records.len() > remaining {
                                Bytes::new()
                            } else {
                                read.records
                            };
                            let records = if charged(budget, &mut charge, records.len()) {
                                records
                            } else {
                                // No room left: nothing more this time.
                                remaining = 0;
                                Bytes::new()
                            };
                            remaining = remaining.saturating_sub(records.len());
                            total += records.len();
                            if !records.is_empty() {
                                let count = record_count(&records);
                                served.push((partition.clone(), count, records.len() as u64));
                            }
                            let aborted = (isolation == Isolation::ReadCommitted).then(|| {
                                read.aborted
                                    .iter()
                                    .map(|a| {
                                        AbortedTransaction::default()
                                            .with_producer_id(ProducerId(a.producer_id))
                                            .with_first_offset(a.first_offset)
                                    })
                                    .collect()
                            });
                            data.with_high_watermark(read.high_watermark)
                                .with_last_stable_offset(read.last_stable_offset)
                                .with_log_start_offset(read.log_start_offset)
                                .with_aborted_transactions(aborted)
                                .with_records(Some(records))
                        }
                        Err(error) => {
                            errors = true;
                            if !matches!(error, LogError::OffsetOutOfRange { .. }) {
                                tracing::error!(topic = %partition.topic(), partition = partition.id(), %error, "fetch failed");
                            }
                            let code = log_error_code(&error);
                            crate::metrics::REQUESTS.failed(ApiKey::Fetch as i16, code);
                            with_offsets(data).with_error_code(code)
                        }
                    }
                })
                .collect();
            FetchableTopicResponse::default().with_topic(name.clone()).with_partitions(partitions)
        })
        .collect();
    Gathered {
        responses,
        bytes: total,
        errors,
        charge,
        served,
    }
}

/// Records in whole stored batches: each batch's count field (v2 header:
/// base offset 8, length 4, ..., records count at byte 57).
fn record_count(batches: &[u8]) -> u64 {
    const COUNT_AT: usize = 57;
    let mut position = 0;
    let mut records = 0;
    while let Some(header) = batches.get(position..position + COUNT_AT + 4) {
        let length = i32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
        let count = i32::from_be_bytes(header[COUNT_AT..].try_into().expect("4 bytes"));
        records += count.max(0) as u64;
        position += 12 + length.max(0) as usize;
    }
    records
}

/// Adds `bytes` to `charge` if `budget` has room for them now.
fn charged(budget: &Arc<Semaphore>, charge: &mut Option<OwnedSemaphorePermit>, bytes: usize) -> bool {
    if bytes == 0 {
        return true;
    }
    let Ok(permits) = u32::try_from(bytes) else {
        return false;
    };
    match budget.clone().try_acquire_many_owned(permits) {
        Ok(permit) => {
            match charge {
                Some(charge) => charge.merge(permit),
                None => *charge = Some(permit),
            }
            true
        }
        Err(_) => false,
    }
}
