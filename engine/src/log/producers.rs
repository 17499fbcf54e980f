//! Idempotent producer state of one partition: per producer id, its epoch
//! and the last five batches (first and last sequence, offsets), as Kafka
//! keeps them. A retried batch that matches one of them is answered with
//! its original offsets instead of being written twice; a gap or a
//! regression in sequence numbers is OUT_OF_ORDER_SEQUENCE_NUMBER; an old
//! epoch is INVALID_PRODUCER_EPOCH.
//!
//! The state is rebuilt on open from the batch headers in the log (which
//! carry producer id, epoch and base sequence), so retries after a restart
//! are de-duplicated without a separate file.

use std::collections::{HashMap, VecDeque};

use super::batch::BatchHeader;
use super::LogError;

/// Batches remembered per producer (Kafka's max.in.flight for idempotence).
const BATCHES_REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerState {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_append_ms: i64,
    /// Between a transactional batch and its marker: never forgotten to
    /// make room (Kafka does not expire such producers either; their
    /// number is bounded by the transaction coordinator's ids).
    in_transaction: bool,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Not idempotent, or next in sequence: write it.
    Append,
    /// Already written at these offsets: acknowledge without writing.
    Duplicate {
        /// Original base offset.
        base_offset: i64,
        /// Original last offset.
        last_offset: i64,
    },
}

/// All producers of a partition, bounded in count.
#[derive(Debug, Clone)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerState>,
    producers_max: usize,
}

/// Kafka's sequence arithmetic: sequences wrap from i32::MAX to 0.
fn add_sequence(base: i32, delta: i32) -> i32 {
    if base > i32::MAX - delta {
        delta - (i32::MAX - base) - 1
    } else {
        base + delta
    }
}

fn meta(header: &BatchHeader) -> BatchMeta {
    BatchMeta {
        first_sequence: header.base_sequence,
        last_sequence: add_sequence(header.base_sequence, header.last_offset_delta),
        base_offset: header.base_offset,
        last_offset: header.last_offset(),
    }
}

impl ProducerStates {
    /// Empty state remembering at most `producers_max` producers.
    pub(crate) fn new(producers_max: usize) -> Self {
        Self {
            producers: HashMap::new(),
            producers_max: producers_max.max(1),
        }
    }

    /// Checks a produced batch (offsets not yet assigned) against the state.
    pub(crate) fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, LogError> {
        if header.producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let producer_id = header.producer_id;
        if header.is_control() {
            // A transaction marker from the coordinator, the authority on
            // its producers' epochs: never refused (a higher epoch forged
            // into this partition must not keep a transaction from ending).
            return Ok(SequenceCheck::Append);
        }
        let Some(state) = self.producers.get(&producer_id) else {
            return self.first_batch(header);
        };
        if header.producer_epoch < state.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id,
                epoch: header.producer_epoch,
                current: state.epoch,
            });
        }
        if header.producer_epoch > state.epoch {
            // A new epoch starts over at sequence 0.
            return self.first_batch(header);
        }
        let incoming = meta(header);
        if let Some(old) = state.batches.iter().find(|b| {
            b.first_sequence == incoming.first_sequence && b.last_sequence == incoming.last_sequence
        }) {
            return Ok(SequenceCheck::Duplicate {
                base_offset: old.base_offset,
                last_offset: old.last_offset,
            });
        }
        let expected = state
            .batches
            .back()
            .map_or(0, |last| add_sequence(last.last_sequence, 1));
        if incoming.first_sequence != expected {
            return Err(LogError::OutOfOrderSequence {
                producer_id,
                expected,
                received: incoming.first_sequence,
            });
        }
        Ok(SequenceCheck::Append)
    }

    fn first_batch(&self, header: &BatchHeader) -> Result<SequenceCheck, LogError> {
        if header.base_sequence != 0 {
            return Err(LogError::OutOfOrderSequence {
                producer_id: header.producer_id,
                expected: 0,
                received: header.base_sequence,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a written batch (offsets assigned).
    pub(crate) fn record(&mut self, header: &BatchHeader, now_ms: i64) {
        if header.producer_id < 0 {
            return;
        }
        if !self.producers.contains_key(&header.producer_id)
            && self.producers.len() >= self.producers_max
        {
            // Forget the producer idle longest; a retry from it after this
            // gets OUT_OF_ORDER_SEQUENCE_NUMBER rather than a duplicate.
            if let Some(idle) = self
                .producers
                .iter()
                .filter(|(_, s)| !s.in_transaction)
                .min_by_key(|(_, s)| s.last_append_ms)
                .map(|(id, _)| *id)
            {
                self.producers.remove(&idle);
            }
        }
        let state = self.producers.entry(header.producer_id).or_default();
        state.last_append_ms = now_ms;
        if header.is_transactional() {
            state.in_transaction = !header.is_control();
        }
        if header.is_control() {
            // A marker may raise the epoch (an abort after a fence carries
            // the new one), never lower it, and has no sequence: the
            // producer's next batch in the same epoch continues its
            // sequence.
            if header.producer_epoch > state.epoch {
                state.batches.clear();
                state.epoch = header.producer_epoch;
            }
            return;
        }
        if header.producer_epoch != state.epoch {
            state.batches.clear();
            state.epoch = header.producer_epoch;
        }
        state.batches.push_back(meta(header));
        while state.batches.len() > BATCHES_REMEMBERED {
            state.batches.pop_front();
        }
    }

    /// The producers remembered.
    pub(crate) fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.producers.keys().copied()
    }

    /// The epoch a producer last wrote with, if it is remembered.
    pub(crate) fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|state| state.epoch)
    }

    /// Producers remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.producers.len()
    }
}

/// Checks the sequence numbers of a produced request's batches. Returns the
/// original offsets when the request is a retry of a written batch.
pub(super) fn check_sequences(
    producers: &ProducerStates,
    headers: &[BatchHeader],
) -> Result<Option<(i64, i64)>, LogError> {
    if let [single] = headers {
        return Ok(match producers.check(single)? {
            SequenceCheck::Append => None,
            SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            } => Some((base_offset, last_offset)),
        });
    }
    // Several batches in one request: each must follow the one before.
    let mut scratch: Option<ProducerStates> = None;
    for header in headers.iter().filter(|h| h.producer_id >= 0) {
        let states = scratch.get_or_insert_with(|| producers.clone());
        match states.check(header)? {
            SequenceCheck::Append => states.record(header, 0),
            SequenceCheck::Duplicate { .. } => {
                return Err(LogError::DuplicateSequence {
                    producer_id: header.producer_id,
                })
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        records: i32,
        base_offset: i64,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            records_count: records,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let mut states = ProducerStates::new(10);
        assert_eq!(
            states.check(&header(7, 0, 0, 3, 0)).unwrap(),
            SequenceCheck::Append
        );
        states.record(&header(7, 0, 0, 3, 100), 1);
        assert_eq!(
            states.check(&header(7, 0, 0, 3, 0)).unwrap(),
            SequenceCheck::Duplicate {
                base_offset: 100,
                last_offset: 102
            }
        );
        assert!(matches!(
            states.check(&header(7, 0, 4, 1, 0)),
            Err(LogError::OutOfOrderSequence { expected: 3, .. })
        ));
        assert_eq!(
            states.check(&header(7, 0, 3, 1, 0)).unwrap(),
            SequenceCheck::Append
        );
        states.record(&header(7, 1, 0, 1, 200), 2);
        assert!(matches!(
            states.check(&header(7, 0, 3, 1, 0)),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            states.check(&header(8, 0, 5, 1, 0)),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        assert_eq!(
            states.check(&header(-1, -1, -1, 5, 0)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn remembers_five_batches_and_wraps_sequences() {
        let mut states = ProducerStates::new(10);
        for batch in 0..7 {
            states.record(&header(1, 0, batch, 1, batch as i64), 0);
        }
        assert!(matches!(
            states.check(&header(1, 0, 2, 1, 0)).unwrap(),
            SequenceCheck::Duplicate { base_offset: 2, .. }
        ));
        assert!(states.check(&header(1, 0, 1, 1, 0)).is_err());
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn bounded_number_of_producers() {
        let mut states = ProducerStates::new(2);
        for producer in 0..5 {
            states.record(&header(producer, 0, 0, 1, producer), producer);
        }
        assert_eq!(states.len(), 2);
    }
}
