//! The shared framing and replay: golden bytes, the payload bound, torn
//! tails against damaged records, a refusal from `apply`. The file
//! handling is exercised through its two owners' tests
//! (`group/offsets/tests.rs`, `transaction/store/tests.rs`).

use super::*;

static TEST: Framing = Framing {
    file_header: *b"SLUTST\x00\x01",
    record_magic: [0xFF, 0x54, 0x54, 0xFE],
    payload_bytes_max: 64,
    name: "test journal",
};

/// A file holding one record per payload; the records' start positions.
fn file_of(payloads: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = TEST.file_header.to_vec();
    let mut starts = Vec::new();
    for payload in payloads {
        starts.push(bytes.len());
        TEST.encode(payload, &mut bytes).unwrap();
    }
    (bytes, starts)
}

/// The payloads `replay` hands over, with their positions.
fn replayed(bytes: &[u8]) -> (Vec<(Vec<u8>, usize)>, Replayed) {
    let mut seen = Vec::new();
    let replayed = TEST
        .replay(bytes, |payload, position| {
            seen.push((payload.to_vec(), position));
            Ok(())
        })
        .unwrap();
    (seen, replayed)
}

#[test]
fn a_record_is_magic_length_crc_payload() {
    let mut out = Vec::new();
    TEST.encode(b"{}", &mut out).unwrap();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&[0, 0, 0, 2]), b"{}");
    let mut expected = vec![0xFF, 0x54, 0x54, 0xFE, 0, 0, 0, 2];
    expected.extend_from_slice(&crc.to_be_bytes());
    expected.extend_from_slice(b"{}");
    assert_eq!(out, expected);
    assert_eq!(TEST.record_at(&out, 0), Ok((&b"{}"[..], out.len())));
}

#[test]
fn an_oversized_payload_is_refused_and_nothing_encoded() {
    let mut out = b"kept".to_vec();
    let error = TEST.encode(&[b'x'; 65], &mut out).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("test journal"), "{error}");
    assert_eq!(out, b"kept");
    TEST.encode(&[b'x'; 64], &mut out).unwrap();
}

#[test]
fn a_cut_last_record_is_a_torn_tail() {
    let (mut bytes, starts) = file_of(&[b"{\"a\":1}", b"{\"b\":2}"]);
    let whole = bytes.len();
    bytes.truncate(whole - 3);
    let (seen, replayed) = replayed(&bytes);
    assert_eq!(seen, vec![(b"{\"a\":1}".to_vec(), starts[0])]);
    assert_eq!(replayed.valid_bytes, starts[1]);
    assert!(replayed.torn.is_some());
    assert!(replayed.skipped.is_empty());
}

#[test]
fn a_damaged_record_before_valid_ones_is_skipped() {
    let (mut bytes, starts) = file_of(&[b"{\"a\":1}", b"{\"b\":2}", b"{\"c\":3}"]);
    bytes[starts[1] + RECORD_HEADER_BYTES + 2] ^= 0x01;
    let (seen, replayed) = replayed(&bytes);
    let positions: Vec<usize> = seen.iter().map(|(_, position)| *position).collect();
    assert_eq!(positions, vec![starts[0], starts[2]]);
    assert_eq!(replayed.skipped, vec![(starts[1], starts[2] - starts[1])]);
    assert_eq!(replayed.valid_bytes, bytes.len());
    assert!(replayed.torn.is_none());
}

/// A damaged last record has nothing valid after it: indistinguishable
/// from a torn append, so it is cut, not skipped.
#[test]
fn a_damaged_last_record_is_a_torn_tail() {
    let (mut bytes, starts) = file_of(&[b"{\"a\":1}", b"{\"b\":2}"]);
    bytes[starts[1] + RECORD_HEADER_BYTES + 1] ^= 0x80;
    let (seen, replayed) = replayed(&bytes);
    assert_eq!(seen.len(), 1);
    assert_eq!(replayed.valid_bytes, starts[1]);
    assert!(replayed.torn.unwrap().contains("CRC"));
}

#[test]
fn another_journals_magic_is_not_a_record() {
    let (bytes, _) = file_of(&[b"{}"]);
    let mut other = bytes.clone();
    other[8..12].copy_from_slice(&[0xFF, 0x4F, 0x46, 0xFE]);
    assert!(TEST.has_record_magic(&bytes));
    assert!(!TEST.has_record_magic(&other));
    assert!(TEST.record_at(&other, 8).is_err());
}

#[test]
fn a_refusal_from_apply_stops_the_replay() {
    let (bytes, starts) = file_of(&[b"{}", b"[]", b"{}"]);
    let mut applied = 0;
    let result = TEST.replay(&bytes, |payload, position| {
        if payload == b"[]" {
            return Err(format!("no arrays at {position}"));
        }
        applied += 1;
        Ok(())
    });
    assert_eq!(result.unwrap_err(), format!("no arrays at {}", starts[1]));
    assert_eq!(applied, 1);
}

#[test]
fn a_legacy_reader_replays_from_the_start() {
    fn record_at(bytes: &[u8], position: usize) -> Result<(&[u8], usize), String> {
        // One byte of length, then the payload.
        let length = *bytes.get(position).ok_or("empty")? as usize;
        let end = position + 1 + length;
        let payload = bytes.get(position + 1..end).ok_or("short")?;
        Ok((payload, end))
    }
    fn resync(_: &[u8], _: usize) -> Option<usize> {
        None
    }
    let legacy = Legacy { record_at, resync };
    let bytes = b"\x02ab\x01c\x05de";
    let mut seen = Vec::new();
    let replayed = replay_with(bytes, 0, legacy.record_at, legacy.resync, |payload, _| {
        seen.push(payload.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![b"ab".to_vec(), b"c".to_vec()]);
    assert_eq!(replayed.valid_bytes, 5);
    assert_eq!(replayed.torn.as_deref(), Some("short"));
}
