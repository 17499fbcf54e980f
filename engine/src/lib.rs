//! Sluice: a Kafka-compatible event broker and WebAssembly stream-processing
//! runtime in one binary.

pub mod bench;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod group;
pub mod http;
pub mod log;
pub mod processor;
pub mod protocol;
pub mod server;
mod shutdown;
pub mod start_position;
