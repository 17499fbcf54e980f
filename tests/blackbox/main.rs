//! Black-box tests: the real `sluice` binary on a temporary data directory
//! and free loopback ports, driven from outside.

mod harness;
mod serve;
