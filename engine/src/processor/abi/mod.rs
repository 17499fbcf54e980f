//! The batch's way into the sandbox: hand-written canonical ABI lowerings
//! of `process`'s `batch` parameter, contract 0.1's here (a list of
//! records, each key and value its own list) and 0.2's in [`packed`] (the
//! whole batch in one byte list, records pointing into it).
//!
//! Wasmtime's derived lowering is generic: every field it stores looks the
//! guest's memory up again, and it needs owned `Vec`s. For a filter that
//! reads one field, that generic walk cost as much as the filter. Here the
//! records are written straight from the broker's own buffers ([`Bytes`]
//! slices of the log's batches, never copied on the host), with one lookup
//! of the guest memory per record.
//!
//! It stays a conforming lowering: every list (each key, value, header list
//! and header) gets its own `realloc` call in the guest, in the order the
//! canonical ABI makes them, so any guest, not only the SDK's, owns and frees
//! its lists as it expects. Those calls are the floor of the boundary's cost
//! (each one enters the sandbox), which is why a record without headers
//! carries `none` rather than an empty list.
//!
//! The layout constants below are checked against the generated types, and
//! the type check is theirs: a component whose `batch` differs is refused
//! at instantiation. The black-box suite's `inspect` plugin checks every
//! shape of record arrives intact.
//!
//! This and `lift.rs` (the outputs' way back) are the hand-written
//! `unsafe` in the broker: implementing wasmtime's `unsafe` canonical ABI
//! traits, as bindgen's generated glue does. The whole workspace otherwise
//! denies `unsafe_code`. The traits' hidden
//! items (`wasmtime::component::__internal`) are not covered by semver,
//! which is why wasmtime is pinned to one exact version.

#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use bytes::Bytes;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};
use wasmtime::ValRaw;

use super::host::WitBatch;

pub(crate) mod packed;

/// A record header as the broker holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputHeader {
    pub key: String,
    /// Kafka allows a null header value.
    pub value: Option<Bytes>,
}

/// One record read from an input partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<InputHeader>,
}

/// Consecutive records of one input partition, borrowed: narrowing a
/// failure down to part of a batch copies nothing.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub records: &'a [InputRecord],
}

// Canonical ABI layouts of `batch`, `input-record` and `header` (wasm32):
// fields aligned to their own alignment, in declaration order.
// `option<list<…>>`: a discriminant byte, then (ptr, len) at offset 4.
const BATCH_TOPIC: usize = 0;
const BATCH_PARTITION: usize = 8;
const BATCH_RECORDS: usize = 12;
const RECORD_SIZE: usize = 56;
const RECORD_ALIGN: u32 = 8;
const RECORD_OFFSET: usize = 0;
const RECORD_TIMESTAMP: usize = 8;
const RECORD_KEY: usize = 16;
const RECORD_VALUE: usize = 28;
const RECORD_HEADERS: usize = 40;
const HEADER_SIZE: usize = 20;
const HEADER_ALIGN: u32 = 4;
const HEADER_KEY: usize = 0;
const HEADER_VALUE: usize = 8;

// SAFETY: `Lower` is five `ValRaw`s, the flattening of `batch`
// (topic pointer and length, partition, records pointer and length); the ABI
// and the type check are those of the generated `batch` type, whose shape
// this one mirrors field for field.
unsafe impl ComponentType for Batch<'_> {
    type Lower = [ValRaw; 5];

    const ABI: CanonicalAbiInfo = <WitBatch as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <WitBatch as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: every write below lands in memory the guest's `realloc` returned
// for exactly that purpose (wasmtime checks each returned range is inside
// the guest's memory); nothing is read back.
unsafe impl Lower for Batch<'_> {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 5]>,
    ) -> wasmtime::Result<()> {
        let [topic_ptr, topic_len] = lower_topic(cx, self.topic)?;
        let (records, count) = lower_records(cx, self.records)?;
        dst.write([
            topic_ptr,
            topic_len,
            ValRaw::i32(self.partition),
            ValRaw::i64(records as i64),
            ValRaw::i64(count as i64),
        ]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        self.topic
            .linear_lower_to_memory(cx, InterfaceType::String, offset + BATCH_TOPIC)?;
        let (records, count) = lower_records(cx, self.records)?;
        let slot = slot::<20>(cx.as_slice_mut(), offset)?;
        put_u32(slot, BATCH_PARTITION, self.partition as u32);
        put_pair(slot, BATCH_RECORDS, records, count)
    }
}

/// Lowers a batch's topic as a flat `string`: its pointer and length.
fn lower_topic<T>(cx: &mut LowerContext<'_, T>, topic: &str) -> wasmtime::Result<[ValRaw; 2]> {
    let mut flat = MaybeUninit::<[ValRaw; 2]>::uninit();
    topic.linear_lower_to_flat(cx, InterfaceType::String, &mut flat)?;
    // SAFETY: `linear_lower_to_flat` of a string initialises both values.
    Ok(unsafe { flat.assume_init() })
}

/// Lowers `list<input-record>`; returns its pointer and length.
fn lower_records<T>(
    cx: &mut LowerContext<'_, T>,
    records: &[InputRecord],
) -> wasmtime::Result<(usize, usize)> {
    let base = allocate_list(cx, records.len(), RECORD_SIZE, RECORD_ALIGN)?;
    for (index, record) in records.iter().enumerate() {
        // The allocations first (each may grow the guest's memory), in the
        // order of the fields; then one view of memory for the writes.
        let key = allocate_bytes(cx, record.key.as_ref())?;
        let value = allocate_bytes(cx, record.value.as_ref())?;
        let headers = if record.headers.is_empty() {
            None
        } else {
            Some((lower_headers(cx, &record.headers)?, record.headers.len()))
        };
        let memory = cx.as_slice_mut();
        copy_bytes(memory, key, record.key.as_deref())?;
        copy_bytes(memory, value, record.value.as_deref())?;
        let slot = slot::<RECORD_SIZE>(memory, base + index * RECORD_SIZE)?;
        slot[RECORD_OFFSET..RECORD_OFFSET + 8].copy_from_slice(&record.offset.to_le_bytes());
        slot[RECORD_TIMESTAMP..RECORD_TIMESTAMP + 8]
            .copy_from_slice(&record.timestamp.to_le_bytes());
        put_option(slot, RECORD_KEY, key)?;
        put_option(slot, RECORD_VALUE, value)?;
        put_option(slot, RECORD_HEADERS, headers)?;
    }
    Ok((base, records.len()))
}

/// Lowers a non-empty `list<header>`; returns its pointer.
fn lower_headers<T>(
    cx: &mut LowerContext<'_, T>,
    headers: &[InputHeader],
) -> wasmtime::Result<usize> {
    let base = allocate_list(cx, headers.len(), HEADER_SIZE, HEADER_ALIGN)?;
    for (index, header) in headers.iter().enumerate() {
        let at = base + index * HEADER_SIZE;
        header
            .key
            .as_str()
            .linear_lower_to_memory(cx, InterfaceType::String, at + HEADER_KEY)?;
        let value = allocate_bytes(cx, header.value.as_ref())?;
        let memory = cx.as_slice_mut();
        copy_bytes(memory, value, header.value.as_deref())?;
        put_option(slot::<HEADER_SIZE>(memory, at)?, HEADER_VALUE, value)?;
    }
    Ok(base)
}

/// The guest allocation for a list of `count` elements of `size` bytes.
fn allocate_list<T>(
    cx: &mut LowerContext<'_, T>,
    count: usize,
    size: usize,
    align: u32,
) -> wasmtime::Result<usize> {
    let bytes = count
        .checked_mul(size)
        .ok_or_else(|| wasmtime::format_err!("a list of {count} elements is too large to lower"))?;
    cx.realloc(0, 0, align, bytes)
}

/// The guest allocation for an `option<list<u8>>`'s payload, if any, as
/// (pointer, length).
fn allocate_bytes<T>(
    cx: &mut LowerContext<'_, T>,
    bytes: Option<&Bytes>,
) -> wasmtime::Result<Option<(usize, usize)>> {
    bytes
        .map(|bytes| Ok((cx.realloc(0, 0, 1, bytes.len())?, bytes.len())))
        .transpose()
}

/// Copies `bytes` into the guest memory `list` (pointer, length) was
/// allocated for.
fn copy_bytes(
    memory: &mut [u8],
    list: Option<(usize, usize)>,
    bytes: Option<&[u8]>,
) -> wasmtime::Result<()> {
    if let (Some((at, _)), Some(bytes)) = (list, bytes) {
        memory
            .get_mut(at..)
            .and_then(|rest| rest.get_mut(..bytes.len()))
            .ok_or_else(out_of_bounds)?
            .copy_from_slice(bytes);
    }
    Ok(())
}

/// Writes an `option<list<…>>` at `field` of `slot`: `list` is its
/// (pointer, length), or `None`. An `option<span>` (start, length) has the
/// same layout.
fn put_option(slot: &mut [u8], field: usize, list: Option<(usize, usize)>) -> wasmtime::Result<()> {
    match list {
        Some((ptr, len)) => {
            slot[field] = 1;
            put_pair(slot, field + 4, ptr, len)
        }
        None => {
            slot[field] = 0;
            Ok(())
        }
    }
}

fn put_pair(slot: &mut [u8], field: usize, ptr: usize, len: usize) -> wasmtime::Result<()> {
    put_u32(slot, field, u32::try_from(ptr)?);
    put_u32(slot, field + 4, u32::try_from(len)?);
    Ok(())
}

fn put_u32(slot: &mut [u8], field: usize, value: u32) {
    slot[field..field + 4].copy_from_slice(&value.to_le_bytes());
}

fn slot<const N: usize>(memory: &mut [u8], at: usize) -> wasmtime::Result<&mut [u8; N]> {
    memory
        .get_mut(at..)
        .and_then(|rest| rest.first_chunk_mut::<N>())
        .ok_or_else(out_of_bounds)
}

fn out_of_bounds() -> wasmtime::Error {
    wasmtime::format_err!("lowering a batch: guest allocation outside its memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::host::bindings::v01::sluice::processor::types::{
        Header as WitHeader, InputRecord as WitInputRecord,
    };

    /// The hand-written layout is the canonical ABI's, as wasmtime computes
    /// it for the generated types.
    #[test]
    fn layouts_match_the_generated_types() {
        assert_eq!(<WitInputRecord as ComponentType>::SIZE32, RECORD_SIZE);
        assert_eq!(<WitInputRecord as ComponentType>::ALIGN32, RECORD_ALIGN);
        assert_eq!(<WitHeader as ComponentType>::SIZE32, HEADER_SIZE);
        assert_eq!(<WitHeader as ComponentType>::ALIGN32, HEADER_ALIGN);
        assert_eq!(<WitBatch as ComponentType>::SIZE32, 20);
        assert_eq!(<Batch<'_> as ComponentType>::flatten_count(), 5);
        // Field offsets, field by field, as the canonical ABI lays records out.
        let offsets = |fields: &[CanonicalAbiInfo]| {
            let mut size = 0;
            fields
                .iter()
                .map(|field| CanonicalAbiInfo::next_field32_size(field, &mut size))
                .collect::<Vec<_>>()
        };
        const BYTES_OPTION: CanonicalAbiInfo = <Option<Vec<u8>> as ComponentType>::ABI;
        const LIST: CanonicalAbiInfo = <Vec<u8> as ComponentType>::ABI;
        const I64: CanonicalAbiInfo = <i64 as ComponentType>::ABI;
        const STRING: CanonicalAbiInfo = <String as ComponentType>::ABI;
        assert_eq!(
            offsets(&[I64, I64, BYTES_OPTION, BYTES_OPTION, BYTES_OPTION]),
            [
                RECORD_OFFSET,
                RECORD_TIMESTAMP,
                RECORD_KEY,
                RECORD_VALUE,
                RECORD_HEADERS
            ]
        );
        assert_eq!(offsets(&[STRING, BYTES_OPTION]), [HEADER_KEY, HEADER_VALUE]);
        assert_eq!(
            offsets(&[STRING, <i32 as ComponentType>::ABI, LIST]),
            [BATCH_TOPIC, BATCH_PARTITION, BATCH_RECORDS]
        );
        // The payload of `option<list<u8>>` sits at offset 4.
        assert_eq!(BYTES_OPTION.size32, 12);
    }
}
