//! Sluice: a Kafka-compatible event broker and WebAssembly stream-processing
//! runtime in one binary.

pub mod log;
