//! The windowed-store key layout, shared with the broker's state queries
//! (which decode it): byte by byte,
//!
//! | bytes | what |
//! |---|---|
//! | 4 | the user key's length, `u32` big-endian |
//! | n | the user key |
//! | 8 | the window start, `i64` ms big-endian with the sign bit flipped |
//! | 8 | the window end, encoded the same way |
//!
//! Flipping the sign bit makes byte order numeric order, so a key's windows
//! are contiguous and sorted by start, then end. Values are the aggregate
//! as JSON.

use super::Window;
use crate::{Error, Result};

/// Bytes after the user key: start and end.
const TIMES_BYTES: usize = 16;

/// `time` as 8 bytes whose byte order is numeric order.
pub(crate) fn encode_time(time: i64) -> [u8; 8] {
    ((time as u64) ^ (1 << 63)).to_be_bytes()
}

fn decode_time(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The prefix every window of `key` starts with: its length and bytes.
pub(crate) fn key_prefix(key: &[u8]) -> Vec<u8> {
    let length = u32::try_from(key.len()).expect("state keys are at most 16 KiB");
    let mut prefix = Vec::with_capacity(4 + key.len() + TIMES_BYTES);
    prefix.extend_from_slice(&length.to_be_bytes());
    prefix.extend_from_slice(key);
    prefix
}

/// The store key of `key`'s `window`.
pub fn encode(key: &[u8], window: Window) -> Vec<u8> {
    let mut bytes = key_prefix(key);
    bytes.extend_from_slice(&encode_time(window.start));
    bytes.extend_from_slice(&encode_time(window.end));
    bytes
}

/// The user key and window of a store key made by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<(Vec<u8>, Window)> {
    let invalid = || {
        Error::new(format!(
            "a {}-byte store key is not a window key",
            bytes.len()
        ))
    };
    let (length, rest) = bytes.split_first_chunk::<4>().ok_or_else(invalid)?;
    let length = u32::from_be_bytes(*length) as usize;
    if rest.len() != length + TIMES_BYTES {
        return Err(invalid());
    }
    let (key, times) = rest.split_at(length);
    let (start, end) = times.split_at(8);
    let window = Window {
        start: decode_time(start.try_into().expect("8 bytes")),
        end: decode_time(end.try_into().expect("8 bytes")),
    };
    Ok((key.to_vec(), window))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_byte_by_byte() {
        let bytes = encode(b"ab", Window { start: 0, end: -1 });
        let mut expected = vec![0, 0, 0, 2, b'a', b'b'];
        expected.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(bytes, expected);
        assert_eq!(
            decode(&bytes).unwrap(),
            (b"ab".to_vec(), Window { start: 0, end: -1 })
        );
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(b"ab").is_err());
    }

    #[test]
    fn byte_order_is_window_order() {
        let times = [i64::MIN, -1_000, -1, 0, 1, 60_000, i64::MAX];
        let keys: Vec<_> = times
            .iter()
            .map(|&start| {
                encode(
                    b"k",
                    Window {
                        start,
                        end: start.saturating_add(10),
                    },
                )
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for (time, key) in times.iter().zip(&keys) {
            assert_eq!(decode(key).unwrap().1.start, *time);
        }
    }
}
