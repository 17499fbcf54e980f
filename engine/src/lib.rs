//! Sluice: a Kafka-compatible event broker and WebAssembly stream-processing
//! runtime in one binary.
//!
//! The library is also what the `sluice-bench` crate (`bench/`) measures:
//! the items it uses are `pub` and say so.

pub mod broker;
pub mod cli;
pub mod config;
pub mod group;
pub mod http;
pub mod log;
pub mod processor;
pub mod protocol;
pub mod server;
