//! Kafka transactions: the transaction coordinator (KIP-98, KIP-447),
//! its durable state, and the markers that end a transaction in every
//! partition it wrote to.

#![allow(dead_code)] // Removed once the coordinator uses everything.

pub(crate) mod state;
pub(crate) mod store;
