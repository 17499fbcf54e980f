//! Sluice: a Kafka-compatible event broker and WebAssembly stream-processing
//! runtime in one binary.
//!
//! The library is also what the `sluice-bench` crate (`bench/`) measures:
//! the log store, the processor host and loop, and the CLI's Kafka
//! connection. Items made `pub` only for it say so in their docs.

pub(crate) mod broker;
pub mod cli;
pub mod client;
pub(crate) mod config;
pub(crate) mod group;
pub(crate) mod http;
pub mod log;
pub mod processor;
pub(crate) mod protocol;
pub mod server;
mod shutdown;
pub(crate) mod start_position;
