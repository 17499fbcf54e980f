//! The transaction coordinator's durable state: an append-only log of
//! [`TransactionRecord`]s, replayed on open into every transactional id's
//! latest [`TransactionMetadata`]. It is what lets a restarted broker
//! finish the transactions it was ending (PrepareCommit is committed,
//! PrepareAbort aborted) and keep fencing old producers. The file handling
//! (replay and repair, append and fsync poisoning, compaction) is the
//! shared `crate::journal`'s, as under the committed-offsets log.
//!
//! File `<dir>/transactions.log`, format 1:
//! ```text
//! file header, 8 bytes:   "SLUTXN" 0x00 0x01        magic, then the format version
//! then records, each:
//!   0   magic    4 bytes   FF 54 58 FE              (0xFF "TX" 0xFE)
//!   4   length   u32 BE    payload bytes, at most RECORD_PAYLOAD_BYTES_MAX (16 MiB)
//!   8   crc32c   u32 BE    of bytes 4..8 (the length) followed by the payload
//!  12   payload  `length`  one `TransactionRecord` as JSON (UTF-8):
//!                          {"type":"put","transactional_id":"t","producer_id":7,...}
//!                          {"type":"remove","transactional_id":"t"}
//! ```
//! The record magic holds 0xFF and 0xFE, bytes that never occur in UTF-8,
//! so they never occur in a payload, and it differs from the offsets
//! log's: one log's records are never taken for the other's. A `put`
//! holds an id's whole state and replaces what was there; a `remove`
//! forgets the id. Replaying any suffix of the log again therefore ends
//! in the same state, which is what lets compaction copy records appended
//! while it wrote its snapshot after that snapshot.
//!
//! Opening tells apart (see `crate::journal`):
//! - a *torn tail* (a crash mid-append): cut off; that append was never
//!   acknowledged, so the coordinator never acted on it;
//! - a *damaged record* with valid records after it: skipped and logged
//!   at error level with its position; the later records are kept, and the
//!   original file beside the repaired one as `transactions.log.damaged`.
//!   The id the damaged record was about keeps its earlier state (or a
//!   later record's);
//! - a record whose CRC holds but whose JSON does not decode (written by a
//!   newer Sluice?): refused, naming the file and the byte.
//!
//! Appends return once fsynced; a failed write or fsync poisons the log
//! until a restart. The coordinator must apply a change to its own map
//! only once [`TransactionLog::append`] has returned it durable, so that
//! map never holds a state the disk may not (compaction snapshots it).
//!
//! Compaction ([`TransactionLog::compact_if_due`]) snapshots the
//! coordinator's map (one `put` per id) when the file is past 1 MiB and
//! past twice a snapshot's size. The log tracks that size itself, per id,
//! as records are appended, so deciding walks nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::state::{TransactionMetadata, TransactionRecord};
use crate::journal::{Framing, Journal, JournalState, RECORD_HEADER_BYTES};
use crate::log::io::Io;

/// The log's file, in the directory [`TransactionLog::open`] is given.
pub(crate) const FILE_NAME: &str = "transactions.log";

/// First 8 bytes of a format 1 file.
pub(crate) const FILE_HEADER: [u8; 8] = *b"SLUTXN\x00\x01";

/// Largest record payload written or read. A transaction holds at most
/// `transactions.partitions_max` (1000 by default) partitions and as many
/// pending offsets, each with commit metadata of at most 4 KiB
/// (`groups.offset_metadata_bytes_max`): about 6 MiB of JSON at most for
/// ordinary strings, well below this. (Strings of control characters,
/// which JSON escapes as six bytes each, could go past it: such an append
/// is refused whole, with nothing written, and the request that made it
/// fails.) A length over it on disk is damage, never an allocation.
pub(crate) const RECORD_PAYLOAD_BYTES_MAX: usize = 16 << 20;

static FRAMING: Framing = Framing {
    file_header: FILE_HEADER,
    record_magic: [0xFF, 0x54, 0x58, 0xFE],
    payload_bytes_max: RECORD_PAYLOAD_BYTES_MAX,
    name: "transaction log",
};

/// What a snapshot of the live state takes on disk, kept up to date as
/// records are applied: the bytes of each id's latest `put` record.
#[derive(Debug, Default)]
struct SnapshotSizes {
    /// Transactional id → bytes of its latest `put` record.
    record_bytes: HashMap<String, u64>,
    /// Sum of `record_bytes`.
    records_bytes: u64,
}

impl SnapshotSizes {
    /// Accounts for `record`, which takes `bytes` on disk.
    fn apply(&mut self, record: &TransactionRecord, bytes: u64) {
        let old = match record {
            TransactionRecord::Put(metadata) => {
                self.records_bytes += bytes;
                let id = metadata.transactional_id.clone();
                self.record_bytes.insert(id, bytes)
            }
            TransactionRecord::Remove { transactional_id } => {
                self.record_bytes.remove(transactional_id)
            }
        };
        self.records_bytes -= old.unwrap_or(0);
    }

    fn snapshot_bytes(&self) -> u64 {
        FILE_HEADER.len() as u64 + self.records_bytes
    }
}

/// What replaying the log builds.
#[derive(Debug, Default)]
struct Replayed {
    transactions: BTreeMap<String, TransactionMetadata>,
    sizes: SnapshotSizes,
}

impl JournalState for Replayed {
    fn apply_payload(&mut self, payload: &[u8]) -> Result<(), String> {
        let record: TransactionRecord =
            serde_json::from_slice(payload).map_err(|error| error.to_string())?;
        let bytes = (RECORD_HEADER_BYTES + payload.len()) as u64;
        self.sizes.apply(&record, bytes);
        match record {
            TransactionRecord::Put(metadata) => {
                let id = metadata.transactional_id.clone();
                self.transactions.insert(id, metadata);
            }
            TransactionRecord::Remove { transactional_id } => {
                self.transactions.remove(&transactional_id);
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> std::io::Result<Vec<u8>> {
        snapshot(self.transactions.values().cloned())
    }
}

/// A format 1 file holding `transactions` as one `put` record each.
fn snapshot(
    transactions: impl IntoIterator<Item = TransactionMetadata>,
) -> std::io::Result<Vec<u8>> {
    let mut out = FILE_HEADER.to_vec();
    for metadata in transactions {
        FRAMING.encode_json(&TransactionRecord::Put(metadata), &mut out)?;
    }
    Ok(out)
}

/// The transaction log; internally synchronised, so the coordinator can
/// share it between threads. Its calls block on disk I/O: run them off
/// the async workers.
pub(crate) struct TransactionLog {
    journal: Journal,
    /// Taken after the journal's file lock, never across I/O.
    sizes: Mutex<SnapshotSizes>,
}

impl TransactionLog {
    /// Opens (creating `dir` and the file) and replays the log; returns it
    /// with the live state, transactional id → metadata. Cuts a torn tail
    /// and skips damaged records with valid ones after them (logged, the
    /// original kept); refuses, with an error naming the file and the
    /// position, a record it cannot decode.
    pub(crate) fn open(
        io: Arc<dyn Io>,
        dir: &Path,
    ) -> std::io::Result<(Self, BTreeMap<String, TransactionMetadata>)> {
        let path = dir.join(FILE_NAME);
        let (journal, replayed) = Journal::open::<Replayed>(io, &path, &FRAMING, None)?;
        let log = Self {
            journal,
            sizes: Mutex::new(replayed.sizes),
        };
        Ok((log, replayed.transactions))
    }

    fn sizes(&self) -> std::sync::MutexGuard<'_, SnapshotSizes> {
        self.sizes.lock().expect("transaction log sizes lock")
    }

    /// Appends `records` in order and fsyncs them; returns once they are
    /// durable. Refuses a record over [`RECORD_PAYLOAD_BYTES_MAX`] before
    /// writing any of them. After a failed write or fsync every append is
    /// refused until a restart.
    pub(crate) fn append(&self, records: &[TransactionRecord]) -> std::io::Result<()> {
        self.write(records, true)
    }

    /// [`TransactionLog::append`] without waiting for the fsync, for a
    /// record whose loss in a crash only makes recovery redo work (a
    /// Complete state: the Prepare state before it is durable, and
    /// finishing it again is a no-op for the partitions and the offsets).
    pub(crate) fn append_unsynced(&self, records: &[TransactionRecord]) -> std::io::Result<()> {
        self.write(records, false)
    }

    fn write(&self, records: &[TransactionRecord], sync: bool) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        let mut record_bytes = Vec::with_capacity(records.len());
        for record in records {
            record_bytes.push(FRAMING.encode_json(record, &mut bytes)? as u64);
        }
        let applied = || {
            let mut sizes = self.sizes();
            for (record, bytes) in records.iter().zip(record_bytes) {
                sizes.apply(record, bytes);
            }
        };
        if sync {
            self.journal.append(&bytes, applied)
        } else {
            self.journal.append_unsynced(&bytes, applied)
        }
    }

    /// Compacts the log if due; returns whether it did. `live` returns the
    /// coordinator's current state, every id's metadata as last appended
    /// (never a change not yet appended); it is called without any of the
    /// log's locks, so appends go on meanwhile, and the records appended
    /// after the decision are copied after the snapshot. Run from a
    /// periodic task, never on a request's path.
    pub(crate) fn compact_if_due(
        &self,
        live: &dyn Fn() -> Vec<TransactionMetadata>,
    ) -> std::io::Result<bool> {
        self.journal
            .compact_if_due(|| self.sizes().snapshot_bytes(), || snapshot(live()))
    }
}

#[cfg(test)]
mod tests;
