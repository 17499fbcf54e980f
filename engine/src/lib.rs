//! Sluice: a Kafka-compatible event broker and WebAssembly stream-processing
//! runtime in one binary.
//!
//! # How a request flows
//! ```text
//!             Kafka clients                      operators, `sluice processor`
//!                  │ TCP                                   │ HTTP
//!                  ▼                                       ▼
//!   server/connection ── frame ──► protocol        http/ (health, admin API)
//!                  │ (decode header, no I/O)               │
//!                  ▼                                       │
//!   server/handlers/<api>.rs (one per Kafka API)           │
//!        │                 │                               ▼
//!        ▼                 ▼                      processor/registry
//!      log/            group/  ◄── commits ──── processor/worker (one task per
//!   (partitions,    (coordinator,               input partition: read the log,
//!    segments,       committed                  call the plugin in processor/
//!    retention,      offsets)                   host, write outputs to log/)
//!    compaction)
//! ```
//! `broker` starts all of it and stops it on the signal in `shutdown`;
//! `config` composes each module's settings. `log/` is the bottom layer:
//! it imports nothing above it.
//!
//! Beside the broker: `cli/` is the command line (`serve` calls `broker`;
//! the client verbs speak Kafka through `client/`, a small Kafka client,
//! and `processor` speaks to the admin API over HTTP). Nothing under
//! `log/`, `group/`, `processor/` or `server/` imports `cli/` or
//! `client/`. Shared leaves: `protocol::partitioner` (Kafka's murmur2),
//! `start_position` (earliest, latest, an offset or a time), `journal`
//! (the CRC'd, fsynced, compacted record file under the committed-offsets
//! and transaction logs), `tls` (the certificate, key and bounded
//! handshake of the Kafka and admin listeners).
//!
//! The library is also what the `sluice-bench` crate (`bench/`) measures:
//! the log store, the processor host and loop, and the client's Kafka
//! connection; the black-box tests read data directories with the log
//! store. Those items are `pub`; everything else is `pub(crate)`, so rustc
//! reports what nothing uses.

pub(crate) mod acl;
pub(crate) mod broker;
pub mod cli;
pub mod client;
pub(crate) mod config;
pub(crate) mod group;
pub(crate) mod http;
pub(crate) mod journal;
pub mod log;
pub mod memory;
pub(crate) mod metrics;
pub mod priority;
pub mod processor;
pub(crate) mod protocol;
pub(crate) mod random;
pub mod server;
mod shutdown;
pub(crate) mod start_position;
pub(crate) mod state;
pub(crate) mod tls;
pub(crate) mod transaction;
