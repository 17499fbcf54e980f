//! Sparse offset and time indexes of one segment.
//!
//! An entry is added about every `index_interval_bytes` (default 4 KiB) of
//! log. Both files are append-only arrays of fixed-size big-endian entries:
//!
//! ```text
//! .index      8 bytes/entry: relative_offset u32 (batch base offset − segment
//!             base), position u32 (byte position of that batch in .log)
//! .timeindex 12 bytes/entry: timestamp i64 (largest timestamp in the segment
//!             up to and including the batch), relative_offset u32 (that
//!             batch's base offset − segment base)
//! ```
//!
//! Entries are strictly increasing in offset and position, and time entries
//! in timestamp. Indexes are derived data: they are not fsynced on every
//! append and are rebuilt from the log whenever they are missing or do not
//! match it.

/// Bytes of one offset index entry.
pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes of one time index entry.
pub(crate) const TIME_ENTRY_BYTES: usize = 12;

/// One offset index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Batch base offset minus segment base offset.
    pub(crate) relative_offset: u32,
    /// Byte position of the batch in the segment's log file.
    pub(crate) position: u32,
}

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    /// Largest timestamp in the segment up to and including this batch.
    pub(crate) timestamp: i64,
    /// Batch base offset minus segment base offset.
    pub(crate) relative_offset: u32,
}

/// The in-memory form of both indexes of a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    /// Offset entries, increasing.
    pub(crate) offsets: Vec<OffsetEntry>,
    /// Time entries, increasing.
    pub(crate) times: Vec<TimeEntry>,
}

impl SegmentIndex {
    /// Position to start scanning from for a batch containing
    /// `relative_offset`: the last entry at or before it, else 0.
    pub(crate) fn position_for(&self, relative_offset: u32) -> u32 {
        let after = self
            .offsets
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        if after == 0 {
            0
        } else {
            self.offsets[after - 1].position
        }
    }

    /// Relative offset to start scanning from for the first record with a
    /// timestamp at or after `timestamp`: every batch up to and including the
    /// last entry whose timestamp is below it is older, so scanning may start
    /// at that entry's batch.
    pub(crate) fn relative_offset_for_time(&self, timestamp: i64) -> u32 {
        let older = self
            .times
            .partition_point(|entry| entry.timestamp < timestamp);
        if older == 0 {
            0
        } else {
            self.times[older - 1].relative_offset
        }
    }

    /// Encodes the offset index file.
    pub(crate) fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY_BYTES);
        for entry in &self.offsets {
            out.extend_from_slice(&encode_offset_entry(entry));
        }
        out
    }

    /// Encodes the time index file.
    pub(crate) fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * TIME_ENTRY_BYTES);
        for entry in &self.times {
            out.extend_from_slice(&encode_time_entry(entry));
        }
        out
    }

    /// Decodes both files; `None` if either is malformed (wrong size, not
    /// increasing), which means "rebuild".
    pub(crate) fn decode(offsets: &[u8], times: &[u8]) -> Option<Self> {
        if !offsets.len().is_multiple_of(OFFSET_ENTRY_BYTES)
            || !times.len().is_multiple_of(TIME_ENTRY_BYTES)
        {
            return None;
        }
        let offsets: Vec<OffsetEntry> = offsets
            .chunks_exact(OFFSET_ENTRY_BYTES)
            .map(|chunk| OffsetEntry {
                relative_offset: u32::from_be_bytes(chunk[0..4].try_into().expect("4")),
                position: u32::from_be_bytes(chunk[4..8].try_into().expect("4")),
            })
            .collect();
        let times: Vec<TimeEntry> = times
            .chunks_exact(TIME_ENTRY_BYTES)
            .map(|chunk| TimeEntry {
                timestamp: i64::from_be_bytes(chunk[0..8].try_into().expect("8")),
                relative_offset: u32::from_be_bytes(chunk[8..12].try_into().expect("4")),
            })
            .collect();
        let offsets_increase = offsets.windows(2).all(|pair| {
            pair[0].relative_offset < pair[1].relative_offset && pair[0].position < pair[1].position
        });
        let times_increase = times.windows(2).all(|pair| {
            pair[0].timestamp < pair[1].timestamp
                && pair[0].relative_offset < pair[1].relative_offset
        });
        (offsets_increase && times_increase).then_some(Self { offsets, times })
    }
}

/// Encodes one offset entry.
pub(crate) fn encode_offset_entry(entry: &OffsetEntry) -> [u8; OFFSET_ENTRY_BYTES] {
    let mut out = [0; OFFSET_ENTRY_BYTES];
    out[0..4].copy_from_slice(&entry.relative_offset.to_be_bytes());
    out[4..8].copy_from_slice(&entry.position.to_be_bytes());
    out
}

/// Encodes one time entry.
pub(crate) fn encode_time_entry(entry: &TimeEntry) -> [u8; TIME_ENTRY_BYTES] {
    let mut out = [0; TIME_ENTRY_BYTES];
    out[0..8].copy_from_slice(&entry.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&entry.relative_offset.to_be_bytes());
    out
}

/// Builds index entries as batches are appended, deciding when the next
/// entry is due. Used by appends, recovery and compaction alike, so an index
/// rebuilt from the log equals the one written while appending.
#[derive(Debug, Clone)]
pub(crate) struct IndexBuilder {
    interval_bytes: u64,
    bytes_since_entry: u64,
    max_timestamp: i64,
    last_time_entry: i64,
    /// Position of the last offset entry (0 before the first, which a lookup
    /// finds without one). A batch gets an entry only past it, so a batch
    /// scanned again after [`IndexBuilder::resume`] does not get a second.
    last_entry_position: u32,
}

impl IndexBuilder {
    /// A builder for an empty segment.
    pub(crate) fn new(interval_bytes: u64) -> Self {
        Self {
            interval_bytes,
            bytes_since_entry: 0,
            max_timestamp: i64::MIN,
            last_time_entry: i64::MIN,
            last_entry_position: 0,
        }
    }

    /// A builder continuing at an existing offset entry at `position` whose
    /// running max timestamp (and last time entry) was `max_timestamp`; the
    /// batch at `position` is scanned again without adding its entry twice.
    pub(crate) fn resume(interval_bytes: u64, max_timestamp: i64, position: u32) -> Self {
        Self {
            interval_bytes,
            bytes_since_entry: 0,
            max_timestamp,
            last_time_entry: max_timestamp,
            last_entry_position: position,
        }
    }

    /// Records a batch at `position`; returns the entries to add, if any.
    pub(crate) fn on_batch(
        &mut self,
        relative_offset: u32,
        position: u32,
        batch_bytes: u64,
        max_timestamp: i64,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
        let mut entries = (None, None);
        // The first batch is at position 0, which a lookup finds without an
        // entry; later batches get one once an interval of bytes has passed.
        if position > self.last_entry_position && self.bytes_since_entry >= self.interval_bytes {
            entries.0 = Some(OffsetEntry {
                relative_offset,
                position,
            });
            self.last_entry_position = position;
            if self.max_timestamp > self.last_time_entry {
                self.last_time_entry = self.max_timestamp;
                entries.1 = Some(TimeEntry {
                    timestamp: self.max_timestamp,
                    relative_offset,
                });
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += batch_bytes;
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_last_entry_at_or_before() {
        let index = SegmentIndex {
            offsets: vec![
                OffsetEntry {
                    relative_offset: 10,
                    position: 4_100,
                },
                OffsetEntry {
                    relative_offset: 20,
                    position: 8_300,
                },
            ],
            times: vec![],
        };
        assert_eq!(index.position_for(0), 0);
        assert_eq!(index.position_for(9), 0);
        assert_eq!(index.position_for(10), 4_100);
        assert_eq!(index.position_for(19), 4_100);
        assert_eq!(index.position_for(500), 8_300);
    }

    #[test]
    fn encode_decode_round_trips_and_rejects_garbage() {
        let index = SegmentIndex {
            offsets: vec![OffsetEntry {
                relative_offset: 3,
                position: 5_000,
            }],
            times: vec![TimeEntry {
                timestamp: 77,
                relative_offset: 3,
            }],
        };
        let decoded = SegmentIndex::decode(&index.encode_offsets(), &index.encode_times());
        assert_eq!(decoded, Some(index.clone()));
        assert_eq!(SegmentIndex::decode(&[1, 2, 3], &[]), None);
        let mut twice = index.encode_offsets();
        twice.extend(index.encode_offsets());
        assert_eq!(SegmentIndex::decode(&twice, &[]), None);
    }

    #[test]
    fn builder_adds_an_entry_per_interval() {
        let mut builder = IndexBuilder::new(100);
        let mut offsets = 0;
        for batch in 0..10u32 {
            let (entry, _) = builder.on_batch(batch, batch * 60, 60, batch as i64);
            offsets += entry.is_some() as u32;
        }
        // 60-byte batches with a 100-byte interval: an entry every 2 batches.
        assert_eq!(offsets, 4);
    }

    #[test]
    fn resumed_builder_matches_a_fresh_one() {
        // Interval 0 indexes every batch after the first; recovery resumes
        // at an entry and scans its batch again, which must not add it twice.
        let mut fresh = IndexBuilder::new(0);
        let entries: Vec<_> = (0..4u32)
            .map(|batch| fresh.on_batch(batch, batch * 60, 60, batch as i64))
            .collect();
        assert!(entries[1].0.is_some());
        let mut resumed = IndexBuilder::resume(0, 2, 120);
        assert_eq!(resumed.on_batch(2, 120, 60, 2), (None, None));
        assert_eq!(resumed.on_batch(3, 180, 60, 3), entries[3]);
    }
}
