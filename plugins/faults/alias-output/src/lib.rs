//! `fault-alias-output` (tests only): forwards records unchanged, but
//! answers a trigger record with `copies` outputs whose values all point at
//! one `bytes`-byte region of its memory. A well-behaved guest cannot do
//! this; a hostile one can write any (pointer, length) pairs it likes into
//! its return area. Tests use it to check that the host bounds what it
//! copies out of the guest while lifting, not after: otherwise 1000 views
//! of 32 MiB become 32 GB in the broker.
//!
//! The aliasing is built with `Vec::from_raw_parts` over one leaked buffer,
//! which the SDK's export glue then hands to the host as is (a `list<u8>` is
//! passed by pointer and length). Its post-return would free the region
//! once per copy; the host is expected to refuse the result before then.

#![allow(unsafe_code)]

use fault_trigger::is_triggered;
use serde::Deserialize;
use sluice_sdk::{Output, Record, Result};

/// The config: which records misbehave, and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Records whose value contains this text trigger the fault.
    #[serde(default = "fault_trigger::default_trigger")]
    pub trigger: String,
    /// Outputs pointing at the one region.
    #[serde(default = "default_copies")]
    pub copies: u64,
    /// Size of the region, in bytes.
    #[serde(default = "default_bytes")]
    pub bytes: u64,
}

fn default_copies() -> u64 {
    1_000
}

fn default_bytes() -> u64 {
    32 << 20
}

/// Forwards normal records; answers trigger records with aliased outputs.
pub fn alias(record: Record, config: &Config) -> Result<Vec<Output>> {
    if !is_triggered(&record, &config.trigger) {
        return Ok(vec![Output::forward()]);
    }
    let length =
        usize::try_from(config.bytes).map_err(|_| "fault-alias-output: bytes too large")?;
    let copies =
        usize::try_from(config.copies).map_err(|_| "fault-alias-output: copies too large")?;
    let region: &'static mut [u8] = Box::leak(vec![b'x'; length].into_boxed_slice());
    let pointer = region.as_mut_ptr();
    Ok((0..copies)
        .map(|_| {
            // SAFETY: none. Deliberately aliasing: every copy claims to own
            // the same leaked region (see the module docs). Never run outside
            // the broker's tests.
            let value = unsafe { Vec::from_raw_parts(pointer, length, length) };
            Output::value(value)
        })
        .collect())
}

sluice_sdk::flat_map!(alias);
