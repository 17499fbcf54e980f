//! Producer id allocation for idempotent producers. Ids are handed out from
//! blocks reserved durably in `<data-dir>/producer_ids` (the first id of the
//! next unreserved block, written atomically), so ids are never reused
//! across restarts and allocation costs one fsync per block, not per id.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::log::io::{self, Io};

/// Ids reserved per durable write.
const BLOCK_IDS: i64 = 1000;

/// The allocator.
pub(crate) struct ProducerIds {
    path: PathBuf,
    /// (next id to hand out, end of the reserved block)
    state: Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// Opens the allocator; the next id is the start of a fresh block.
    pub(crate) fn open(io: &dyn Io, data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("producer_ids");
        let next = match io::read_file(io, &path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes)
                .trim()
                .parse::<i64>()
                .map_err(|error| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {error}", path.display()),
                    )
                })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => return Err(error),
        };
        Ok(Self {
            path,
            state: Mutex::new((next, next)),
        })
    }

    /// A new producer id.
    pub(crate) fn allocate(&self, io: &dyn Io) -> std::io::Result<i64> {
        let mut state = self.state.lock().expect("producer id lock");
        if state.0 >= state.1 {
            let end = state.0 + BLOCK_IDS;
            io::write_atomic(io, &self.path, end.to_string().as_bytes())?;
            state.1 = end;
        }
        let id = state.0;
        state.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::StdIo;

    #[test]
    fn ids_are_unique_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProducerIds::open(&StdIo, dir.path()).unwrap();
        let a = first.allocate(&StdIo).unwrap();
        let b = first.allocate(&StdIo).unwrap();
        assert_eq!(b, a + 1);
        drop(first);
        let second = ProducerIds::open(&StdIo, dir.path()).unwrap();
        assert!(second.allocate(&StdIo).unwrap() > b);
    }
}
