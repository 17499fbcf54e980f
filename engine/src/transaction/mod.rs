//! Kafka transactions (KIP-98, KIP-447, KIP-664): the transaction
//! coordinator, its durable state, and the markers that end a transaction
//! in every partition it wrote to.
//!
//! A transactional producer calls InitProducerId with its transactional
//! id (fencing any older producer of that id), AddPartitionsToTxn before
//! its first write to a partition, optionally AddOffsetsToTxn and
//! TxnOffsetCommit to commit consumer offsets with its writes, then EndTxn.
//! The coordinator (`coordinator.rs`) keeps each id's state in a CRC'd,
//! fsynced log (`store.rs`); ending a transaction (`complete.rs`) writes a
//! commit or abort marker to every partition (`log::transactions`), which
//! moves the partition's last stable offset, the bound of read_committed
//! fetches.

mod complete;
mod config;
mod coordinator;
#[cfg(test)]
mod coordinator_tests;
mod error;
mod offsets;
pub(crate) mod producer_ids;
pub(crate) mod state;
pub(crate) mod store;

pub(crate) use config::TransactionConfig;
pub(crate) use coordinator::TransactionCoordinator;
pub(crate) use error::TransactionError;
pub(crate) use offsets::TransactionalCommitter;

#[cfg(test)]
mod tests;
