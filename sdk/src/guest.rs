//! The WebAssembly side of the contract (compiled for `wasm32` only): the
//! `handler` export's two entry points, and the moves between the types
//! wit-bindgen generates and the SDK's.
//!
//! The instance's handler lives in a thread-local slot: a component instance
//! is single-threaded, `init` fills the slot once and every `process` call
//! borrows it. A batch arrives as one buffer; each record's bytes are copied
//! out of it as the record is taken.

use std::cell::RefCell;
use std::sync::Arc;

use crate::bindings::sluice::processor::types as wit;
use crate::kinds::BoxedHandler;
use crate::output::Entry;
use crate::{Batch, Error, Header, Outputs, Payload, ProcessError, Record};

pub use crate::bindings::exports::sluice::processor::handler::Guest;
pub use crate::bindings::exports::sluice::processor::timers::{
    Guest as TimersGuest, Timer as WitTimer,
};
pub(crate) use wit::InputRecord;
pub use wit::{Batch as WitBatch, Output as WitOutput, ProcessError as WitProcessError};

thread_local! {
    static HANDLER: RefCell<Option<BoxedHandler>> = const { RefCell::new(None) };
}

/// `init`: builds the handler with `make` and keeps it for `process`.
pub fn guest_init(
    make: impl FnOnce(&[(String, String)]) -> Result<BoxedHandler, Error>,
    config: Vec<(String, String)>,
) -> Result<(), String> {
    // A panic aborts the instance (a trap); log its message first so the
    // broker can say why in the processor's status.
    std::panic::set_hook(Box::new(|info| {
        let message = info.payload_as_str().unwrap_or("(no message)");
        match info.location() {
            Some(at) => crate::log::error(format!("panicked at {at}: {message}")),
            None => crate::log::error(format!("panicked: {message}")),
        }
    }));
    let handler = make(&config).map_err(|error| error.to_string())?;
    HANDLER.with_borrow_mut(|slot| *slot = Some(handler));
    Ok(())
}

/// `process`: runs the handler over one batch.
pub fn guest_process(batch: WitBatch) -> Result<Vec<WitOutput>, WitProcessError> {
    HANDLER.with_borrow_mut(|slot| {
        let Some(handler) = slot.as_mut() else {
            return Err(process_error_to_wit(ProcessError::new(
                "process called before init",
            )));
        };
        crate::clock::begin_call();
        let mut outputs = Outputs::default();
        handler
            .process(Batch::from_guest(batch), &mut outputs)
            .map_err(process_error_to_wit)?;
        let entries = outputs.into_entries().map_err(process_error_to_wit)?;
        Ok(entries.into_iter().map(entry_to_wit).collect())
    })
}

/// `on-timer`: runs the handler over due timers.
pub fn guest_on_timer(timers: Vec<WitTimer>) -> Result<Vec<WitOutput>, WitProcessError> {
    use crate::bindings::sluice::processor::clock::Domain as WitDomain;
    use crate::clock::{Domain, Timer};

    HANDLER.with_borrow_mut(|slot| {
        let Some(handler) = slot.as_mut() else {
            return Err(process_error_to_wit(ProcessError::new(
                "on-timer called before init",
            )));
        };
        crate::clock::begin_call();
        let timers = timers
            .into_iter()
            .map(|timer| Timer {
                domain: match timer.domain {
                    WitDomain::EventTime => Domain::EventTime,
                    WitDomain::ProcessingTime => Domain::ProcessingTime,
                },
                key: timer.key,
                at: timer.at,
            })
            .collect();
        let mut outputs = Outputs::default();
        handler
            .on_timer(timers, &mut outputs)
            .map_err(process_error_to_wit)?;
        let entries = outputs.into_timer_entries().map_err(process_error_to_wit)?;
        Ok(entries.into_iter().map(entry_to_wit).collect())
    })
}

/// A 0.2 batch as it crossed the boundary (one buffer, records pointing
/// into it), taken record by record.
#[derive(Debug)]
pub(crate) struct Unpacked {
    data: Vec<u8>,
    records: std::vec::IntoIter<InputRecord>,
    headers: Vec<wit::HeaderSpan>,
}

impl Unpacked {
    pub(crate) fn new(batch: WitBatch) -> Self {
        Self {
            data: batch.data,
            records: batch.records.into_iter(),
            headers: batch.headers,
        }
    }

    /// The next record, its bytes copied out of the batch's buffer.
    #[inline]
    pub(crate) fn next(&mut self, topic: &Arc<str>, partition: i32) -> Option<Record> {
        let record = self.records.next()?;
        let bytes = |span: Option<wit::Span>| span.map(|span| self.bytes(span).to_vec());
        let headers = match record.headers.len {
            0 => Vec::new(),
            len => {
                let first = record.headers.start as usize;
                self.headers
                    .get(first..first + len as usize)
                    .expect("a record's headers are inside the batch's")
                    .iter()
                    .map(|header| Header {
                        key: String::from_utf8_lossy(self.bytes(header.key)).into_owned(),
                        value: header.value.map(|span| self.bytes(span).to_vec()),
                    })
                    .collect()
            }
        };
        Some(Record {
            key: bytes(record.key),
            value: bytes(record.value),
            headers,
            timestamp: record.timestamp,
            offset: record.offset,
            topic: topic.clone(),
            partition,
        })
    }

    /// The bytes of `span` in the batch's buffer.
    #[inline]
    fn bytes(&self, span: wit::Span) -> &[u8] {
        let start = span.start as usize;
        self.data
            .get(start..start + span.len as usize)
            .expect("a record's bytes are inside the batch's buffer")
    }

    pub(crate) fn size_hint(&self) -> (usize, Option<usize>) {
        self.records.size_hint()
    }
}

#[inline]
fn entry_to_wit(entry: Entry) -> WitOutput {
    let payload = match entry.payload {
        Payload::Forward => wit::Payload::Forward,
        Payload::Emit(record) => wit::Payload::Emit(wit::OutputRecord {
            key: record.key,
            value: record.value,
            headers: record
                .headers
                .into_iter()
                .map(|header| wit::Header {
                    key: header.key,
                    value: header.value,
                })
                .collect(),
            timestamp: record.timestamp,
        }),
    };
    WitOutput {
        source: entry.source,
        topic: entry.topic,
        payload,
    }
}

fn process_error_to_wit(error: ProcessError) -> WitProcessError {
    WitProcessError {
        message: error.message,
        source: error.source,
    }
}
