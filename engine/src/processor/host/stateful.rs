//! Contract 0.2's imports on the host: the `state` store resource and the
//! `clock`, both backed by the calling task's [`TaskContext`], which the
//! partition task lends to its instance for the length of one call.
//!
//! A state operation that fails traps the call. A limit (a key or value
//! too large, too much staged) is the plugin's doing: the error policy
//! applies to the record, as for any trap. A storage failure is the
//! broker's: the call fails with [`InvokeError::Host`](super::InvokeError)
//! and the task stops, whatever the policy.

use wasmtime::component::Resource;

use super::bindings::v02::sluice::processor::{clock, log, state, types};
use super::HostState;
use crate::state::{Domain, Page, StateError, TaskState};
use types::Span;

/// What a call reaches besides its batch: the task's keyed state, its
/// stream time and counters. Owned by the partition task; lent to the
/// instance for each call.
#[derive(Debug, Default)]
pub struct TaskContext {
    /// The task's state; `None` for a stateless, at-least-once processor.
    pub(crate) state: Option<TaskState>,
    /// The task's stream time before the current batch.
    pub(crate) stream_time: Option<i64>,
    /// Records the plugin counted as late (`count-late`), since the task
    /// last took them.
    pub(crate) late_dropped: u64,
    /// Why the last call's state operation failed, if it did.
    pub(crate) failure: Option<StateError>,
}

impl TaskContext {
    /// A context with state.
    pub(crate) fn with_state(state: TaskState) -> Self {
        Self {
            state: Some(state),
            ..Self::default()
        }
    }
}

/// A store handle in the instance's resource table: the store's key
/// prefix within the task.
// `pub`: the generated bindings re-export it; nothing outside uses it.
#[allow(unreachable_pub)]
#[derive(Debug)]
pub struct StoreHandle {
    prefix: Vec<u8>,
    /// A table: reads only.
    read_only: Option<String>,
}

impl HostState {
    /// Runs `operation` on the task's state, turning a failure into a trap
    /// remembered for the error message.
    fn with_state<T>(
        &mut self,
        operation: impl FnOnce(&mut TaskState) -> Result<T, StateError>,
    ) -> wasmtime::Result<T> {
        let result = match self.task.state.as_mut() {
            Some(state) => operation(state),
            None => Err(StateError::NoState),
        };
        result.map_err(|error| {
            let message = error.to_string();
            self.task.failure = Some(error);
            wasmtime::Error::msg(message)
        })
    }

    fn prefix(&self, store: &Resource<StoreHandle>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(store)?.prefix.clone())
    }

    /// The prefix of a store the call may write (not a table).
    fn writable(&mut self, store: &Resource<StoreHandle>) -> wasmtime::Result<Vec<u8>> {
        let handle = self.table.get(store)?;
        if let Some(name) = &handle.read_only {
            let error = StateError::ReadOnly(name.clone());
            let message = error.to_string();
            self.task.failure = Some(error);
            return Err(wasmtime::Error::msg(message));
        }
        Ok(handle.prefix.clone())
    }
}

impl types::Host for HostState {}

/// The bytes `span` names in `data` (a packed `get-many` or `put-many`
/// argument); a span past its end is the plugin's error and traps.
fn spanned<'d>(data: &'d [u8], span: &Span, call: &str) -> wasmtime::Result<&'d [u8]> {
    let (start, len) = (span.start as usize, span.len as usize);
    start
        .checked_add(len)
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| {
            wasmtime::format_err!(
                "{call}: span {start}+{len} is past the end of its {}-byte buffer",
                data.len()
            )
        })
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        use super::bindings::v01::sluice::processor::log::Level;
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        super::bindings::v01::sluice::processor::log::Host::log(self, level, message);
        Ok(())
    }
}

impl state::Host for HostState {}

impl state::HostStore for HostState {
    /// Opens a declared store (also in `init`, before any state is lent:
    /// the handle is the store's key prefix in this instance's task).
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<StoreHandle>, String>> {
        let handle = if self.label.stores.contains(&name) {
            StoreHandle {
                prefix: crate::state::store_prefix(self.label.task, &name),
                read_only: None,
            }
        } else if self.label.tables.contains(&name) {
            StoreHandle {
                prefix: crate::state::store_prefix(crate::processor::tables::TABLE_TASK, &name),
                read_only: Some(name),
            }
        } else {
            return Ok(Err(StateError::UnknownStore(name).to_string()));
        };
        Ok(Ok(self.table.push(handle)?))
    }

    /// Opens a declared store as windowed: its entries count as the
    /// task's open windows in the status (the instance remembers the
    /// name; the task records it with its next commit).
    fn open_windowed(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<StoreHandle>, String>> {
        if self.label.tables.contains(&name) {
            return Ok(Err(format!(
                "store `{name}` is a read-only table: it cannot be opened as windowed"
            )));
        }
        let opened = self.open(name.clone())?;
        // At most one name per declared store.
        if opened.is_ok() && !self.windowed.contains(&name) {
            self.windowed.push(name);
        }
        Ok(opened)
    }

    fn get(
        &mut self,
        store: Resource<StoreHandle>,
        key: Vec<u8>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let prefix = self.prefix(&store)?;
        self.with_state(|state| state.get(&prefix, &key))
    }

    fn get_many(
        &mut self,
        store: Resource<StoreHandle>,
        data: Vec<u8>,
        keys: Vec<Span>,
    ) -> wasmtime::Result<state::Values> {
        let prefix = self.prefix(&store)?;
        let keys = keys
            .iter()
            .map(|span| spanned(&data, span, "get-many"))
            .collect::<wasmtime::Result<Vec<_>>>()?;
        let mut values = state::Values {
            data: Vec::new(),
            spans: vec![None; keys.len()],
        };
        // The instance could not hold a larger answer (and a plugin could
        // otherwise ask for one large value a million times).
        let bytes_max = self.limiter.memory_bytes_max().min(u32::MAX as usize);
        let mut too_large = false;
        self.with_state(|state| {
            state.get_many_with(&prefix, keys.into_iter(), |index, value| {
                let Some(value) = value else { return };
                let start = values.data.len();
                if too_large || start + value.len() > bytes_max {
                    too_large = true;
                    return;
                }
                values.data.extend_from_slice(value);
                values.spans[index] = Some(Span {
                    start: start as u32,
                    len: value.len() as u32,
                });
            })
        })?;
        if too_large {
            return Err(wasmtime::format_err!(
                "get-many: the values asked for are larger than the instance's memory limit \
                 of {bytes_max} bytes"
            ));
        }
        Ok(values)
    }

    fn put(
        &mut self,
        store: Resource<StoreHandle>,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let prefix = self.writable(&store)?;
        self.with_state(|state| state.put(&prefix, &key, value))
    }

    fn put_many(
        &mut self,
        store: Resource<StoreHandle>,
        data: Vec<u8>,
        entries: Vec<(Span, Span)>,
    ) -> wasmtime::Result<()> {
        let prefix = self.writable(&store)?;
        let entries = entries
            .iter()
            .map(|(key, value)| {
                Ok((
                    spanned(&data, key, "put-many")?,
                    spanned(&data, value, "put-many")?,
                ))
            })
            .collect::<wasmtime::Result<Vec<_>>>()?;
        self.with_state(|state| {
            entries
                .into_iter()
                .try_for_each(|(key, value)| state.put(&prefix, key, value))
        })
    }

    fn delete(&mut self, store: Resource<StoreHandle>, key: Vec<u8>) -> wasmtime::Result<()> {
        let prefix = self.writable(&store)?;
        self.with_state(|state| state.delete(&prefix, &key))
    }

    fn add(
        &mut self,
        store: Resource<StoreHandle>,
        key: Vec<u8>,
        delta: i64,
    ) -> wasmtime::Result<i64> {
        let prefix = self.writable(&store)?;
        self.with_state(|state| state.add(&prefix, &key, delta))
    }

    fn scan(
        &mut self,
        store: Resource<StoreHandle>,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<state::Page> {
        let prefix = self.prefix(&store)?;
        let Page { entries, next } =
            self.with_state(|state| state.scan(&prefix, &start, end.as_deref(), limit as usize))?;
        Ok(state::Page { entries, next })
    }

    fn delete_range(
        &mut self,
        store: Resource<StoreHandle>,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    ) -> wasmtime::Result<u64> {
        let prefix = self.writable(&store)?;
        self.with_state(|state| state.delete_range(&prefix, &start, end.as_deref()))
    }

    fn clear_range(
        &mut self,
        store: Resource<StoreHandle>,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        let prefix = self.writable(&store)?;
        self.with_state(|state| state.clear_range(&prefix, &start, end.as_deref()))
    }

    fn drop(&mut self, store: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

fn domain(domain: clock::Domain) -> Domain {
    match domain {
        clock::Domain::EventTime => Domain::EventTime,
        clock::Domain::ProcessingTime => Domain::ProcessingTime,
    }
}

impl clock::Host for HostState {
    fn stream_time(&mut self) -> wasmtime::Result<Option<i64>> {
        Ok(self.task.stream_time)
    }

    fn schedule(&mut self, on: clock::Domain, key: Vec<u8>, at: i64) -> wasmtime::Result<()> {
        if self.task.state.is_none() {
            return Err(no_timers());
        }
        self.with_state(|state| state.schedule(domain(on), &key, at))
    }

    fn cancel(&mut self, on: clock::Domain, key: Vec<u8>, at: i64) -> wasmtime::Result<()> {
        if self.task.state.is_none() {
            return Err(no_timers());
        }
        self.with_state(|state| state.cancel(domain(on), &key, at))
    }

    fn count_late(&mut self, records: u64) -> wasmtime::Result<()> {
        self.task.late_dropped = self.task.late_dropped.saturating_add(records);
        Ok(())
    }
}

fn no_timers() -> wasmtime::Error {
    wasmtime::Error::msg(
        "timers are state: deploy the processor with a store (--store NAME) \
         or --guarantee exactly-once",
    )
}

#[cfg(test)]
mod tests {
    use super::{spanned, Span};

    #[test]
    fn spans_past_their_buffer_are_refused_with_what_and_where() {
        let data = b"keyvalue";
        let span = |start, len| Span { start, len };
        assert_eq!(spanned(data, &span(3, 5), "put-many").unwrap(), b"value");
        assert_eq!(spanned(data, &span(8, 0), "put-many").unwrap(), b"");
        for (start, len) in [(3, 6), (9, 0), (u32::MAX, u32::MAX)] {
            let error = spanned(data, &span(start, len), "get-many").unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("get-many: span {start}+{len} is past the end of its 8-byte buffer")
            );
        }
    }
}
