//! A slot's key and committed value: in the slot when short, else in one
//! heap block.

/// Key and committed value bytes a slot holds in itself; longer ones go
/// to the heap. A slot is two cache lines (64-byte aligned): the first
/// holds the hash, the key's length and the first 46 bytes of data, so a
/// lookup of a short key compares it and reads its value in one line, not
/// in a heap block as well (the staged write is in the second line).
pub(super) const INLINE_BYTES: usize = 86;

/// A key then its committed value, in the slot when short.
#[derive(Debug)]
pub(super) enum Data {
    Inline { len: u8, bytes: [u8; INLINE_BYTES] },
    Heap(Box<[u8]>),
}

impl Data {
    /// `key` followed by `value`.
    pub(super) fn new(key: &[u8], value: &[u8]) -> Self {
        let len = key.len() + value.len();
        if len <= INLINE_BYTES {
            let mut bytes = [0; INLINE_BYTES];
            bytes[..key.len()].copy_from_slice(key);
            bytes[key.len()..len].copy_from_slice(value);
            Self::Inline {
                len: len as u8,
                bytes,
            }
        } else {
            let mut data = Vec::with_capacity(len);
            data.extend_from_slice(key);
            data.extend_from_slice(value);
            Self::Heap(data.into_boxed_slice())
        }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(data) => data,
        }
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Self::Inline { len, bytes } => &mut bytes[..usize::from(*len)],
            Self::Heap(data) => data,
        }
    }
}
