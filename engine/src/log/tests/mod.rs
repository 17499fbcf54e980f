//! Store-level tests: property tests against an in-memory model, crash
//! tests through the fault-injecting I/O layer, retention and compaction
//! with an injected clock.

mod cold_reads;
mod compaction;
mod corruption;
mod crash;
mod faults;
mod lock;
mod model;
mod retention;
mod support;
mod timestamps;
mod topic_lifecycle;
mod transactions;
