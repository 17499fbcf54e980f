//! A staged value: in its slot when short, else boxed.

/// Longest value kept in the slot itself. A counter's decimal text, the
/// most common write of an aggregate, is under it: staging it allocates
/// nothing, and neither its next write nor the commit frees anything.
const INLINE_BYTES: usize = 22;

/// A staged value (24 bytes, the size of the `Vec` it replaced, so a slot
/// stays two cache lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Inline { len: u8, bytes: [u8; INLINE_BYTES] },
    Heap(Box<[u8]>),
}

const _: () = assert!(std::mem::size_of::<Option<Option<Value>>>() == 24);

impl Value {
    pub(super) fn new(value: &[u8]) -> Self {
        if value.len() <= INLINE_BYTES {
            let mut bytes = [0; INLINE_BYTES];
            bytes[..value.len()].copy_from_slice(value);
            Self::Inline {
                len: value.len() as u8,
                bytes,
            }
        } else {
            Self::Heap(Box::from(value))
        }
    }
}

impl std::ops::Deref for Value {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_inline_up_to_the_bound_and_boxed_past_it() {
        for len in [0, 1, 7, INLINE_BYTES, INLINE_BYTES + 1, 1_000] {
            let bytes: Vec<u8> = (0..len).map(|n| n as u8).collect();
            let value = Value::new(&bytes);
            assert_eq!(&*value, bytes.as_slice());
            assert_eq!(matches!(value, Value::Inline { .. }), len <= INLINE_BYTES);
        }
    }
}
