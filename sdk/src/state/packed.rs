//! Keys and values crossing as one buffer (`get-many`, `put-many`): a list
//! of byte strings is one allocation on each side instead of one per
//! element, as a batch's records are.

#[cfg(target_arch = "wasm32")]
pub(crate) use crate::bindings::sluice::processor::types::Span;

/// `len` bytes of a buffer from `start` (the contract's `span`).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

/// The bytes of `span` in `data`, a buffer the host filled.
pub(crate) fn slice(data: &[u8], span: Span) -> &[u8] {
    let start = span.start as usize;
    data.get(start..start + span.len as usize)
        .expect("the host's spans are inside its buffer")
}

/// Appends what `write` writes to `data`; its span.
fn append(data: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) -> Span {
    let start = data.len();
    write(data);
    let span = |n: usize| u32::try_from(n).expect("a packed buffer is under 4 GiB");
    Span {
        start: span(start),
        len: span(data.len() - start),
    }
}

/// Byte strings back to back (`get-many`'s keys; on the host the SDK's
/// in-memory stores need no packing).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[derive(Debug, Default)]
pub(crate) struct Packed {
    pub(crate) data: Vec<u8>,
    pub(crate) spans: Vec<Span>,
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
impl Packed {
    pub(crate) fn with_capacity(items: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(items),
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let span = append(&mut self.data, |data| data.extend_from_slice(bytes));
        self.spans.push(span);
    }
}

/// Key-value entries back to back (`put-many`'s).
#[derive(Debug, Default)]
pub(crate) struct PackedEntries {
    pub(crate) data: Vec<u8>,
    pub(crate) spans: Vec<(Span, Span)>,
}

impl PackedEntries {
    pub(crate) fn with_capacity(entries: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(entries),
        }
    }

    /// Adds `key` with the value `write_value` writes into the buffer (a
    /// value serialised in place, without a buffer of its own).
    pub(crate) fn push(&mut self, key: &[u8], write_value: impl FnOnce(&mut Vec<u8>)) {
        let key = append(&mut self.data, |data| data.extend_from_slice(key));
        let value = append(&mut self.data, write_value);
        self.spans.push((key, value));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The entries, in order.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|&(key, value)| (slice(&self.data, key), slice(&self.data, value)))
    }
}
