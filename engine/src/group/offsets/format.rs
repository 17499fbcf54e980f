//! The committed-offsets log on disk, byte by byte, and what its records
//! do to the live offsets. The framing, replay, repair and compaction are
//! the shared `crate::journal`'s; this module owns the magics, the bound,
//! the records and format 1.
//!
//! File `<data-dir>/groups/offsets.log`, format 2:
//! ```text
//! file header, 8 bytes:   "SLUOFF" 0x00 0x02        magic, then the format version
//! then records, each:
//!   0   magic    4 bytes   FF 4F 46 FE
//!   4   length   u32 BE    payload bytes, 2..=RECORD_PAYLOAD_BYTES_MAX (1 MiB)
//!   8   crc32c   u32 BE    of bytes 4..8 (the length) followed by the payload
//!  12   payload  `length`  one `OffsetRecord` as JSON (UTF-8)
//! ```
//! The record magic holds 0xFF and 0xFE, bytes that never occur in UTF-8,
//! so they never occur in a payload: after a damaged record, replay finds
//! the next record by scanning for the magic and checking its CRC
//! (`Framing::resync`). The CRC covers the length too, so a flipped length is caught
//! instead of being followed.
//!
//! Replay (`Journal::open`) tells apart:
//! - a *torn tail* (a crash mid-append: no whole, valid record after the
//!   failure point): cut off; that append was never acknowledged;
//! - a *damaged record* with valid records after it (a flipped bit, a bad
//!   sector): skipped, logged at error level with the file position; the
//!   later records (other groups' commits) are kept, and the original
//!   file beside the repaired one as `offsets.log.damaged`;
//! - a record whose CRC holds but whose JSON does not decode (written by a
//!   newer Sluice?): the broker refuses to start rather than guess.
//!
//! Format 1 (before the file header; no record magic, CRC over the payload
//! only): `length u32 BE | crc32c u32 BE | payload`. It is still read and
//! migrated to format 2 on open. It resyncs on the JSON start of a payload
//! (`{"type":"`) 8 bytes after a candidate record start, then the CRC.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::Committed;
use crate::journal::{Framing, JournalState, Legacy, RECORD_HEADER_BYTES};

/// First 8 bytes of a format 2 file.
pub(super) const FILE_HEADER: [u8; 8] = *b"SLUOFF\x00\x02";
const V1_RECORD_HEADER_BYTES: usize = 8;
/// Largest record payload written or read. Group ids
/// (`groups.group_id_bytes_max`), topic names (249) and commit metadata
/// (`groups.offset_metadata_bytes_max`) are bounded well below it at the
/// protocol edge; a record over it is refused before anything is written.
pub(super) const RECORD_PAYLOAD_BYTES_MAX: usize = 1 << 20;

/// Format 2's framing (the shared journal's, with this log's magics).
pub(super) static FRAMING: Framing = Framing {
    file_header: FILE_HEADER,
    record_magic: [0xFF, 0x4F, 0x46, 0xFE],
    payload_bytes_max: RECORD_PAYLOAD_BYTES_MAX,
    name: "committed-offsets log",
};

/// Format 1's reader, for files written before the file header.
pub(super) const FORMAT_1: Legacy = Legacy {
    record_at: record_at_v1,
    resync: resync_v1,
};

/// One entry of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum OffsetRecord {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        #[serde(flatten)]
        committed: Committed,
    },
    DeletePartition {
        group: String,
        topic: String,
        partition: i32,
    },
    DeleteGroup {
        group: String,
    },
}

/// group → (topic, partition) → committed offset.
pub(super) type Offsets = BTreeMap<String, BTreeMap<(String, i32), Committed>>;

/// The live offsets with what the store derives from them as records are
/// applied, so nothing on the commit path walks every offset.
#[derive(Debug, Default, Clone)]
pub(super) struct Live {
    pub(super) offsets: Offsets,
    /// Newest commit timestamp per group (offsets retention).
    pub(super) last_commit_ms: HashMap<String, i64>,
    /// About what a snapshot of `offsets` takes on disk.
    pub(super) snapshot_bytes: u64,
}

/// Estimated bytes of one commit record: the header, the JSON keys and
/// numbers, and the strings.
fn entry_bytes(group: &str, topic: &str, committed: &Committed) -> u64 {
    (RECORD_HEADER_BYTES + 140 + group.len() + topic.len() + committed.metadata.len()) as u64
}

impl Live {
    pub(super) fn apply(&mut self, record: OffsetRecord) {
        match record {
            OffsetRecord::Commit {
                group,
                topic,
                partition,
                committed,
            } => {
                let last = self.last_commit_ms.entry(group.clone()).or_insert(0);
                *last = (*last).max(committed.commit_timestamp_ms);
                self.snapshot_bytes += entry_bytes(&group, &topic, &committed);
                let partitions = self.offsets.entry(group.clone()).or_default();
                if let Some(old) = partitions.insert((topic.clone(), partition), committed) {
                    self.snapshot_bytes -= entry_bytes(&group, &topic, &old);
                }
            }
            OffsetRecord::DeletePartition {
                group,
                topic,
                partition,
            } => {
                let partitions = self.offsets.get_mut(&group);
                if let Some(old) = partitions.and_then(|p| p.remove(&(topic.clone(), partition))) {
                    self.snapshot_bytes -= entry_bytes(&group, &topic, &old);
                }
            }
            OffsetRecord::DeleteGroup { group } => {
                for ((topic, _), old) in self.offsets.remove(&group).unwrap_or_default() {
                    self.snapshot_bytes -= entry_bytes(&group, &topic, &old);
                }
                self.last_commit_ms.remove(&group);
            }
        }
    }
}

impl JournalState for Live {
    fn apply_payload(&mut self, payload: &[u8]) -> Result<(), String> {
        let record = serde_json::from_slice(payload).map_err(|error| error.to_string())?;
        self.apply(record);
        Ok(())
    }

    fn snapshot(&self) -> std::io::Result<Vec<u8>> {
        snapshot(&self.offsets)
    }
}

/// Encodes one record (format 2); refuses a payload over
/// [`RECORD_PAYLOAD_BYTES_MAX`].
pub(super) fn encode(record: &OffsetRecord, out: &mut Vec<u8>) -> std::io::Result<()> {
    FRAMING.encode_json(record, out).map(drop)
}

/// A format 2 file holding `offsets` as one commit record per offset.
pub(super) fn snapshot(offsets: &Offsets) -> std::io::Result<Vec<u8>> {
    let mut out = FILE_HEADER.to_vec();
    for (group, partitions) in offsets {
        for ((topic, partition), committed) in partitions {
            let record = OffsetRecord::Commit {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                committed: committed.clone(),
            };
            encode(&record, &mut out)?;
        }
    }
    Ok(out)
}

/// The record at `position` in format 1.
fn record_at_v1(bytes: &[u8], position: usize) -> Result<(&[u8], usize), String> {
    let rest = &bytes[position..];
    if rest.len() < V1_RECORD_HEADER_BYTES {
        return Err("incomplete record header".into());
    }
    let length = u32::from_be_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes"));
    let end = V1_RECORD_HEADER_BYTES + length;
    if length > RECORD_PAYLOAD_BYTES_MAX || rest.len() < end {
        return Err(format!("a record of {length} bytes runs past the end"));
    }
    let payload = &rest[V1_RECORD_HEADER_BYTES..end];
    if crc32c::crc32c(payload) != crc {
        return Err("CRC mismatch".into());
    }
    Ok((payload, position + end))
}

/// Format 1 has no record magic, but every payload starts with
/// `{"type":"`: candidates are the positions 8 bytes before one.
fn resync_v1(bytes: &[u8], from: usize) -> Option<usize> {
    const PAYLOAD_START: &[u8] = b"{\"type\":\"";
    let mut position = from + 1;
    while position + V1_RECORD_HEADER_BYTES < bytes.len() {
        let found = bytes[position + V1_RECORD_HEADER_BYTES..]
            .windows(PAYLOAD_START.len())
            .position(|w| w == PAYLOAD_START)?;
        position += found;
        if record_at_v1(bytes, position).is_ok() {
            return Some(position);
        }
        position += 1;
    }
    None
}

/// Format 1 encoding, for migration tests.
#[cfg(test)]
pub(super) fn encode_v1(record: &OffsetRecord) -> Vec<u8> {
    let payload = serde_json::to_vec(record).expect("offset records serialize");
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}
