//! The outputs' way out of the sandbox: `process`'s result list, lifted
//! with the output byte limit checked before anything is copied, into one
//! buffer.
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
//! [`OutputLimitExceeded`].
//!
//! Then it lifts the list itself, with the canonical ABI's checks (bounds,
//! alignment, discriminants; strings through wasmtime's own lifting, which
//! knows the component's string encoding), copying every key, value and
//! header value into one buffer that the outputs share
//! ([`OutputRecord`]'s `Bytes`): one allocation a call where wasmtime's
//! lifting made one per key and per value, and freed them again once the
//! outputs were encoded (6.7% and 2.2% of a busy stateful task's thread).
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

use bytes::{Bytes, BytesMut};

use super::host::bindings::v01::sluice::processor::types::Output as WitOutput;

/// One record a plugin writes (WIT `output`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Index of the input record (or timer) it comes from.
    pub source: u32,
    /// The output topic; `None`: the processor's default output.
    pub topic: Option<String>,
    pub payload: Payload,
}

/// What an output carries (WIT `payload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The input record unchanged.
    Forward,
    /// A new record.
    Emit(OutputRecord),
}

/// A new record (WIT `output-record`); its bytes share one buffer with the
/// rest of its call's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// `None`: the timestamp of its input record (or timer).
    pub timestamp: Option<i64>,
}

/// A header of an [`OutputRecord`] (WIT `header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

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
const RECORD_TIMESTAMP: usize = 32;
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
// `Vec<Output>` (the generated type), which `lift` reads as the canonical
// ABI lays it out (the layout constants are checked against it below).
unsafe impl ComponentType for Outputs {
    type Lower = [ValRaw; 2];

    const ABI: CanonicalAbiInfo = <Vec<WitOutput> as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Vec<WitOutput> as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: guest memory is only read, through bounds-checked slices.
unsafe impl Lift for Outputs {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        _ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        lift(&mut Guest(cx), src[0].get_u32(), src[1].get_u32()).map(Self)
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        _ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let (ptr, len) = pair(bytes, 0).ok_or_else(|| wasmtime::format_err!("list truncated"))?;
        lift(&mut Guest(cx), ptr, len).map(Self)
    }
}

/// Alignment of `output` (its `option<s64>`) and of `header`.
const OUTPUT_ALIGN: usize = 8;
const HEADER_ALIGN: usize = 4;

/// What the lift reads: the guest's memory, and its strings.
trait Memory {
    fn memory(&self) -> &[u8];
    /// The `string` whose `(ptr, len)` is `raw`.
    fn string(&mut self, raw: &[u8]) -> wasmtime::Result<String>;
}

/// A guest's memory, as wasmtime lends it to a lift.
struct Guest<'a, 'b>(&'a mut LiftContext<'b>);

impl Memory for Guest<'_, '_> {
    fn memory(&self) -> &[u8] {
        self.0.memory()
    }

    /// Lifted by wasmtime, which knows the component's string encoding
    /// (from its flat form: `raw` is a copy, not guest memory, and need
    /// not be aligned).
    fn string(&mut self, raw: &[u8]) -> wasmtime::Result<String> {
        let (ptr, len) = pair(raw, 0).expect("a string's pair");
        let flat = [ValRaw::u32(ptr), ValRaw::u32(len)];
        <String as Lift>::linear_lift_from_flat(self.0, InterfaceType::String, &flat)
    }
}

/// Lifts the `list<output>` at `(ptr, len)`, refused past the limit.
fn lift(cx: &mut impl Memory, ptr: u32, len: u32) -> wasmtime::Result<Vec<Output>> {
    let bytes = check(cx.memory(), ptr, len)?;
    let (ptr, len) = (ptr as usize, len as usize);
    let list = list(cx.memory(), ptr, len, OUTPUT_SIZE, OUTPUT_ALIGN)?;
    // The sum counts aliased bytes once per output: a capacity, not more
    // than guest memory. Each key and value is split off it, sharing it.
    let mut buffer = BytesMut::with_capacity((bytes as usize).min(cx.memory().len()));
    let mut outputs = Vec::with_capacity(len);
    for at in list.step_by(OUTPUT_SIZE) {
        let raw: [u8; OUTPUT_SIZE] = cx.memory()[at..at + OUTPUT_SIZE]
            .try_into()
            .expect("within the list");
        let topic = match option(&raw, OUTPUT_TOPIC)? {
            false => None,
            true => Some(cx.string(&raw[OUTPUT_TOPIC + 4..OUTPUT_TOPIC + 12])?),
        };
        let payload = match raw[OUTPUT_PAYLOAD] {
            0 => Payload::Forward,
            PAYLOAD_EMIT => Payload::Emit(record(
                cx,
                &raw[OUTPUT_PAYLOAD + PAYLOAD_RECORD..],
                &mut buffer,
            )?),
            _ => wasmtime::bail!("invalid variant discriminant"),
        };
        outputs.push(Output {
            source: word(&raw, 0).expect("within the output"),
            topic,
            payload,
        });
    }
    Ok(outputs)
}

/// The `output-record` at the start of `raw`, its bytes copied to `buffer`.
fn record(
    cx: &mut impl Memory,
    raw: &[u8],
    buffer: &mut BytesMut,
) -> wasmtime::Result<OutputRecord> {
    let key = bytes_of(cx.memory(), raw, RECORD_KEY, buffer)?;
    let value = bytes_of(cx.memory(), raw, RECORD_VALUE, buffer)?;
    let (headers_ptr, headers_len) = pair(raw, RECORD_HEADERS).expect("within the record");
    let headers_list = list(
        cx.memory(),
        headers_ptr as usize,
        headers_len as usize,
        HEADER_SIZE,
        HEADER_ALIGN,
    )?;
    let mut headers = Vec::with_capacity(headers_len as usize);
    for at in headers_list.step_by(HEADER_SIZE) {
        let header: [u8; HEADER_SIZE] = cx.memory()[at..at + HEADER_SIZE]
            .try_into()
            .expect("within the list");
        let key = cx.string(&header[HEADER_KEY..HEADER_KEY + 8])?;
        let value = bytes_of(cx.memory(), &header, HEADER_VALUE, buffer)?;
        headers.push(Header { key, value });
    }
    let timestamp = match option(raw, RECORD_TIMESTAMP)? {
        false => None,
        true => Some(i64::from_le_bytes(
            raw[RECORD_TIMESTAMP + 8..RECORD_TIMESTAMP + 16]
                .try_into()
                .expect("within the record"),
        )),
    };
    Ok(OutputRecord {
        key,
        value,
        headers,
        timestamp,
    })
}

/// Whether the `option<…>` at `field` of `raw` is `some`.
fn option(raw: &[u8], field: usize) -> wasmtime::Result<bool> {
    match raw[field] {
        0 => Ok(false),
        1 => Ok(true),
        _ => wasmtime::bail!("invalid option discriminant"),
    }
}

/// The `option<list<u8>>` at `field` of `raw`, copied into `buffer` and
/// split off it (sharing its allocation).
fn bytes_of(
    memory: &[u8],
    raw: &[u8],
    field: usize,
    buffer: &mut BytesMut,
) -> wasmtime::Result<Option<Bytes>> {
    if !option(raw, field)? {
        return Ok(None);
    }
    let (ptr, len) = pair(raw, field + 4).expect("within the slot");
    let bytes = list(memory, ptr as usize, len as usize, 1, 1)?;
    buffer.extend_from_slice(&memory[bytes]);
    Ok(Some(buffer.split().freeze()))
}

/// The bytes of a list of `len` elements of `size` at `ptr`, checked as
/// wasmtime checks them: aligned and within memory.
fn list(
    memory: &[u8],
    ptr: usize,
    len: usize,
    size: usize,
    align: usize,
) -> wasmtime::Result<std::ops::Range<usize>> {
    if !ptr.is_multiple_of(align) {
        wasmtime::bail!("list pointer is not aligned");
    }
    match len
        .checked_mul(size)
        .and_then(|bytes| ptr.checked_add(bytes))
    {
        Some(end) if end <= memory.len() => Ok(ptr..end),
        _ => wasmtime::bail!("list pointer/length out of bounds of memory"),
    }
}

/// The little-endian `u32` at `at`.
fn word(slot: &[u8], at: usize) -> Option<u32> {
    let bytes = slot.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().expect("four bytes")))
}

/// Refuses the list at `(ptr, len)` if lifting it would copy more than the
/// limit; returns the bytes it would copy. A malformed list passes: the
/// lift proper refuses it.
fn check(memory: &[u8], ptr: u32, len: u32) -> Result<u64, OutputLimitExceeded> {
    let mut sum = Sum {
        bytes: 0,
        bytes_max: OUTPUT_BYTES_MAX.get(),
    };
    for index in 0..len as usize {
        let at = (ptr as usize).saturating_add(index.saturating_mul(OUTPUT_SIZE));
        let Some(output) = memory.get(at..at.saturating_add(OUTPUT_SIZE)) else {
            break;
        };
        sum.add(option_len(output, OUTPUT_TOPIC))?;
        if output[OUTPUT_PAYLOAD] != PAYLOAD_EMIT {
            continue;
        }
        let record = &output[OUTPUT_PAYLOAD + PAYLOAD_RECORD..];
        sum.add(option_len(record, RECORD_KEY))?;
        sum.add(option_len(record, RECORD_VALUE))?;
        let (headers, count) = pair(record, RECORD_HEADERS).unwrap_or((0, 0));
        for header in 0..count as usize {
            sum.add(HEADER_SIZE)?;
            let at = (headers as usize).saturating_add(header.saturating_mul(HEADER_SIZE));
            let Some(header) = memory.get(at..at.saturating_add(HEADER_SIZE)) else {
                return Ok(sum.bytes);
            };
            sum.add(pair(header, HEADER_KEY).map_or(0, |(_, len)| len as usize))?;
            sum.add(option_len(header, HEADER_VALUE))?;
        }
    }
    Ok(sum.bytes)
}

/// Bytes a lift would copy, so far.
struct Sum {
    bytes: u64,
    bytes_max: u64,
}

impl Sum {
    fn add(&mut self, more: usize) -> Result<(), OutputLimitExceeded> {
        self.bytes = self.bytes.saturating_add(more as u64);
        match self.bytes > self.bytes_max {
            true => Err(OutputLimitExceeded {
                bytes_max: self.bytes_max,
            }),
            false => Ok(()),
        }
    }
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
    Some((word(slot, field)?, word(slot, field + 4)?))
}

#[cfg(test)]
mod tests {
    use super::super::host::bindings::v01::sluice::processor::types::{
        Header as WitHeader, OutputRecord as WitOutputRecord, Payload as WitPayload,
    };
    use super::*;

    #[test]
    fn layouts_match_the_generated_types() {
        assert_eq!(<WitOutput as ComponentType>::SIZE32, OUTPUT_SIZE);
        assert_eq!(<WitOutput as ComponentType>::ALIGN32 as usize, OUTPUT_ALIGN);
        assert_eq!(<WitPayload as ComponentType>::SIZE32, PAYLOAD_RECORD + 48);
        assert_eq!(<WitOutputRecord as ComponentType>::SIZE32, 48);
        assert_eq!(<WitHeader as ComponentType>::SIZE32, HEADER_SIZE);
        assert_eq!(<WitHeader as ComponentType>::ALIGN32 as usize, HEADER_ALIGN);
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
            Ok(10_000)
        );
        assert!(with_output_bytes_max(9_999, || check(&memory, 8, 10)).is_err());
        // Outside a limited call, nothing is refused.
        assert_eq!(check(&memory, 8, 10), Ok(10_000));
    }

    /// Guest memory laid out by hand, its strings read as UTF-8.
    struct Laid {
        memory: Vec<u8>,
        /// Where the next bytes go.
        next: usize,
    }

    impl Memory for Laid {
        fn memory(&self) -> &[u8] {
            &self.memory
        }

        fn string(&mut self, raw: &[u8]) -> wasmtime::Result<String> {
            let (ptr, len) = pair(raw, 0).unwrap();
            let bytes = list(&self.memory, ptr as usize, len as usize, 1, 1)?;
            Ok(String::from_utf8(self.memory[bytes].to_vec())?)
        }
    }

    impl Laid {
        fn new() -> Self {
            Self {
                memory: vec![0; 8 << 10],
                next: 4 << 10,
            }
        }

        /// Copies `bytes` in; their `(ptr, len)`.
        fn put(&mut self, bytes: &[u8]) -> (u32, u32) {
            let at = self.next;
            self.memory[at..at + bytes.len()].copy_from_slice(bytes);
            self.next = (at + bytes.len()).next_multiple_of(8);
            (at as u32, bytes.len() as u32)
        }

        fn set_pair(&mut self, at: usize, (ptr, len): (u32, u32)) {
            self.memory[at..at + 4].copy_from_slice(&ptr.to_le_bytes());
            self.memory[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
        }

        /// An `option<list<u8>>` (or `option<string>`) at `at`.
        fn set_option(&mut self, at: usize, bytes: Option<&[u8]>) {
            if let Some(bytes) = bytes {
                self.memory[at] = 1;
                let pair = self.put(bytes);
                self.set_pair(at + 4, pair);
            }
        }

        /// `outputs` as a `list<output>` at 64 (aligned); its `(ptr, len)`.
        fn outputs(&mut self, outputs: &[Output]) -> (u32, u32) {
            for (index, output) in outputs.iter().enumerate() {
                let at = 64 + index * OUTPUT_SIZE;
                self.memory[at..at + 4].copy_from_slice(&output.source.to_le_bytes());
                self.set_option(
                    at + OUTPUT_TOPIC,
                    output.topic.as_deref().map(str::as_bytes),
                );
                let Payload::Emit(record) = &output.payload else {
                    continue;
                };
                self.memory[at + OUTPUT_PAYLOAD] = PAYLOAD_EMIT;
                let r = at + OUTPUT_PAYLOAD + PAYLOAD_RECORD;
                self.set_option(r + RECORD_KEY, record.key.as_deref());
                self.set_option(r + RECORD_VALUE, record.value.as_deref());
                let headers = self.next;
                self.next += record.headers.len() * HEADER_SIZE;
                for (index, header) in record.headers.iter().enumerate() {
                    let h = headers + index * HEADER_SIZE;
                    let key = self.put(header.key.as_bytes());
                    self.set_pair(h + HEADER_KEY, key);
                    self.set_option(h + HEADER_VALUE, header.value.as_deref());
                }
                self.set_pair(
                    r + RECORD_HEADERS,
                    (headers as u32, record.headers.len() as u32),
                );
                if let Some(timestamp) = record.timestamp {
                    self.memory[r + RECORD_TIMESTAMP] = 1;
                    self.memory[r + RECORD_TIMESTAMP + 8..r + RECORD_TIMESTAMP + 16]
                        .copy_from_slice(&timestamp.to_le_bytes());
                }
            }
            (64, outputs.len() as u32)
        }
    }

    fn emit(key: Option<&'static [u8]>, value: Option<&'static [u8]>) -> OutputRecord {
        OutputRecord {
            key: key.map(Bytes::from_static),
            value: value.map(Bytes::from_static),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    fn sample() -> Vec<Output> {
        vec![
            Output {
                source: 0,
                topic: None,
                payload: Payload::Emit(emit(Some(b"k1"), Some(b"{\"n\":1}"))),
            },
            Output {
                source: 0,
                topic: Some("other".into()),
                payload: Payload::Forward,
            },
            Output {
                source: 2,
                topic: Some("\u{e9}t\u{e9}".into()),
                payload: Payload::Emit(OutputRecord {
                    headers: vec![
                        Header {
                            key: "trace".into(),
                            value: Some(Bytes::from_static(b"abc")),
                        },
                        Header {
                            key: "empty".into(),
                            value: None,
                        },
                    ],
                    timestamp: Some(-5),
                    ..emit(None, Some(b""))
                }),
            },
            Output {
                source: 7,
                topic: None,
                payload: Payload::Emit(OutputRecord {
                    timestamp: Some(i64::MAX),
                    ..emit(Some(b"tombstone"), None)
                }),
            },
        ]
    }

    #[test]
    fn outputs_lift_as_laid_out_sharing_one_buffer() {
        let outputs = sample();
        let mut laid = Laid::new();
        let (ptr, len) = laid.outputs(&outputs);
        let lifted = lift(&mut laid, ptr, len).unwrap();
        assert_eq!(lifted, outputs);
        // The bytes copied, back to back in one buffer.
        let bytes = |output: &Output| match &output.payload {
            Payload::Emit(record) => [record.key.clone(), record.value.clone()]
                .into_iter()
                .chain(record.headers.iter().map(|h| h.value.clone()))
                .flatten()
                .collect(),
            Payload::Forward => Vec::new(),
        };
        let all: Vec<Bytes> = lifted.iter().flat_map(bytes).collect();
        assert_eq!(all.len(), 5);
        for pair in all.windows(2) {
            assert_eq!(
                pair[0].as_ptr().wrapping_add(pair[0].len()),
                pair[1].as_ptr()
            );
        }
        assert!(lift(&mut laid, ptr, 0).unwrap().is_empty());
    }

    #[test]
    fn malformed_outputs_are_refused_naming_what() {
        let refused = |change: &dyn Fn(&mut Laid)| {
            let mut laid = Laid::new();
            let (ptr, len) = laid.outputs(&sample());
            change(&mut laid);
            let ptr = if laid.memory[0] == 0xAA { ptr + 4 } else { ptr };
            lift(&mut laid, ptr, len).unwrap_err().to_string()
        };
        let second = 64 + OUTPUT_SIZE;
        let first_record = 64 + OUTPUT_PAYLOAD + PAYLOAD_RECORD;
        assert_eq!(
            refused(&|laid| laid.memory[second + OUTPUT_TOPIC] = 2),
            "invalid option discriminant"
        );
        assert_eq!(
            refused(&|laid| laid.memory[second + OUTPUT_PAYLOAD] = 2),
            "invalid variant discriminant"
        );
        assert_eq!(
            refused(&|laid| laid.memory[first_record + RECORD_TIMESTAMP] = 3),
            "invalid option discriminant"
        );
        // The list misaligned, a value and a header list out of bounds.
        assert_eq!(
            refused(&|laid| laid.memory[0] = 0xAA),
            "list pointer is not aligned"
        );
        assert_eq!(
            refused(&|laid| laid.set_pair(first_record + RECORD_VALUE + 4, (8 << 10, 1))),
            "list pointer/length out of bounds of memory"
        );
        let third_record = 64 + 2 * OUTPUT_SIZE + OUTPUT_PAYLOAD + PAYLOAD_RECORD;
        assert_eq!(
            refused(&|laid| laid.set_pair(third_record + RECORD_HEADERS, (4 << 10, u32::MAX))),
            "list pointer/length out of bounds of memory"
        );
        assert_eq!(
            refused(&|laid| laid.set_pair(third_record + RECORD_HEADERS, (4098, 1))),
            "list pointer is not aligned"
        );
        // The whole list past the end of memory.
        let mut laid = Laid::new();
        assert!(lift(&mut laid, 8 << 10, 1).is_err());
        // Past the byte limit, refused before anything is copied.
        let mut laid = Laid::new();
        let (ptr, len) = laid.outputs(&sample());
        let refused = with_output_bytes_max(10, || lift(&mut laid, ptr, len)).unwrap_err();
        assert!(refused.downcast_ref::<OutputLimitExceeded>().is_some());
    }
}
