//! The windowed-store key layouts, shared with the broker's state queries
//! (which decode both). Times are `i64` ms big-endian with the sign bit
//! flipped, so byte order is numeric order. Values are the aggregate as
//! JSON.
//!
//! **Keyed** ([`encode`]; sessions and sliding windows, which find a key's
//! windows together), byte by byte:
//!
//! | bytes | what |
//! |---|---|
//! | 4 | the user key's length, `u32` big-endian |
//! | n | the user key |
//! | 8 | the window start |
//! | 8 | the window end |
//!
//! A key's windows are contiguous, sorted by start, then end. The first
//! byte is 0 (a state key is far shorter than 16 MiB).
//!
//! **By window** ([`encode_by_window`]; tumbling and hopping windows, which
//! close every key's window of one start at the same time):
//!
//! | bytes | what |
//! |---|---|
//! | 1 | [`BY_WINDOW`] (1) |
//! | 8 | the window start |
//! | 4 | the user key's length |
//! | n | the user key |
//! | 8 | the window end |
//!
//! A window's keys are contiguous ([`window_range`]), so closing it is one
//! range of the store (one timer for every key, not one each), and a new
//! window's keys sort after every older window's, where RocksDB finds
//! nothing without looking into older files.

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

/// The first byte of a key in the by-window layout.
pub const BY_WINDOW: u8 = 1;

/// The store key of `key`'s `window`, keyed layout.
pub fn encode(key: &[u8], window: Window) -> Vec<u8> {
    let mut bytes = key_prefix(key);
    bytes.extend_from_slice(&encode_time(window.start));
    bytes.extend_from_slice(&encode_time(window.end));
    bytes
}

/// The store key of `key`'s `window`, by-window layout.
pub fn encode_by_window(key: &[u8], window: Window) -> Vec<u8> {
    let length = u32::try_from(key.len()).expect("state keys are at most 16 KiB");
    let mut bytes = Vec::with_capacity(1 + 8 + 4 + key.len() + 8);
    bytes.push(BY_WINDOW);
    bytes.extend_from_slice(&encode_time(window.start));
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&encode_time(window.end));
    bytes
}

/// What every by-window key of the windows starting at `start` begins
/// with.
pub fn window_prefix(start: i64) -> [u8; 9] {
    let mut prefix = [BY_WINDOW; 9];
    prefix[1..].copy_from_slice(&encode_time(start));
    prefix
}

/// `[first, end)`: the by-window keys of the windows starting at `start`.
pub fn window_range(start: i64) -> ([u8; 9], Vec<u8>) {
    let prefix = window_prefix(start);
    let end = match start.checked_add(1) {
        Some(next) => window_prefix(next).to_vec(),
        // After every start: the layout's next first byte.
        None => vec![BY_WINDOW + 1],
    };
    (prefix, end)
}

/// The window start of a by-window key (or of a prefix of one at least
/// 9 bytes long).
pub fn window_start(bytes: &[u8]) -> Option<i64> {
    match bytes {
        [BY_WINDOW, time @ ..] => Some(decode_time(time.get(..8)?.try_into().ok()?)),
        _ => None,
    }
}

/// The user key and window of a store key made by [`encode`] or
/// [`encode_by_window`].
pub fn decode(bytes: &[u8]) -> Result<(Vec<u8>, Window)> {
    let invalid = || {
        Error::new(format!(
            "a {}-byte store key is not a window key",
            bytes.len()
        ))
    };
    if bytes.first() == Some(&BY_WINDOW) {
        let start = window_start(bytes).ok_or_else(invalid)?;
        let (length, rest) = bytes[9..].split_first_chunk::<4>().ok_or_else(invalid)?;
        let length = u32::from_be_bytes(*length) as usize;
        if rest.len() != length + 8 {
            return Err(invalid());
        }
        let (key, end) = rest.split_at(length);
        let end = decode_time(end.try_into().expect("8 bytes"));
        return Ok((key.to_vec(), Window { start, end }));
    }
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
    fn the_by_window_layout_byte_by_byte() {
        let bytes = encode_by_window(b"ab", Window { start: 0, end: -1 });
        let mut expected = vec![1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, b'a', b'b'];
        expected.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(bytes, expected);
        assert_eq!(
            decode(&bytes).unwrap(),
            (b"ab".to_vec(), Window { start: 0, end: -1 })
        );
        assert_eq!(window_start(&bytes), Some(0));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[BY_WINDOW, 0x80]).is_err());
        assert_eq!(
            window_start(&encode(b"ab", Window { start: 0, end: 1 })),
            None
        );
    }

    #[test]
    fn a_window_range_holds_its_windows_keys_and_only_them() {
        for start in [i64::MIN, -7, 0, 60_000, i64::MAX] {
            let (first, end) = window_range(start);
            let inside = encode_by_window(
                b"k",
                Window {
                    start,
                    end: start.saturating_add(5),
                },
            );
            assert!(first.as_slice() <= inside.as_slice() && inside < end);
            if let Some(next) = start.checked_add(1) {
                let after = encode_by_window(
                    b"",
                    Window {
                        start: next,
                        end: next,
                    },
                );
                assert!(after >= end);
            }
            if let Some(before) = start.checked_sub(1) {
                let long = encode_by_window(
                    &[0xff; 40],
                    Window {
                        start: before,
                        end: i64::MAX,
                    },
                );
                assert!(long.as_slice() < first.as_slice());
            }
            // Every by-window key sorts after every keyed one.
            assert!(encode(&[0xff; 40], Window { start, end: start }) < first.to_vec());
        }
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
