//! Plugin memory: each instance's own limit over all its memories and
//! tables ([`MemoryLimiter`]), and the broker-wide cap on the limits of all
//! live instances together ([`MemoryBudget`]).

use std::sync::Arc;

/// The broker-wide cap on plugin memory: each live instance holds a
/// reservation of its whole memory limit, taken before it is created and
/// given back when it is dropped, so the limits of all instances together
/// never exceed the cap, whatever they grow to.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    reserved_bytes: std::sync::Mutex<u64>,
    memory_bytes_max: u64,
}

impl MemoryBudget {
    pub(crate) fn new(memory_bytes_max: u64) -> Self {
        Self {
            reserved_bytes: std::sync::Mutex::new(0),
            memory_bytes_max,
        }
    }

    /// Reserves `bytes`, or says why not.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, String> {
        let mut reserved = self.reserved_bytes.lock().expect("memory budget lock");
        let total = reserved.saturating_add(bytes);
        if total > self.memory_bytes_max {
            return Err(format!(
                "plugin memory exhausted: this instance's memory limit of {bytes} bytes would take \
                 the instances' limits together to {total} bytes, over the broker's \
                 processors.memory_bytes_max of {} bytes",
                self.memory_bytes_max
            ));
        }
        *reserved = total;
        Ok(Reservation {
            budget: self.clone(),
            bytes,
        })
    }
}

/// Memory reserved from a [`MemoryBudget`], given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self
            .budget
            .reserved_bytes
            .lock()
            .expect("memory budget lock");
        *reserved = reserved.saturating_sub(self.bytes);
    }
}

/// Bytes a table element is counted as (a function reference).
const TABLE_ELEMENT_BYTES: usize = 8;

/// The instance's memory limit, counted over all its linear memories and
/// tables together (a component may have several of each, and each grows
/// on its own), remembering why a grow failed, for a clear message.
pub(super) struct MemoryLimiter {
    memory_bytes_max: usize,
    /// Bytes of all memories and tables now.
    memory_bytes_used: usize,
    /// The most `memory_bytes_used` has been.
    pub(super) memory_bytes_peak: usize,
    pub(super) refused: Option<usize>,
}

impl MemoryLimiter {
    pub(super) fn new(memory_bytes_max: usize) -> Self {
        Self {
            memory_bytes_max,
            memory_bytes_used: 0,
            memory_bytes_peak: 0,
            refused: None,
        }
    }

    /// The limit: no answer the host lowers into the instance can be
    /// larger.
    pub(super) fn memory_bytes_max(&self) -> usize {
        self.memory_bytes_max
    }

    /// Accounts for one memory or table growing from `current` to
    /// `desired` bytes, or refuses.
    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let total = self
            .memory_bytes_used
            .saturating_add(desired.saturating_sub(current));
        if total > self.memory_bytes_max {
            self.refused = Some(total);
            return Err(wasmtime::format_err!("memory limit exceeded"));
        }
        self.memory_bytes_used = total;
        self.memory_bytes_peak = self.memory_bytes_peak.max(total);
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter as _;

    use super::*;

    /// Two memories (wasmtime asks the limiter per memory) and a table
    /// count against one limit; a black-box test would need a component
    /// with two memories, which Rust plugins do not produce.
    #[test]
    fn the_memory_limit_counts_every_memory_and_table_of_the_instance() {
        let mut limiter = MemoryLimiter::new(10 << 20);
        assert!(limiter.memory_growing(0, 4 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 4 << 20, None).unwrap());
        assert_eq!(limiter.memory_bytes_used, 8 << 20);
        assert!(limiter.table_growing(0, 1_000, None).unwrap());
        // Either memory growing by 2 MiB more takes the sum over 10 MiB.
        assert!(limiter.memory_growing(4 << 20, 6 << 20, None).is_err());
        assert_eq!(limiter.refused, Some((10 << 20) + 8_000));
        assert_eq!(limiter.memory_bytes_peak, (8 << 20) + 8_000);
        assert!(limiter.memory_growing(4 << 20, 5 << 20, None).unwrap());
    }

    #[test]
    fn the_memory_budget_is_shared_and_given_back() {
        let budget = Arc::new(MemoryBudget::new(100));
        let first = budget.reserve(60).unwrap();
        let error = budget.reserve(60).unwrap_err();
        assert!(error.contains("processors.memory_bytes_max"), "{error}");
        drop(first);
        let _second = budget.reserve(60).unwrap();
    }
}
