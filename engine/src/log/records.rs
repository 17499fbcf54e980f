//! The records inside a batch: bounded decompression and validation.
//!
//! A batch header says how many records it holds, but the records section
//! is the producer's word. Two things follow, and every place that looks
//! inside a batch (produce, the processor's input, ListOffsets by time,
//! compaction) goes through this module for both:
//!
//! - **Decompression is bounded.** A 1 MiB zstd batch of zeros inflates to
//!   tens of GiB. Each codec runs as a streaming reader cut at
//!   `decompressed_batch_bytes_max + 1` bytes, and snappy's claimed block
//!   lengths are checked against what is left of the budget before
//!   anything is allocated; past the budget the batch is refused, never
//!   allocated.
//! - **Records are validated** as Kafka's `LogValidator` and
//!   `DefaultRecord` do: exactly `records_count` records, offset deltas
//!   0, 1, … n−1 for a produced batch (the log trusts `offset = base + delta`: a delta of a
//!   million would make a processor commit past the high watermark, a
//!   negative one kept by compaction breaks the partition at next open);
//!   in a stored batch, which compaction may have thinned, strictly
//!   increasing deltas up to the header's last offset delta,
//!   every length within its record, no bytes left over in a record or
//!   after the last one, and timestamps that neither overflow nor exceed
//!   the batch's max timestamp. The walk reads varint headers only and
//!   materializes nothing, so it stays cheap on the produce path.
//! - **Records are decoded here, not by kafka-protocol**, whose `Record`
//!   keys headers by name: Kafka allows several headers of one name, in
//!   order. [`decode`] yields records whose key, value and headers (a list)
//!   are `Bytes` slices of the batch (zero-copy for an uncompressed batch:
//!   the processor lowers them into the guest without host copies);
//!   [`retain`] rebuilds a batch for compaction by copying the kept
//!   records' bytes as stored.
//!
//! Record layout (after decompression), varints zig-zag encoded:
//! ```text
//! varint  length            bytes after this field
//! int8    attributes
//! varlong timestamp_delta   from the batch's base timestamp
//! varint  offset_delta      from the batch's base offset
//! varint  key_length        -1 for null
//! bytes   key
//! varint  value_length      -1 for null
//! bytes   value
//! varint  headers_count
//!   varint header_key_length, bytes, varint header_value_length (-1 null), bytes
//! ```

use std::borrow::Cow;
use std::io::Read;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchError, BatchHeader, HEADER_BYTES};

/// Default of `decompressed_batch_bytes_max`: 64 MiB, 64 times the default
/// `max.message.bytes`, so any real compression ratio of an accepted batch
/// fits, while one batch never costs more than this much memory.
pub(crate) const DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// xerial snappy framing (what Kafka's Java client writes).
const SNAPPY_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// Magic plus version and compatible version.
const SNAPPY_HEADER_BYTES: usize = 16;

/// The plain (decompressed) records section of a verified `batch`. Refuses
/// with [`BatchError::Inflated`] once more than `bytes_max` would come out.
pub(crate) fn plain_records<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    bytes_max: usize,
) -> Result<Cow<'a, [u8]>, BatchError> {
    let section = &batch[HEADER_BYTES..header.total_bytes()];
    let failed = |codec: &str, error: std::io::Error| {
        BatchError::Invalid(format!(
            "{codec} records could not be decompressed: {error}"
        ))
    };
    let plain = match header.compression() {
        0 => return Ok(Cow::Borrowed(section)),
        1 => read_bounded(flate2::read::MultiGzDecoder::new(section), bytes_max)
            .map_err(|error| failed("gzip", error))?,
        2 => snappy(section, bytes_max)?,
        3 => {
            let decoder = lz4::Decoder::new(section).map_err(|error| failed("lz4", error))?;
            read_bounded(decoder, bytes_max).map_err(|error| failed("lz4", error))?
        }
        4 => {
            let decoder =
                zstd::stream::read::Decoder::new(section).map_err(|error| failed("zstd", error))?;
            read_bounded(decoder, bytes_max).map_err(|error| failed("zstd", error))?
        }
        other => {
            return Err(BatchError::Invalid(format!(
                "unknown compression codec {other}"
            )))
        }
    };
    if plain.len() > bytes_max {
        return Err(BatchError::Inflated { bytes_max });
    }
    Ok(Cow::Owned(plain))
}

/// Reads at most `bytes_max + 1` bytes: one more than allowed tells the
/// caller the stream was longer.
fn read_bounded(reader: impl Read, bytes_max: usize) -> std::io::Result<Vec<u8>> {
    let mut plain = Vec::new();
    reader.take(bytes_max as u64 + 1).read_to_end(&mut plain)?;
    Ok(plain)
}

/// Snappy, raw or in xerial blocks (`[u32 length][raw block]…`); each
/// block's claimed length is checked before its buffer is allocated.
fn snappy(section: &[u8], bytes_max: usize) -> Result<Vec<u8>, BatchError> {
    let invalid = |reason: String| BatchError::Invalid(format!("snappy records: {reason}"));
    let mut plain = Vec::new();
    let append_block = |block: &[u8], plain: &mut Vec<u8>| {
        let length = snap::raw::decompress_len(block).map_err(|e| invalid(e.to_string()))?;
        if length > bytes_max - plain.len() {
            return Err(BatchError::Inflated { bytes_max });
        }
        let start = plain.len();
        plain.resize(start + length, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut plain[start..])
            .map_err(|e| invalid(e.to_string()))?;
        Ok(())
    };
    if section.len() < SNAPPY_HEADER_BYTES || !section.starts_with(SNAPPY_MAGIC) {
        append_block(section, &mut plain)?;
        return Ok(plain);
    }
    let mut rest = &section[SNAPPY_HEADER_BYTES..];
    while !rest.is_empty() {
        let Some((length, after)) = rest.split_first_chunk::<4>() else {
            return Err(invalid("truncated block length".into()));
        };
        let length = u32::from_be_bytes(*length) as usize;
        if length > after.len() {
            return Err(invalid("truncated block".into()));
        }
        append_block(&after[..length], &mut plain)?;
        rest = &after[length..];
    }
    Ok(plain)
}

/// Compresses a plain records section with the batch's `codec`
/// (attribute bits 0–2), as kafka-protocol's encoder does (xerial-framed
/// snappy, lz4 frames, zstd level 3), so a rewritten batch keeps its codec.
pub(crate) fn compress(codec: i16, plain: &[u8]) -> Result<Vec<u8>, BatchError> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    fn with<C: Compressor<Vec<u8>>>(plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        C::compress(&mut out, |buffer| {
            bytes::BufMut::put_slice(buffer, plain);
            Ok(())
        })?;
        Ok(out)
    }
    let compressed = match codec {
        0 => Ok(plain.to_vec()),
        1 => with::<Gzip>(plain),
        2 => with::<Snappy>(plain),
        3 => with::<Lz4>(plain),
        4 => with::<Zstd>(plain),
        other => {
            return Err(BatchError::Invalid(format!(
                "unknown compression codec {other}"
            )))
        }
    };
    compressed.map_err(|error| BatchError::Invalid(format!("compressing records failed: {error}")))
}

/// What a validated batch's records say beyond the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RecordsSummary {
    /// Offset delta of the first record without a key, if any.
    pub(crate) first_keyless: Option<i32>,
}

/// Verifies `batch` (header and CRC), decompresses it within `bytes_max`
/// and validates every record. The whole check a produced batch gets.
pub(crate) fn validate(batch: &[u8], bytes_max: usize) -> Result<RecordsSummary, BatchError> {
    let header = batch::verify(batch)?;
    let plain = plain_records(batch, &header, bytes_max)?;
    walk(&header, &plain, Deltas::Consecutive, |_| {})
}

/// One record of a stored batch. Key, value and headers are slices of the
/// batch's buffer (of the decompressed records when the batch is
/// compressed): decoding copies no payload. Headers are a list in stored
/// order, names repeating as the producer wrote them (Kafka allows it,
/// tracing headers rely on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredRecord {
    pub(crate) offset: i64,
    pub(crate) timestamp: i64,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    /// Name and value (`None` for a null value), in order.
    pub(crate) headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Decodes one stored batch into records, within `bytes_max` decompressed
/// bytes and after validating them (compaction leaves gaps in offsets, so
/// deltas need only increase).
pub(crate) fn decode(batch: &Bytes, bytes_max: usize) -> Result<Vec<StoredRecord>, BatchError> {
    let header = batch::verify(batch)?;
    let plain = match plain_records(batch, &header, bytes_max)? {
        Cow::Borrowed(_) => batch.slice(HEADER_BYTES..header.total_bytes()),
        Cow::Owned(plain) => Bytes::from(plain),
    };
    // A record takes at least 7 bytes: the count cannot make this allocate
    // more than the records section does.
    let capacity = (header.records_count.max(0) as usize).min(plain.len() / 7);
    let mut records = Vec::with_capacity(capacity);
    let slice = |bytes: &[u8]| plain.slice_ref(bytes);
    walk(&header, &plain, Deltas::Increasing, |raw| {
        records.push(StoredRecord {
            offset: header.base_offset + i64::from(raw.offset_delta),
            timestamp: header.base_timestamp + raw.timestamp_delta,
            key: raw.key.map(slice),
            value: raw.value.map(slice),
            headers: raw
                .headers()
                .map(|(name, value)| (slice(name), value.map(slice)))
                .collect(),
        });
    })?;
    Ok(records)
}

/// What is left of a stored batch once compaction has chosen its records.
#[derive(Debug)]
pub(crate) enum Retained {
    /// Every record stays: the batch as stored.
    All,
    /// Every record goes.
    Nothing,
    /// Some records went: the rebuilt batch.
    Some(BytesMut),
}

/// Rebuilds a stored batch with the records `keep(offset, key, value)`
/// accepts. Kept records are copied byte for byte (offset and timestamp
/// deltas stay valid: the batch keeps its base offset, base timestamp and
/// last offset delta, as Kafka's cleaner does), then compressed again with
/// the batch's codec; see [`batch::rebuild`] for the header. Returns what
/// is left and how many records went.
pub(crate) fn retain(
    batch: &[u8],
    bytes_max: usize,
    mut keep: impl FnMut(i64, Option<&[u8]>, Option<&[u8]>) -> bool,
) -> Result<(Retained, u64), BatchError> {
    let header = batch::verify(batch)?;
    let plain = plain_records(batch, &header, bytes_max)?;
    let mut kept = Vec::new();
    let (mut kept_count, mut total) = (0i32, 0i32);
    let mut max_timestamp = i64::MIN;
    walk(&header, &plain, Deltas::Increasing, |raw| {
        total += 1;
        let offset = header.base_offset + i64::from(raw.offset_delta);
        if keep(offset, raw.key, raw.value) {
            kept.extend_from_slice(raw.whole);
            kept_count += 1;
            max_timestamp = max_timestamp.max(header.base_timestamp + raw.timestamp_delta);
        }
    })?;
    let removed = u64::from((total - kept_count).unsigned_abs());
    if kept_count == total {
        return Ok((Retained::All, 0));
    }
    if kept_count == 0 {
        return Ok((Retained::Nothing, removed));
    }
    let section = compress(header.compression(), &kept)?;
    let rebuilt = batch::rebuild(batch, &header, &section, kept_count, max_timestamp);
    Ok((Retained::Some(rebuilt), removed))
}

/// Which offset deltas a batch's records may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deltas {
    /// 0, 1, … n−1: a batch as a producer must send it.
    Consecutive,
    /// Strictly increasing from 0 up to the last offset delta: a stored
    /// batch, possibly rewritten by compaction.
    Increasing,
}

/// One record as [`walk`] found it: slices of the records section.
struct RawRecord<'a> {
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers_count: usize,
    /// The headers after their count, already checked.
    headers: &'a [u8],
    /// The whole record, its length varint included.
    whole: &'a [u8],
}

impl<'a> RawRecord<'a> {
    /// Name and value of each header, in order.
    fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
        let mut cursor = Cursor {
            bytes: self.headers,
        };
        (0..self.headers_count).map_while(move |_| {
            let name = cursor.nullable_bytes()??;
            Some((name, cursor.nullable_bytes()?))
        })
    }
}

/// Walks the records' varint headers, checking them as described in the
/// module header, and hands each record to `visit`.
fn walk<'a>(
    header: &BatchHeader,
    plain: &'a [u8],
    deltas: Deltas,
    mut visit: impl FnMut(RawRecord<'a>),
) -> Result<RecordsSummary, BatchError> {
    let mut summary = RecordsSummary::default();
    let mut cursor = Cursor { bytes: plain };
    let mut previous_delta = -1;
    for index in 0..header.records_count {
        let invalid = |reason: &str| BatchError::Record {
            index,
            reason: reason.to_string(),
        };
        let record = read_record(&mut cursor).map_err(invalid)?;
        let offset_delta = record.offset_delta;
        let in_order = match deltas {
            Deltas::Consecutive => offset_delta == index,
            Deltas::Increasing => {
                offset_delta > previous_delta && offset_delta <= header.last_offset_delta
            }
        };
        if !in_order {
            return Err(invalid(&format!(
                "offset delta {offset_delta} after {previous_delta} (last offset delta {})",
                header.last_offset_delta
            )));
        }
        previous_delta = offset_delta;
        check_timestamp(header, record.timestamp_delta).map_err(|reason| invalid(&reason))?;
        if record.key.is_none() && summary.first_keyless.is_none() {
            summary.first_keyless = Some(offset_delta);
        }
        visit(record);
    }
    if !cursor.bytes.is_empty() {
        return Err(BatchError::Invalid(format!(
            "{} bytes after the batch's {} records",
            cursor.bytes.len(),
            header.records_count
        )));
    }
    Ok(summary)
}

/// Reads one record's fields at `cursor`, checking every length.
fn read_record<'a>(cursor: &mut Cursor<'a>) -> Result<RawRecord<'a>, &'static str> {
    let start = cursor.bytes;
    let length = cursor.varint().ok_or("truncated length")?;
    let length = usize::try_from(length).map_err(|_| "negative length")?;
    let mut record = Cursor {
        bytes: cursor.take(length).ok_or("length past the batch end")?,
    };
    let whole = &start[..start.len() - cursor.bytes.len()];
    record.take(1).ok_or("truncated attributes")?;
    let timestamp_delta = record.varlong().ok_or("bad timestamp delta")?;
    let offset_delta = record.varint().ok_or("bad offset delta")?;
    let key = record.nullable_bytes().ok_or("bad key length")?;
    let value = record.nullable_bytes().ok_or("bad value length")?;
    let headers_count = record.varint().ok_or("bad header count")?;
    let headers_count = usize::try_from(headers_count).map_err(|_| "negative header count")?;
    let headers = record.bytes;
    for _ in 0..headers_count {
        match record.nullable_bytes() {
            Some(Some(_)) => {}
            _ => return Err("bad header key"),
        }
        record.nullable_bytes().ok_or("bad header value")?;
    }
    if !record.bytes.is_empty() {
        return Err("bytes left over after its fields");
    }
    Ok(RawRecord {
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers_count,
        headers,
        whole,
    })
}

/// A record's timestamp must not overflow, and under `CreateTime` must not
/// exceed the batch's max timestamp (which ListOffsets and the time index
/// trust).
fn check_timestamp(header: &BatchHeader, delta: i64) -> Result<(), String> {
    let timestamp = header
        .base_timestamp
        .checked_add(delta)
        .ok_or_else(|| format!("timestamp delta {delta} overflows"))?;
    if !batch::is_log_append_time(header) && timestamp > header.max_timestamp {
        return Err(format!(
            "timestamp {timestamp} is after the batch's max timestamp {}",
            header.max_timestamp
        ));
    }
    Ok(())
}

/// Reads Kafka's zig-zag varints from a slice; `None` when malformed.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if count > self.bytes.len() {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Some(taken)
    }

    fn unsigned(&mut self, bits_max: u32) -> Option<u64> {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = *self.take(1)?.first()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
            shift += 7;
            if shift >= bits_max {
                return None;
            }
        }
    }

    fn varint(&mut self) -> Option<i32> {
        let raw = u32::try_from(self.unsigned(32)?).ok()?;
        Some((raw >> 1) as i32 ^ -((raw & 1) as i32))
    }

    fn varlong(&mut self) -> Option<i64> {
        let raw = self.unsigned(64)?;
        Some((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// A varint length (−1 for null) and that many bytes.
    fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.varint()? {
            -1 => Some(None),
            length => Some(Some(self.take(usize::try_from(length).ok()?)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::Compression;

    use super::*;
    use crate::log::batch::build;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn entries(count: usize, value_bytes: usize) -> Vec<build::Entry> {
        (0..count)
            .map(|index| {
                (
                    Some(vec![b'k'; 3]),
                    Some(vec![b'v'; value_bytes]),
                    index as i64,
                )
            })
            .collect()
    }

    #[test]
    fn every_codec_decodes_within_the_bound() {
        for codec in CODECS {
            let batch = build::batch(&entries(5, 100), codec);
            let set = decode(&batch.clone().freeze(), 4096).unwrap();
            assert_eq!(set.len(), 5, "{codec:?}");
            assert_eq!(validate(&batch, 4096).unwrap().first_keyless, None);
        }
    }

    #[test]
    fn every_codec_refuses_past_the_bound() {
        for codec in CODECS.into_iter().skip(1) {
            let batch = build::batch(&entries(100, 1000), codec);
            assert_eq!(
                validate(&batch, 50_000),
                Err(BatchError::Inflated { bytes_max: 50_000 }),
                "{codec:?}"
            );
            let batch = batch.freeze();
            assert!(decode(&batch, 50_000).is_err());
            decode(&batch, 200_000).unwrap();
        }
    }

    /// Re-encodes one record's offset delta (single-byte varints) and fixes
    /// the CRC.
    fn with_second_delta(delta_byte: u8) -> bytes::BytesMut {
        let mut batch = build::batch(&entries(2, 4), Compression::None);
        // Record 0 starts at 61: length, attributes, timestamp delta (1
        // byte each for these values), then the offset delta.
        let first_length = batch[HEADER_BYTES] as usize / 2;
        let second = HEADER_BYTES + 1 + first_length;
        assert_eq!(batch[second + 3], 2, "record 1 has offset delta 1");
        batch[second + 3] = delta_byte;
        let crc = batch::compute_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    #[test]
    fn offset_deltas_must_be_consecutive() {
        validate(&with_second_delta(2), 1 << 20).unwrap();
        for bad in [0u8, 4, 1] {
            let error = validate(&with_second_delta(bad), 1 << 20).unwrap_err();
            assert!(error.to_string().contains("offset delta"), "{error}");
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut batch = build::batch(&entries(1, 4), Compression::None).to_vec();
        batch.push(0);
        let length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = batch::compute_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        let error = validate(&batch, 1 << 20).unwrap_err();
        assert!(error.to_string().contains("bytes after"), "{error}");
    }

    #[test]
    fn keyless_records_are_reported() {
        let batch = build::values(3, 4, 0);
        assert_eq!(validate(&batch, 1 << 20).unwrap().first_keyless, Some(0));
    }

    const REPEATED: &[(&str, Option<&[u8]>)] = &[
        ("trace", Some(b"a")),
        ("trace", Some(b"b")),
        ("x", None),
        ("trace", Some(b"")),
    ];

    fn headed(codec: Compression) -> Bytes {
        build::headed(
            &[
                (Some(b"gone"), Some(b"1"), &[("h", Some(b"v"))]),
                (Some(b"kept"), Some(b"2"), REPEATED),
                (Some(b"also"), None, &[]),
            ],
            1_000,
            codec,
        )
        .freeze()
    }

    #[test]
    fn headers_of_one_name_decode_as_a_list_in_order() {
        for codec in CODECS {
            let records = decode(&headed(codec), 1 << 20).unwrap();
            let headers: Vec<(&[u8], Option<&[u8]>)> = records[1]
                .headers
                .iter()
                .map(|(name, value)| (&name[..], value.as_deref()))
                .collect();
            let expected: Vec<(&[u8], Option<&[u8]>)> = REPEATED
                .iter()
                .map(|(name, value)| (name.as_bytes(), *value))
                .collect();
            assert_eq!(headers, expected, "{codec:?}");
        }
    }

    #[test]
    fn uncompressed_records_are_slices_of_the_batch() {
        let batch = headed(Compression::None);
        let records = decode(&batch, 1 << 20).unwrap();
        let value = records[1].value.as_ref().unwrap();
        let range = batch.as_ptr() as usize..batch.as_ptr() as usize + batch.len();
        assert!(range.contains(&(value.as_ptr() as usize)), "not copied");
    }

    #[test]
    fn retain_copies_kept_records_byte_for_byte() {
        for codec in CODECS {
            let batch = headed(codec);
            let original = decode(&batch, 1 << 20).unwrap();
            let (retained, removed) = retain(&batch, 1 << 20, |offset, _, _| offset != 0).unwrap();
            let Retained::Some(rebuilt) = retained else {
                panic!("{codec:?}: {retained:?}");
            };
            assert_eq!(removed, 1);
            let header = batch::verify(&rebuilt).unwrap();
            assert_eq!(header.records_count, 2);
            assert_eq!((header.base_offset, header.last_offset_delta), (0, 2));
            assert_eq!(decode(&rebuilt.freeze(), 1 << 20).unwrap(), original[1..]);
        }
        // Golden: without compression the records section is the original's
        // bytes from the second record on.
        let batch = headed(Compression::None);
        let first_length = batch[HEADER_BYTES] as usize / 2;
        let (Retained::Some(rebuilt), _) = retain(&batch, 1 << 20, |o, _, _| o != 0).unwrap()
        else {
            panic!("nothing rebuilt");
        };
        assert_eq!(
            rebuilt[HEADER_BYTES..],
            batch[HEADER_BYTES + 1 + first_length..]
        );
        assert_eq!(rebuilt[..8], batch[..8], "base offset");
        assert_eq!(
            rebuilt[23..35],
            batch[23..35],
            "last offset delta, base timestamp"
        );
        assert_eq!(
            rebuilt[43..57],
            batch[43..57],
            "producer id, epoch, base sequence"
        );
    }

    #[test]
    fn retain_reports_all_and_nothing() {
        let batch = headed(Compression::Lz4);
        assert!(matches!(
            retain(&batch, 1 << 20, |_, _, _| true).unwrap(),
            (Retained::All, 0)
        ));
        assert!(matches!(
            retain(&batch, 1 << 20, |_, _, _| false).unwrap(),
            (Retained::Nothing, 3)
        ));
    }
}
