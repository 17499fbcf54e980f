//! The outputs' way out of the sandbox: `process`'s result list, lifted
//! with the output byte limit checked before anything is copied.
//!
//! Wasmtime's lifting of `list<output>` copies every key, value, header and
//! topic name to the host as it goes, and only then could the worker count
//! them. The guest writes those (pointer, length) pairs itself, so 1000
//! outputs may all point at one 32 MiB region: 32 GB to copy from 64 MiB of
//! guest memory. (Wasmtime's own hostcall fuel stops such a copy eventually,
//! with a message that names no limit of ours.) So [`Outputs`] first walks
//! the list in guest memory, reading only the pairs, and sums the bytes the
//! lift would copy: keys, values, topic names, header names and values, and
//! each header's own 20 bytes (a list of headers can be aliased as well).
//! Past `output_bytes_per_batch_max` the result is refused with
//! [`OutputLimitExceeded`]; otherwise wasmtime's lifting runs as before.
//!
//! The limit reaches the trait, whose functions take no state of ours,
//! through a thread-local set around the call ([`with_output_bytes_max`]):
//! the lift runs on the calling thread, inside `call`.
//!
//! Like `abi.rs`, this implements wasmtime's `unsafe` canonical ABI traits
//! (their hidden items are not covered by semver, hence the exact pin). The
//! layout constants are checked against the generated types below.

#![allow(unsafe_code)]

use std::cell::Cell;

use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift};
use wasmtime::ValRaw;

use super::host::Output;

// Canonical ABI layouts (wasm32) of `output`, `payload`, `output-record`
// and `header`; `option<list<…>>` and `option<string>`: a discriminant
// byte, then (ptr, len) at offset 4.
const OUTPUT_SIZE: usize = 72;
const OUTPUT_TOPIC: usize = 4;
const OUTPUT_PAYLOAD: usize = 16;
/// `payload`'s case of `emit`, and where its record starts in the variant.
const PAYLOAD_EMIT: u8 = 1;
const PAYLOAD_RECORD: usize = 8;
const RECORD_KEY: usize = 0;
const RECORD_VALUE: usize = 12;
const RECORD_HEADERS: usize = 24;
const HEADER_SIZE: usize = 20;
const HEADER_KEY: usize = 0;
const HEADER_VALUE: usize = 8;

thread_local! {
    /// The output byte limit of the call running on this thread.
    static OUTPUT_BYTES_MAX: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// Runs `call` with [`Outputs`] lifted under `bytes_max`.
pub(crate) fn with_output_bytes_max<R>(bytes_max: u64, call: impl FnOnce() -> R) -> R {
    /// Puts the previous limit back however `call` ends, unwinding too
    /// (a host panic is caught by the partition driver, and the thread
    /// goes on to run other calls).
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            OUTPUT_BYTES_MAX.set(self.0);
        }
    }
    let _restore = Restore(OUTPUT_BYTES_MAX.replace(bytes_max));
    call()
}

/// A `process` result refused while lifting: copying it would pass the
/// output byte limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "output limit exceeded: the outputs of one call would copy more than {bytes_max} bytes \
     out of the plugin (output_bytes_per_batch_max)"
)]
pub(crate) struct OutputLimitExceeded {
    pub(crate) bytes_max: u64,
}

/// `list<output>`, lifted only if it copies at most the output byte limit.
#[derive(Debug)]
pub(crate) struct Outputs(pub(crate) Vec<Output>);

// SAFETY: the ABI, the flat representation and the type check are those of
// `Vec<Output>`, which does the lifting itself once the limit is checked.
unsafe impl ComponentType for Outputs {
    type Lower = [ValRaw; 2];

    const ABI: CanonicalAbiInfo = <Vec<Output> as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Vec<Output> as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: the check only reads guest memory through bounds-checked slices;
// the lift proper is `Vec<Output>`'s.
unsafe impl Lift for Outputs {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        check(cx.memory(), src[0].get_u32(), src[1].get_u32())?;
        Ok(Self(<Vec<Output> as Lift>::linear_lift_from_flat(
            cx, ty, src,
        )?))
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let (ptr, len) = pair(bytes, 0).unwrap_or((0, 0));
        check(cx.memory(), ptr, len)?;
        Ok(Self(<Vec<Output> as Lift>::linear_lift_from_memory(
            cx, ty, bytes,
        )?))
    }
}

/// Refuses the list at `(ptr, len)` if lifting it would copy more than the
/// limit. A malformed list passes: the lift proper refuses it.
fn check(memory: &[u8], ptr: u32, len: u32) -> Result<(), OutputLimitExceeded> {
    let bytes_max = OUTPUT_BYTES_MAX.get();
    let mut bytes = 0u64;
    let mut add = |more: usize| {
        bytes = bytes.saturating_add(more as u64);
        if bytes > bytes_max {
            return Err(OutputLimitExceeded { bytes_max });
        }
        Ok(())
    };
    for index in 0..len as usize {
        let at = (ptr as usize).saturating_add(index.saturating_mul(OUTPUT_SIZE));
        let Some(output) = memory.get(at..at.saturating_add(OUTPUT_SIZE)) else {
            return Ok(());
        };
        add(option_len(output, OUTPUT_TOPIC))?;
        if output[OUTPUT_PAYLOAD] != PAYLOAD_EMIT {
            continue;
        }
        let record = &output[OUTPUT_PAYLOAD + PAYLOAD_RECORD..];
        add(option_len(record, RECORD_KEY))?;
        add(option_len(record, RECORD_VALUE))?;
        let (headers, count) = pair(record, RECORD_HEADERS).unwrap_or((0, 0));
        for header in 0..count as usize {
            add(HEADER_SIZE)?;
            let at = (headers as usize).saturating_add(header.saturating_mul(HEADER_SIZE));
            let Some(header) = memory.get(at..at.saturating_add(HEADER_SIZE)) else {
                return Ok(());
            };
            add(pair(header, HEADER_KEY).map_or(0, |(_, len)| len as usize))?;
            add(option_len(header, HEADER_VALUE))?;
        }
    }
    Ok(())
}

/// The length of the `option<list<…>>` at `field`, 0 for `none`.
fn option_len(slot: &[u8], field: usize) -> usize {
    match slot.get(field) {
        Some(1) => pair(slot, field + 4).map_or(0, |(_, len)| len as usize),
        _ => 0,
    }
}

/// The `(ptr, len)` pair at `field`.
fn pair(slot: &[u8], field: usize) -> Option<(u32, u32)> {
    let word = |at: usize| {
        slot.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    Some((word(field)?, word(field + 4)?))
}

#[cfg(test)]
mod tests {
    use super::super::host::{Header, OutputRecord, Payload};
    use super::*;

    #[test]
    fn layouts_match_the_generated_types() {
        assert_eq!(<Output as ComponentType>::SIZE32, OUTPUT_SIZE);
        assert_eq!(<Payload as ComponentType>::SIZE32, PAYLOAD_RECORD + 48);
        assert_eq!(<OutputRecord as ComponentType>::SIZE32, 48);
        assert_eq!(<Header as ComponentType>::SIZE32, HEADER_SIZE);
        assert_eq!(<Outputs as ComponentType>::ABI.size32, 8);
    }

    /// `count` outputs in memory at 8, all emitting the value at `value`.
    fn aliased(count: usize, value_len: u32) -> Vec<u8> {
        let mut memory = vec![0u8; 8 + count * OUTPUT_SIZE];
        for index in 0..count {
            let output = 8 + index * OUTPUT_SIZE;
            memory[output + OUTPUT_PAYLOAD] = PAYLOAD_EMIT;
            let value = output + OUTPUT_PAYLOAD + PAYLOAD_RECORD + RECORD_VALUE;
            memory[value] = 1;
            memory[value + 8..value + 12].copy_from_slice(&value_len.to_le_bytes());
        }
        memory
    }

    #[test]
    fn aliased_values_are_counted_per_output() {
        let memory = aliased(1_000, 32 << 20);
        let refused = with_output_bytes_max(16 << 20, || check(&memory, 8, 1_000));
        assert_eq!(
            refused,
            Err(OutputLimitExceeded {
                bytes_max: 16 << 20
            })
        );
        let memory = aliased(10, 1_000);
        assert_eq!(
            with_output_bytes_max(10_000, || check(&memory, 8, 10)),
            Ok(())
        );
        assert!(with_output_bytes_max(9_999, || check(&memory, 8, 10)).is_err());
        // Outside a limited call, nothing is refused.
        assert_eq!(check(&memory, 8, 10), Ok(()));
    }
}
