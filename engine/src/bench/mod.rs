//! `sluice bench`: measurements whose figures go in the README. Each one
//! runs the physical limit (raw disk) beside Sluice in the same run and
//! reports medians and ratios, because these machines are noisy.

pub mod kafka;
pub mod log;

/// The median of `samples` (sorted in place); 0 when empty.
pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let middle = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[middle]
    } else {
        (samples[middle - 1] + samples[middle]) / 2.0
    }
}
