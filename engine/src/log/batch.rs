//! Kafka record batches (magic v2) as the log stores them.
//!
//! The unit of storage is a record batch exactly as the producer sent it. The
//! broker rewrites only the base offset (and, for `LogAppendTime` topics, the
//! timestamp type and max timestamp, recomputing the CRC). The layout, all
//! integers big-endian:
//!
//! ```text
//! offset  size  field
//!      0     8  base_offset            rewritten by the broker on append
//!      8     4  batch_length           bytes after this field
//!     12     4  partition_leader_epoch
//!     16     1  magic                  must be 2
//!     17     4  crc                    CRC-32C of bytes 21..end
//!     21     2  attributes             bits 0-2 compression, 3 timestamp type,
//!                                      4 transactional, 5 control
//!     23     4  last_offset_delta
//!     27     8  base_timestamp
//!     35     8  max_timestamp
//!     43     8  producer_id
//!     51     2  producer_epoch
//!     53     4  base_sequence
//!     57     4  records_count
//!     61     …  records (possibly compressed)
//! ```

use bytes::BytesMut;
use thiserror::Error;

/// Bytes of the fixed batch header.
pub(crate) const HEADER_BYTES: usize = 61;
/// Bytes before `batch_length`'s payload starts: base offset plus length.
pub(crate) const LOG_OVERHEAD_BYTES: usize = 12;
const MAGIC_POSITION: usize = 16;
const CRC_POSITION: usize = 17;
const ATTRIBUTES_POSITION: usize = 21;
const MAX_TIMESTAMP_POSITION: usize = 35;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
const COMPRESSION_MASK: i16 = 0x7;

/// What is wrong with a batch.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length.
    #[error("truncated record batch: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the batch declares.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// A magic byte other than 2.
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    Magic(i8),
    /// Stored and computed CRC differ.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// Structurally impossible field values.
    #[error("invalid record batch: {0}")]
    Invalid(String),
    /// One record inside the batch is malformed (Kafka reports its index
    /// in the Produce response's `record_errors`).
    #[error("invalid record batch: record {index} is invalid: {reason}")]
    Record {
        /// Position of the record in its batch.
        index: i32,
        /// What is wrong with it.
        reason: String,
    },
    /// The records decompress to more than the configured bound.
    #[error(
        "record batch decompresses to more than {bytes_max} bytes (decompressed_batch_bytes_max)"
    )]
    Inflated {
        /// `decompressed_batch_bytes_max`.
        bytes_max: usize,
    },
}

/// The fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field.
    pub batch_length: i32,
    /// Leader epoch stamped by the writer.
    pub partition_leader_epoch: i32,
    /// Format version (2).
    pub magic: i8,
    /// CRC-32C of bytes 21..end.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

fn be_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

impl BatchHeader {
    /// Parses the header at the start of `bytes` (at least [`HEADER_BYTES`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::Truncated {
                needed: HEADER_BYTES,
                available: bytes.len(),
            });
        }
        let header = Self {
            base_offset: be_i64(bytes, 0),
            batch_length: be_i32(bytes, 8),
            partition_leader_epoch: be_i32(bytes, 12),
            magic: bytes[MAGIC_POSITION] as i8,
            crc: be_i32(bytes, CRC_POSITION) as u32,
            attributes: be_i16(bytes, ATTRIBUTES_POSITION),
            last_offset_delta: be_i32(bytes, 23),
            base_timestamp: be_i64(bytes, 27),
            max_timestamp: be_i64(bytes, MAX_TIMESTAMP_POSITION),
            producer_id: be_i64(bytes, 43),
            producer_epoch: be_i16(bytes, 51),
            base_sequence: be_i32(bytes, 53),
            records_count: be_i32(bytes, 57),
        };
        if header.magic != 2 {
            return Err(BatchError::Magic(header.magic));
        }
        if (header.batch_length as i64) < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i64 {
            return Err(BatchError::Invalid(format!(
                "batch length {} is shorter than the header",
                header.batch_length
            )));
        }
        if header.last_offset_delta < 0 || header.records_count < 0 {
            return Err(BatchError::Invalid(format!(
                "negative last offset delta {} or record count {}",
                header.last_offset_delta, header.records_count
            )));
        }
        Ok(header)
    }

    /// Total bytes of the batch including offset and length fields.
    pub fn total_bytes(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD_BYTES
    }
    /// Offset of the last record.
    pub(crate) fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    /// Offset the next batch starts at.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub(crate) fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }
    /// Whether the batch belongs to a transaction (data or marker).
    pub(crate) fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    /// Whether this is a control batch (transaction markers).
    pub(crate) fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Computes the CRC the header of `batch` should carry.
pub(crate) fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_POSITION..])
}

/// Parses and fully verifies one whole batch (length and CRC).
pub fn verify(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if batch.len() < header.total_bytes() {
        return Err(BatchError::Truncated {
            needed: header.total_bytes(),
            available: batch.len(),
        });
    }
    let computed = compute_crc(&batch[..header.total_bytes()]);
    if computed != header.crc {
        return Err(BatchError::Crc {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Validates the records of each batch in `buffer` (already split by
/// [`verify_produced`]): decompressed within `bytes_max`, walked as
/// Kafka's `LogValidator` does (see `log::records`).
///
/// With `keys_required` (a compacted topic) every record must have a key:
/// compaction keeps the latest record per key, so a record without one
/// could never be compacted away, and Kafka refuses it. Checked in the same
/// walk, so a batch is decompressed once.
pub(crate) fn validate_records(
    buffer: &[u8],
    headers: &[BatchHeader],
    bytes_max: usize,
    keys_required: bool,
) -> Result<(), BatchError> {
    let mut position = 0;
    for header in headers {
        let batch = &buffer[position..position + header.total_bytes()];
        let summary = super::records::validate(batch, bytes_max)?;
        if let (true, Some(delta)) = (keys_required, summary.first_keyless) {
            return Err(BatchError::Invalid(format!(
                "a compacted topic cannot accept a record without a key (record {delta} of the batch)"
            )));
        }
        position += header.total_bytes();
    }
    Ok(())
}

/// Splits a buffer of concatenated batches as a producer sends them,
/// verifying each, and checks the rules Kafka applies to produced batches
/// (headers only: [`validate_records`] looks inside).
pub(crate) fn verify_produced(buffer: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    split_produced(buffer, verify)
}

/// [`verify_produced`] for batches the broker encoded itself (a
/// processor's outputs, just built by `kafka_protocol`'s encoder): the same
/// rules, but each batch's CRC is not computed again.
pub(crate) fn encoded_headers(buffer: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    split_produced(buffer, |batch| {
        let header = BatchHeader::parse(batch)?;
        if batch.len() < header.total_bytes() {
            return Err(BatchError::Truncated {
                needed: header.total_bytes(),
                available: batch.len(),
            });
        }
        Ok(header)
    })
}

fn split_produced(
    buffer: &[u8],
    parse: impl Fn(&[u8]) -> Result<BatchHeader, BatchError>,
) -> Result<Vec<BatchHeader>, BatchError> {
    let mut headers = Vec::new();
    let mut position = 0;
    while position < buffer.len() {
        let header = parse(&buffer[position..])?;
        if header.records_count == 0 || header.last_offset_delta != header.records_count - 1 {
            return Err(BatchError::Invalid(format!(
                "{} records but last offset delta {}",
                header.records_count, header.last_offset_delta
            )));
        }
        if header.is_control() {
            return Err(BatchError::Invalid(
                "clients may not produce control batches".into(),
            ));
        }
        position += header.total_bytes();
        headers.push(header);
    }
    if headers.is_empty() {
        return Err(BatchError::Invalid("no record batches".into()));
    }
    Ok(headers)
}

/// The producer id, epoch and transactional flag shared by every batch in
/// `buffer` (a partition's records in a Produce request), read from the
/// headers alone (the log verifies the batches fully when writing).
/// `None` when the headers cannot be read or the batches disagree.
pub(crate) fn producer_of(buffer: &[u8]) -> Option<(i64, i16, bool)> {
    let mut position = 0;
    let mut producer = None;
    while position < buffer.len() {
        let header = BatchHeader::parse(&buffer[position..]).ok()?;
        let this = (
            header.producer_id,
            header.producer_epoch,
            header.is_transactional(),
        );
        if *producer.get_or_insert(this) != this {
            return None;
        }
        position += header.total_bytes().max(HEADER_BYTES);
    }
    producer
}

/// Whether any batch in `buffer` (a partition's records in a Produce
/// request) is transactional, read from the headers alone. Stops at the
/// first header it cannot read: the log refuses such records when writing.
pub(crate) fn any_transactional(buffer: &[u8]) -> bool {
    let mut position = 0;
    while position < buffer.len() {
        let Ok(header) = BatchHeader::parse(&buffer[position..]) else {
            return false;
        };
        if header.is_transactional() {
            return true;
        }
        position += header.total_bytes().max(HEADER_BYTES);
    }
    false
}

/// The offset after the last whole batch in `buffer` (batches as stored,
/// one after another), or `None` when it holds none.
pub(crate) fn end_offset(buffer: &[u8]) -> Option<i64> {
    let mut position = 0;
    let mut end = None;
    while let Ok(header) = BatchHeader::parse(&buffer[position..]) {
        if header.total_bytes() > buffer.len() - position {
            break;
        }
        end = Some(header.next_offset());
        position += header.total_bytes();
    }
    end
}

/// Rewrites the base offset in place (not covered by the CRC).
pub(crate) fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Marks a batch as `LogAppendTime` with `timestamp_ms` as its max timestamp,
/// then recomputes the CRC, as Kafka does for such topics.
pub(crate) fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let attributes = be_i16(batch, ATTRIBUTES_POSITION) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_POSITION..ATTRIBUTES_POSITION + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_POSITION..MAX_TIMESTAMP_POSITION + 8]
        .copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A stored batch rebuilt around `section` (the kept records, compressed
/// with the original's codec): the original header with its batch length,
/// records count (bytes 57–61), CRC and, under `CreateTime`, max timestamp
/// (the latest kept record's, which ListOffsets by time looks for)
/// rewritten. Base offset, base timestamp, last offset delta, producer id,
/// epoch and base sequence stay, so the kept records' deltas stay valid and
/// the producer's last sequence is still known, as in Kafka's cleaner.
pub(crate) fn rebuild(
    original: &[u8],
    header: &BatchHeader,
    section: &[u8],
    records_count: i32,
    max_timestamp: i64,
) -> BytesMut {
    let mut batch = BytesMut::with_capacity(HEADER_BYTES + section.len());
    batch.extend_from_slice(&original[..HEADER_BYTES]);
    batch.extend_from_slice(section);
    let batch_length = (batch.len() - LOG_OVERHEAD_BYTES) as i32;
    batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
    batch[57..61].copy_from_slice(&records_count.to_be_bytes());
    if !is_log_append_time(header) {
        batch[MAX_TIMESTAMP_POSITION..MAX_TIMESTAMP_POSITION + 8]
            .copy_from_slice(&max_timestamp.to_be_bytes());
    }
    let crc = compute_crc(&batch);
    batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Whether the batch's timestamps are the broker's append time.
pub(crate) fn is_log_append_time(header: &BatchHeader) -> bool {
    header.attributes & TIMESTAMP_TYPE_BIT != 0
}

/// Test and benchmark helpers that build real batches with the
/// `kafka-protocol` encoder (`pub`: the `sluice-bench` crate builds its
/// workloads with them).
pub mod build {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// One record: key, value (None = tombstone), timestamp.
    pub type Entry = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

    /// One record at `offset` of a batch: creation time, no producer.
    pub fn record(
        offset: usize,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
        headers: IndexMap<StrBytes, Option<Bytes>>,
    ) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: offset as i64,
            // The encoder starts a new batch whenever offset − sequence
            // changes; base sequence −1 ("none") plus the offset delta
            // is what the decoder reports for such batches too.
            sequence: offset as i32 - 1,
            timestamp,
            key,
            value,
            headers,
        }
    }

    /// Encodes `records` (offsets 0, 1, …) as one v2 batch.
    pub fn encode(records: &[Record], compression: Compression) -> BytesMut {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encoding records into memory cannot fail");
        buf
    }

    /// One transactional batch of `values` from a producer, its records at
    /// sequences `base_sequence`, `base_sequence + 1`, ….
    pub fn transactional(
        values: &[&[u8]],
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> BytesMut {
        let records: Vec<_> = values.iter().map(|value| (None, *value)).collect();
        transactional_keyed(&records, producer_id, producer_epoch, base_sequence)
    }

    /// [`transactional`] with a key per record.
    pub fn transactional_keyed(
        records: &[(Option<&[u8]>, &[u8])],
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> BytesMut {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(index, (key, value))| Record {
                transactional: true,
                producer_id,
                producer_epoch,
                sequence: base_sequence + index as i32,
                ..record(
                    index,
                    key.map(Bytes::copy_from_slice),
                    Some(Bytes::copy_from_slice(value)),
                    0,
                    IndexMap::new(),
                )
            })
            .collect();
        encode(&records, Compression::None)
    }

    /// Encodes `entries` as one batch with base offset 0.
    pub fn batch(entries: &[Entry], compression: Compression) -> BytesMut {
        let records: Vec<Record> = entries
            .iter()
            .enumerate()
            .map(|(index, (key, value, timestamp))| {
                record(
                    index,
                    key.clone().map(Bytes::from),
                    value.clone().map(Bytes::from),
                    *timestamp,
                    IndexMap::new(),
                )
            })
            .collect();
        encode(&records, compression)
    }

    /// One record with headers in order, names repeating as the producer
    /// likes: key, value, headers.
    pub type Headed<'a> = (
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        &'a [(&'a str, Option<&'a [u8]>)],
    );

    /// Encodes `records` (offsets 0, 1, …, all at `timestamp`) as one v2
    /// batch, writing the records by hand: kafka-protocol's `Record` holds
    /// one header per name, and Kafka allows several.
    pub fn headed(records: &[Headed<'_>], timestamp: i64, compression: Compression) -> BytesMut {
        let entries: Vec<Entry> = records
            .iter()
            .map(|(key, value, _)| {
                (
                    key.map(<[u8]>::to_vec),
                    value.map(<[u8]>::to_vec),
                    timestamp,
                )
            })
            .collect();
        let template = batch(&entries, Compression::None);
        let mut plain = Vec::new();
        for (delta, (key, value, headers)) in records.iter().enumerate() {
            let mut record = vec![0u8, 0]; // attributes, timestamp delta 0
            varint(&mut record, delta as i64);
            nullable(&mut record, *key);
            nullable(&mut record, *value);
            varint(&mut record, headers.len() as i64);
            for (name, value) in *headers {
                nullable(&mut record, Some(name.as_bytes()));
                nullable(&mut record, *value);
            }
            varint(&mut plain, record.len() as i64);
            plain.extend_from_slice(&record);
        }
        let codec = compression_code(compression);
        let section = crate::log::records::compress(codec, &plain).expect("compressing in memory");
        let mut out = BytesMut::from(&template[..super::HEADER_BYTES]);
        out.extend_from_slice(&section);
        let length = (out.len() - 12) as i32;
        out[8..12].copy_from_slice(&length.to_be_bytes());
        let attributes = super::be_i16(&out, super::ATTRIBUTES_POSITION) | codec;
        out[super::ATTRIBUTES_POSITION..super::ATTRIBUTES_POSITION + 2]
            .copy_from_slice(&attributes.to_be_bytes());
        let crc = super::compute_crc(&out);
        out[super::CRC_POSITION..super::CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    fn compression_code(compression: Compression) -> i16 {
        match compression {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's zig-zag varint.
    fn varint(out: &mut Vec<u8>, value: i64) {
        let mut raw = ((value << 1) ^ (value >> 63)) as u64;
        while raw >= 0x80 {
            out.push((raw as u8) | 0x80);
            raw >>= 7;
        }
        out.push(raw as u8);
    }

    fn nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            None => varint(out, -1),
            Some(bytes) => {
                varint(out, bytes.len() as i64);
                out.extend_from_slice(bytes);
            }
        }
    }

    /// A batch of `count` records with `value_bytes`-byte values and no key.
    pub fn values(count: usize, value_bytes: usize, timestamp: i64) -> BytesMut {
        let entries: Vec<Entry> = (0..count)
            .map(|index| {
                (
                    None,
                    Some(vec![b'a' + (index % 26) as u8; value_bytes]),
                    timestamp,
                )
            })
            .collect();
        batch(&entries, Compression::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_encoder_writes() {
        let batch = build::values(3, 10, 1_000);
        let header = verify(&batch).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.max_timestamp, 1_000);
        assert_eq!(header.total_bytes(), batch.len());
        assert_eq!(verify_produced(&batch).unwrap().len(), 1);
    }

    #[test]
    fn keys_are_required_for_compacted_topics() {
        let require_keys = |batch: &[u8]| {
            let headers = verify_produced(batch).unwrap();
            validate_records(batch, &headers, 1 << 20, true)
        };
        let unkeyed = build::values(2, 10, 0);
        assert!(require_keys(&unkeyed)
            .unwrap_err()
            .to_string()
            .contains("without a key"));
        let keyed = build::batch(
            &[(Some(b"k".to_vec()), Some(b"v".to_vec()), 0)],
            kafka_protocol::records::Compression::Lz4,
        );
        require_keys(&keyed).unwrap();
        // Keys are only required where asked (a topic that deletes).
        let headers = verify_produced(&unkeyed).unwrap();
        validate_records(&unkeyed, &headers, 1 << 20, false).unwrap();
    }

    #[test]
    fn a_transactional_batch_behind_a_plain_one_is_found() {
        let plain = build::values(2, 10, 0);
        let transactional = build::transactional(&[b"t"], 7, 0, 0);
        assert!(!any_transactional(&plain));
        assert!(any_transactional(&transactional));
        let mut both = plain.to_vec();
        both.extend_from_slice(&transactional);
        assert!(any_transactional(&both));
        // The first batch's producer decides nothing: they disagree.
        assert_eq!(producer_of(&both), None);
    }

    #[test]
    fn flipped_byte_fails_the_crc() {
        let mut batch = build::values(2, 10, 0);
        let last = batch.len() - 1;
        batch[last] ^= 0x40;
        assert!(matches!(verify(&batch), Err(BatchError::Crc { .. })));
    }

    #[test]
    fn truncated_batch_is_refused() {
        let batch = build::values(2, 10, 0);
        assert!(matches!(
            verify(&batch[..batch.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            verify(&batch[..20]),
            Err(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn log_append_time_rewrite_keeps_crc_valid() {
        let mut batch = build::values(2, 10, 5);
        set_log_append_time(&mut batch, 99);
        let header = verify(&batch).unwrap();
        assert_eq!(header.max_timestamp, 99);
        assert_ne!(header.attributes & TIMESTAMP_TYPE_BIT, 0);
        set_base_offset(&mut batch, 42);
        assert_eq!(verify(&batch).unwrap().base_offset, 42);
    }
}
