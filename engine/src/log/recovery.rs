//! What opening a partition checks and rebuilds: the list of segments
//! (removing leftovers of interrupted compaction or writes), that each
//! segment starts where the one before it ended, and idempotent producers'
//! state, replayed from the batch headers in the log.

use std::path::Path;

use super::batch::BatchHeader;
use super::partition::PartitionContext;
use super::producers::ProducerStates;
use super::segment::{self, ActiveSegment, SegmentMeta, LOG_SUFFIX};
use super::transactions::PartitionTransactions;
use super::{Io, LogError};

/// Base offsets of the segments in `dir`, ascending. Leftovers of interrupted
/// work (`.cleaned`, `.tmp`) are removed.
pub(super) fn list_segments(io: &dyn Io, dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut bases = Vec::new();
    for path in io
        .read_dir(dir)
        .map_err(|source| LogError::io(dir, source))?
    {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".cleaned") || name.ends_with(".tmp") {
            tracing::info!(file = %path.display(), "removing leftover of interrupted work");
            io.remove_file(&path)
                .map_err(|source| LogError::io(&path, source))?;
            continue;
        }
        if let Some(stem) = name.strip_suffix(".log") {
            match stem.parse::<i64>() {
                Ok(base) if stem.len() == 20 && base >= 0 => bases.push(base),
                _ => tracing::warn!(file = %path.display(), "ignoring file that is not a segment"),
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Refuses a segment that overlaps the one before it.
pub(super) fn check_continuity(
    dir: &Path,
    previous_next_offset: i64,
    meta: &SegmentMeta,
) -> Result<(), LogError> {
    if meta.base_offset < previous_next_offset {
        return Err(LogError::Corrupt {
            path: segment::segment_path(dir, meta.base_offset, LOG_SUFFIX),
            position: 0,
            reason: format!(
                "segment starts at offset {} but the previous one ends at {}",
                meta.base_offset, previous_next_offset
            ),
        });
    }
    Ok(())
}

/// Opens the segments at `bases` (ascending) of the partition in `dir`: the
/// closed ones checked, the last one recovered as the active segment, and
/// idempotent producers' and transactions' state replayed from every batch
/// header, each header read once (the closed segments' during their check).
pub(super) fn open_segments(
    context: &PartitionContext,
    dir: &Path,
    bases: &[i64],
    now_ms: i64,
) -> Result<Opened, LogError> {
    let io = context.io.as_ref();
    let interval = context.index_interval_bytes;
    let mut producers = ProducerStates::new(context.producers_max);
    let mut transactions = PartitionTransactions::default();
    let Some((last, rest)) = bases.split_last() else {
        let active = ActiveSegment::create(io, dir, 0, interval, now_ms)?;
        return Ok(Opened {
            closed: Vec::new(),
            active,
            producers,
            transactions,
        });
    };
    let mut visit = |header: &BatchHeader, marker: Option<bool>| {
        producers.record(header, 0);
        transactions.on_batch(header, marker);
    };
    let mut closed = Vec::new();
    let mut next_offset = i64::MIN;
    for base in rest {
        let meta = segment::open_closed(io, dir, *base, interval, &mut visit)?;
        check_continuity(dir, next_offset, &meta)?;
        next_offset = meta.next_offset;
        closed.push(meta);
    }
    let active = ActiveSegment::recover(io, dir, *last, interval, now_ms)?;
    check_continuity(dir, next_offset, &active.meta)?;
    let path = segment::segment_path(dir, active.meta.base_offset, LOG_SUFFIX);
    segment::walk_headers(active.log.as_ref(), active.meta.size, &mut visit)
        .map_err(|source| LogError::io(&path, source))?;
    Ok(Opened {
        closed,
        active,
        producers,
        transactions,
    })
}

/// What opening a partition's segments rebuilt.
pub(super) struct Opened {
    pub(super) closed: Vec<SegmentMeta>,
    pub(super) active: ActiveSegment,
    pub(super) producers: ProducerStates,
    pub(super) transactions: PartitionTransactions,
}
