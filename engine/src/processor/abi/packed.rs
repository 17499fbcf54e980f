//! Contract 0.2's batch lowering: the batch as one buffer.
//!
//! Every key, value, header name and header value of the batch is copied
//! back to back into one `list<u8>` (`data`), and the records and headers
//! are flat lists of spans into it. A batch is four `realloc` calls into
//! the guest (topic, data, records, headers) whatever its size, against
//! one per key, value and header for 0.1's lowering (`super`), each of
//! which enters the sandbox: the experiment that chose this form measured
//! the boundary at about 17 ns a record against 120 (README, "A batch as
//! one buffer").
//!
//! The layout constants are checked against the generated 0.2 types, and
//! the type check at instantiation is theirs, as for 0.1's lowering.

#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use bytes::Bytes;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};
use wasmtime::ValRaw;

use super::{
    allocate_list, copy_bytes, lower_topic, put_option, put_pair, put_u32, slot, Batch, InputRecord,
};
use crate::processor::host::bindings::v02::sluice::processor::types::Batch as WitPackedBatch;

// Canonical ABI layouts (wasm32) of 0.2's `batch`, `input-record` and
// `header-span`. `span` is two u32s; `option<span>` a discriminant byte,
// then the span at offset 4.
const BATCH_TOPIC: usize = 0;
const BATCH_PARTITION: usize = 8;
const BATCH_DATA: usize = 12;
const BATCH_RECORDS: usize = 20;
const BATCH_HEADERS: usize = 28;
const BATCH_SIZE: usize = 36;
const RECORD_SIZE: usize = 48;
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

/// A batch lowered as contract 0.2's `batch`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packed<'a>(pub(crate) Batch<'a>);

// SAFETY: `Lower` is nine `ValRaw`s, the flattening of 0.2's `batch` (topic
// pointer and length, partition, then pointer and length of data, records
// and headers); the ABI and the type check are those of the generated
// type, whose shape this one mirrors field for field.
unsafe impl ComponentType for Packed<'_> {
    type Lower = [ValRaw; 9];

    const ABI: CanonicalAbiInfo = <WitPackedBatch as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <WitPackedBatch as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: every write below lands in memory the guest's `realloc` returned
// for exactly that purpose (wasmtime checks each returned range is inside
// the guest's memory, and every write here is bounds-checked again);
// nothing is read back.
unsafe impl Lower for Packed<'_> {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 9]>,
    ) -> wasmtime::Result<()> {
        let [topic_ptr, topic_len] = lower_topic(cx, self.0.topic)?;
        let lists = lower_lists(cx, self.0.records)?;
        // As wasmtime's own list lowering writes them (`i64`, for memory64).
        let pair = |(ptr, len): (usize, usize)| [ValRaw::i64(ptr as i64), ValRaw::i64(len as i64)];
        let [data_ptr, data_len] = pair(lists.data);
        let [records_ptr, records_len] = pair(lists.records);
        let [headers_ptr, headers_len] = pair(lists.headers);
        dst.write([
            topic_ptr,
            topic_len,
            ValRaw::i32(self.0.partition),
            data_ptr,
            data_len,
            records_ptr,
            records_len,
            headers_ptr,
            headers_len,
        ]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        self.0
            .topic
            .linear_lower_to_memory(cx, InterfaceType::String, offset + BATCH_TOPIC)?;
        let lists = lower_lists(cx, self.0.records)?;
        let slot = slot::<BATCH_SIZE>(cx.as_slice_mut(), offset)?;
        put_u32(slot, BATCH_PARTITION, self.0.partition as u32);
        put_pair(slot, BATCH_DATA, lists.data.0, lists.data.1)?;
        put_pair(slot, BATCH_RECORDS, lists.records.0, lists.records.1)?;
        put_pair(slot, BATCH_HEADERS, lists.headers.0, lists.headers.1)
    }
}

/// The three lists of a lowered batch, each as (pointer, length).
struct Lists {
    data: (usize, usize),
    records: (usize, usize),
    headers: (usize, usize),
}

/// Bytes `data` needs for `records`, and how many headers they have.
fn sizes(records: &[InputRecord]) -> wasmtime::Result<(u32, u32)> {
    let length = |bytes: Option<&Bytes>| bytes.map_or(0, Bytes::len);
    let mut data = 0usize;
    let mut headers = 0usize;
    for record in records {
        data += length(record.key.as_ref()) + length(record.value.as_ref());
        for header in &record.headers {
            data += header.key.len() + length(header.value.as_ref());
        }
        headers += record.headers.len();
    }
    let too_large = || wasmtime::format_err!("a batch of {data} bytes is too large to lower");
    Ok((
        u32::try_from(data).map_err(|_| too_large())?,
        u32::try_from(headers).map_err(|_| too_large())?,
    ))
}

/// Allocates the batch's three lists in the guest and fills them.
fn lower_lists<T>(
    cx: &mut LowerContext<'_, T>,
    records: &[InputRecord],
) -> wasmtime::Result<Lists> {
    let (data_len, header_count) = sizes(records)?;
    // The allocations first (each may grow the guest's memory), in the
    // order of the fields; then one view of memory for the writes.
    let data = cx.realloc(0, 0, 1, data_len as usize)?;
    let record_list = allocate_list(cx, records.len(), RECORD_SIZE, RECORD_ALIGN)?;
    let header_list = allocate_list(cx, header_count as usize, HEADER_SIZE, HEADER_ALIGN)?;
    let memory = cx.as_slice_mut();
    let mut writer = Writer {
        memory,
        data,
        written: 0,
    };
    // Spans and header indices fit a u32: `sizes` checked the batch.
    let mut header_index = 0usize;
    for (index, record) in records.iter().enumerate() {
        let key = writer.bytes(record.key.as_deref())?;
        let value = writer.bytes(record.value.as_deref())?;
        let first_header = header_index;
        for header in &record.headers {
            let name = writer.bytes(Some(header.key.as_bytes()))?;
            let value = writer.bytes(header.value.as_deref())?;
            let at = header_list + header_index * HEADER_SIZE;
            let slot = slot::<HEADER_SIZE>(writer.memory, at)?;
            let (start, len) = name.expect("a header name");
            put_pair(slot, HEADER_KEY, start, len)?;
            put_option(slot, HEADER_VALUE, value)?;
            header_index += 1;
        }
        let slot = slot::<RECORD_SIZE>(writer.memory, record_list + index * RECORD_SIZE)?;
        slot[RECORD_OFFSET..RECORD_OFFSET + 8].copy_from_slice(&record.offset.to_le_bytes());
        slot[RECORD_TIMESTAMP..RECORD_TIMESTAMP + 8]
            .copy_from_slice(&record.timestamp.to_le_bytes());
        put_option(slot, RECORD_KEY, key)?;
        put_option(slot, RECORD_VALUE, value)?;
        put_pair(slot, RECORD_HEADERS, first_header, record.headers.len())?;
    }
    Ok(Lists {
        data: (data, data_len as usize),
        records: (record_list, records.len()),
        headers: (header_list, header_count as usize),
    })
}

/// Appends byte strings to a batch's `data` in guest memory.
struct Writer<'m> {
    memory: &'m mut [u8],
    /// Where `data` starts in guest memory.
    data: usize,
    /// Bytes appended so far.
    written: usize,
}

impl Writer<'_> {
    /// Appends `bytes`, if any; returns their span (start, length) in
    /// `data`.
    fn bytes(&mut self, bytes: Option<&[u8]>) -> wasmtime::Result<Option<(usize, usize)>> {
        let Some(bytes) = bytes else { return Ok(None) };
        let span = (self.written, bytes.len());
        copy_bytes(self.memory, Some((self.data + span.0, span.1)), Some(bytes))?;
        self.written += bytes.len();
        Ok(Some(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::host::bindings::v02::sluice::processor::types::{
        HeaderSpan, InputRecord as WitRecord, Span,
    };

    /// The hand-written layout is the canonical ABI's, as wasmtime computes
    /// it for the generated 0.2 types.
    #[test]
    fn layouts_match_the_generated_types() {
        assert_eq!(<WitRecord as ComponentType>::SIZE32, RECORD_SIZE);
        assert_eq!(<WitRecord as ComponentType>::ALIGN32, RECORD_ALIGN);
        assert_eq!(<HeaderSpan as ComponentType>::SIZE32, HEADER_SIZE);
        assert_eq!(<HeaderSpan as ComponentType>::ALIGN32, HEADER_ALIGN);
        assert_eq!(<WitPackedBatch as ComponentType>::SIZE32, BATCH_SIZE);
        assert_eq!(<Packed<'_> as ComponentType>::flatten_count(), 9);
        let offsets = |fields: &[CanonicalAbiInfo]| {
            let mut size = 0;
            fields
                .iter()
                .map(|field| CanonicalAbiInfo::next_field32_size(field, &mut size))
                .collect::<Vec<_>>()
        };
        const SPAN: CanonicalAbiInfo = <Span as ComponentType>::ABI;
        const SPAN_OPTION: CanonicalAbiInfo = <Option<Span> as ComponentType>::ABI;
        const LIST: CanonicalAbiInfo = <Vec<u8> as ComponentType>::ABI;
        const I64: CanonicalAbiInfo = <i64 as ComponentType>::ABI;
        const STRING: CanonicalAbiInfo = <String as ComponentType>::ABI;
        assert_eq!(
            offsets(&[I64, I64, SPAN_OPTION, SPAN_OPTION, SPAN]),
            [
                RECORD_OFFSET,
                RECORD_TIMESTAMP,
                RECORD_KEY,
                RECORD_VALUE,
                RECORD_HEADERS
            ]
        );
        assert_eq!(offsets(&[SPAN, SPAN_OPTION]), [HEADER_KEY, HEADER_VALUE]);
        assert_eq!(
            offsets(&[STRING, <i32 as ComponentType>::ABI, LIST, LIST, LIST]),
            [
                BATCH_TOPIC,
                BATCH_PARTITION,
                BATCH_DATA,
                BATCH_RECORDS,
                BATCH_HEADERS
            ]
        );
        // The payload of `option<span>` sits at offset 4.
        assert_eq!(SPAN_OPTION.size32, 12);
    }
}
