//! Black-box tests: the real `sluice` binary on a temporary data directory
//! and free loopback ports, driven from outside.

mod acl;
mod admin;
mod browse;
mod cli;
mod cli_plugin;
mod cli_transactions;
mod clients;
mod compaction;
mod console;
mod examples;
mod harness;
mod kafka;
mod metrics;
mod net_limits;
mod offsets;
mod plugins;
mod processor_records;
mod processors;
mod progress;
mod protocol;
mod retention;
mod security;
mod serve;
mod stateful;
mod tls;
mod topic_lifecycle;
mod transactions;
mod transactions_crash;
