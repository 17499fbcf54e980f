//! Store-level tests: property tests against an in-memory model, crash
//! tests through the fault-injecting I/O layer, retention and compaction
//! with an injected clock.
