//! The byte scanner behind [`find`](super::find): one pass over a JSON
//! document that validates all of it (RFC 8259) and, on the way, notes the
//! byte span of the value at a path.
//!
//! Why by hand: `find` is the hot path of filtering plugins, run once per
//! record inside WebAssembly, where serde_json's visitor layers cost several
//! times the scan itself. This scanner is one loop over tokens with an
//! explicit stack (a bit per open array or object: no recursion, no
//! allocation); it skips string bodies and digits eight bytes at a time
//! (SWAR, safe code) and compares keys in place, a short key as one word.
//!
//! It checks the grammar only; what a value means (UTF-8, paired
//! surrogates, number range) is checked when the found value is read, as
//! serde_json does for the values it skips.
//!
//! Path semantics, those of `serde_json::Value`: a key segment matches
//! object keys after escape decoding, an index segment matches an array
//! element, the last of duplicate keys wins (a later match resets what an
//! earlier one found), and a scalar on the way finds nothing.
//!
//! Shaped for WebAssembly as compiled by Cranelift, measured: few values
//! live across the loop (each extra one is a spill), no calls in it (a
//! call spills every live value), no loop entered on the common path of a
//! token (every loop entered, and every turn of one, also checks for epoch
//! interruption), and tests rather than `match`es on bytes where a jump
//! table's indirect branch would be mispredicted.

use std::ops::Range;

use super::Segment;

/// The deepest nesting of arrays and objects accepted: serde_json's (its
/// recursion budget of 128 admits 127 levels), so what serde_json parses
/// into a `Value`, this accepts. The stack of open containers is a bit
/// each in two `u64`s.
pub(super) const NESTING_MAX: usize = 127;

/// Why a document is not JSON: where, as a byte offset, and what was
/// expected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Invalid {
    /// Offset of the offending byte (the length of the input at its end).
    pub(super) offset: usize,
    /// What is wrong there, e.g. `expected ',' or '}'`.
    pub(super) reason: &'static str,
}

impl Invalid {
    fn new(offset: usize, reason: &'static str) -> Self {
        Self { offset, reason }
    }
}

/// What a valid document turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Scanned {
    /// A scalar at the top level: nothing to walk into.
    Scalar,
    /// An array or an object, and the span of the value at the path in it,
    /// if there is one.
    Container(Option<Range<usize>>),
}

/// Validates `json` and finds the span of the value at `segments`.
pub(super) fn scan(json: &[u8], segments: &[Segment]) -> Result<Scanned, Invalid> {
    let (start, _) = significant(json, 0);
    let (end, scanned) = match json.get(start) {
        Some(b'{' | b'[') => {
            let mut walk = Walk::new(segments);
            let end = container(json, start, &mut walk)?;
            (end, Scanned::Container(walk.found))
        }
        Some(&byte) => (scalar(json, start, byte)?, Scanned::Scalar),
        None => return Err(Invalid::new(start, "expected a value")),
    };
    let (end, _) = significant(json, end);
    if end != json.len() {
        return Err(Invalid::new(end, "trailing characters after the value"));
    }
    Ok(scanned)
}

/// Scans the array or object at `start`, tracking the path in `walk`;
/// returns the offset after it.
///
/// One turn per value, with as few live values as possible (the offset,
/// the depth, the kind of the innermost container, whether the value is on
/// the path). The rest of the state lives in [`Walk`], touched only when a
/// container opens or closes and on the keys and elements in the container
/// the path looks at.
fn container(json: &[u8], start: usize, walk: &mut Walk<'_>) -> Result<usize, Invalid> {
    let mut at = start;
    let mut depth = 0;
    let mut in_object = false;
    // Whether the value at `at` is the next step of the path.
    let mut hit = false;
    loop {
        // The offset after the `{`, `[` or `,` that precedes the next value
        // (one place reads keys, so one copy of that code).
        let after_separator = 'value: {
            // A value starts at `at`, after whitespace.
            let (value, byte) = significant(json, at);
            at = value;
            let starts = VALUE_STARTS[usize::from(byte)];
            if starts & OPENS != 0 {
                if depth == NESTING_MAX {
                    return Err(Invalid::new(at, "arrays and objects nested too deeply"));
                }
                in_object = byte == b'{';
                depth += 1;
                walk.open(at, depth, in_object, hit);
                let (next, byte) = significant(json, at + 1);
                if byte != closing(in_object) {
                    break 'value next;
                }
                at = next;
            } else {
                let end = if starts & STRING != 0 {
                    skip_string(json, at + 1)?.0
                } else if starts & NUMBER != 0 {
                    skip_number(json, at)?
                } else {
                    scalar(json, at, byte)?
                };
                if hit {
                    walk.scalar(at, end);
                }
                // After a value, most often a comma: no inner loop entered
                // (compiled to WebAssembly, every loop entered also checks
                // for interruption).
                let (next, byte) = significant(json, end);
                if byte == b',' {
                    break 'value next + 1;
                }
                at = next;
            }
            // At a closing bracket, or what should be one: close, and on
            // up to the next comma or the end of the top-level value.
            loop {
                if json.get(at) != Some(&closing(in_object)) {
                    let reason = if in_object {
                        "expected ',' or '}'"
                    } else {
                        "expected ',' or ']'"
                    };
                    return Err(Invalid::new(at, reason));
                }
                in_object = walk.close(at, depth);
                depth -= 1;
                if depth == 0 {
                    return Ok(at + 1);
                }
                let (next, byte) = significant(json, at + 1);
                if byte == b',' {
                    break 'value next + 1;
                }
                at = next;
            }
        };
        let (next, byte) = significant(json, after_separator);
        (at, hit) = next_value(json, next, byte, depth, in_object, walk)?;
    }
}

/// After `{`, `[` or `,`, at the next significant byte `byte` at `at`: the
/// start of the next value (past the key and colon, in an object) and
/// whether it is on the path.
#[inline(always)]
fn next_value(
    json: &[u8],
    at: usize,
    byte: u8,
    depth: usize,
    in_object: bool,
    walk: &mut Walk<'_>,
) -> Result<(usize, bool), Invalid> {
    if !in_object {
        return Ok((at, depth == walk.path_depth && walk.element()));
    }
    if byte != b'"' {
        return Err(Invalid::new(at, "expected '\"' to start a key"));
    }
    let (end, escaped) = skip_string(json, at + 1)?;
    let hit = depth == walk.path_depth && walk.key_is(json, at + 1..end - 1, escaped);
    let (colon, byte) = significant(json, end);
    if byte != b':' {
        return Err(Invalid::new(colon, "expected ':'"));
    }
    Ok((colon + 1, hit))
}

/// Where the scan is on the path, and what it found.
///
/// The open containers at depths `1..=matched + 1` are the ones
/// `segments[..matched]` lead to (the top level is at depth 1); only in the
/// last of them, at depth `matched + 1`, are keys compared and elements
/// counted. A container that matches the last segment is the target: it is
/// scanned like any other value and its span recorded when it closes.
struct Walk<'p> {
    segments: &'p [Segment],
    /// Bit `n % 64` of word `n / 64` set: the container at depth `n + 1` is
    /// an object.
    objects: [u64; 2],
    /// How many segments the open containers match.
    matched: usize,
    /// `matched + 1`: the depth where the walk looks for the next segment
    /// (0 when there is no segment to look for).
    path_depth: usize,
    /// The next segment's key.
    want: &'p [u8],
    /// Its first eight bytes (fewer: padded with zeros), little-endian.
    want_prefix: u64,
    /// In the array at `path_depth`: elements left before the one the next
    /// segment wants; `None` once it is passed (or there is none).
    elements_before_hit: Option<usize>,
    /// The span of the value at the path, as far as the scan has got.
    found: Option<Range<usize>>,
    /// Where the target array or object being scanned starts, and its
    /// depth (0: there is none).
    target_start: usize,
    target_depth: usize,
}

impl<'p> Walk<'p> {
    fn new(segments: &'p [Segment]) -> Self {
        let first = segments.first();
        let mut walk = Self {
            segments,
            objects: [0; 2],
            matched: 0,
            path_depth: usize::from(first.is_some()),
            want: &[],
            want_prefix: 0,
            elements_before_hit: first.and_then(|segment| segment.index),
            found: None,
            target_start: 0,
            target_depth: 0,
        };
        if let Some(segment) = first {
            walk.set_want(segment);
        }
        walk
    }

    fn set_want(&mut self, segment: &'p Segment) {
        self.want = segment.key.as_bytes();
        self.want_prefix = segment.key_prefix;
    }

    /// The array or object at `at`, at `depth`, has opened; `hit`: it is
    /// the next step of the path.
    #[inline(always)]
    fn open(&mut self, at: usize, depth: usize, object: bool, hit: bool) {
        let (word, bit) = ((depth - 1) / 64, 1_u64 << ((depth - 1) % 64));
        if object {
            self.objects[word] |= bit;
        } else {
            self.objects[word] &= !bit;
        }
        if !hit {
            return;
        }
        // A later match replaces whatever an earlier one found.
        self.found = None;
        if self.matched + 1 == self.segments.len() {
            self.target_start = at;
            self.target_depth = depth;
        } else {
            self.matched += 1;
            self.path_depth = self.matched + 1;
            let segment = &self.segments[self.matched];
            self.set_want(segment);
            self.elements_before_hit = if object { None } else { segment.index };
        }
    }

    /// The container at `depth` closes with the bracket at `at`; returns
    /// whether its parent (if any) is an object.
    #[inline(always)]
    fn close(&mut self, at: usize, depth: usize) -> bool {
        if depth == self.target_depth {
            self.found = Some(self.target_start..at + 1);
            self.target_depth = 0;
        } else if depth == self.path_depth && self.matched > 0 {
            // Back in the parent, whose matching member is now behind.
            self.matched -= 1;
            self.path_depth = self.matched + 1;
            self.set_want(&self.segments[self.matched]);
            self.elements_before_hit = None;
        }
        let Some(parent) = depth.checked_sub(2) else {
            return false;
        };
        (self.objects[parent / 64] >> (parent % 64)) & 1 == 1
    }

    /// The scalar at `start..end` is the next step of the path.
    fn scalar(&mut self, start: usize, end: usize) {
        self.found = (self.matched + 1 == self.segments.len()).then_some(start..end);
    }

    /// In the array on the path, an element starts: whether it is the one
    /// the path wants.
    #[inline(always)]
    fn element(&mut self) -> bool {
        match self.elements_before_hit {
            Some(0) => {
                self.elements_before_hit = None;
                true
            }
            Some(left) => {
                self.elements_before_hit = Some(left - 1);
                false
            }
            None => false,
        }
    }

    /// In the object on the path: whether the key whose body is
    /// `json[body]` is the one the path wants.
    #[inline(always)]
    fn key_is(&self, json: &[u8], body: Range<usize>, escaped: bool) -> bool {
        if escaped {
            return unescaped_equals(&json[body], self.want);
        }
        let length = body.len();
        if length != self.want.len() {
            return false;
        }
        // A key of up to eight bytes is one word to compare (what follows
        // it masked off): no loop, no call.
        match json.get(body.start..body.start + 8) {
            Some(chunk) if length <= 8 => {
                let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
                let mask = match length {
                    8 => u64::MAX,
                    _ => (1 << (8 * length)) - 1,
                };
                word & mask == self.want_prefix
            }
            _ => same_bytes(&json[body], self.want),
        }
    }
}

/// The first eight bytes of `key` (fewer: padded with zeros) as a
/// little-endian word, as [`Walk::key_is`] compares keys.
pub(super) fn key_prefix(key: &[u8]) -> u64 {
    let mut prefix = [0; 8];
    for (byte, key) in prefix.iter_mut().zip(key) {
        *byte = *key;
    }
    u64::from_le_bytes(prefix)
}

/// `left == right` inline: in WebAssembly `memcmp` is a call, and a call
/// in the scan loop makes Cranelift spill the loop's values.
#[inline(always)]
fn same_bytes(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len() && left.iter().zip(right).all(|(left, right)| left == right)
}

/// The bracket that closes an object or an array.
#[inline(always)]
fn closing(object: bool) -> u8 {
    if object {
        b'}'
    } else {
        b']'
    }
}

/// What a value starting with a byte is: bits, not an enum, so that the
/// tests on it stay tests. A `match` on the byte becomes jump tables in
/// WebAssembly, whose indirect branches are mispredicted often as strings
/// and numbers alternate.
const VALUE_STARTS: [u8; 256] = {
    let mut starts = [0; 256];
    starts[b'"' as usize] = STRING;
    starts[b'-' as usize] = NUMBER;
    let mut digit = b'0';
    while digit <= b'9' {
        starts[digit as usize] = NUMBER;
        digit += 1;
    }
    starts[b'{' as usize] = OPENS;
    starts[b'[' as usize] = OPENS;
    starts
};
const STRING: u8 = 1;
const NUMBER: u8 = 2;
const OPENS: u8 = 4;

/// Skips the string, number or literal starting with `byte` at `at`;
/// returns the offset after it.
#[inline(always)]
fn scalar(json: &[u8], at: usize, byte: u8) -> Result<usize, Invalid> {
    match byte {
        b'"' => skip_string(json, at + 1).map(|(end, _)| end),
        b'-' | b'0'..=b'9' => skip_number(json, at),
        b't' => skip_literal(json, at, b"true"),
        b'f' => skip_literal(json, at, b"false"),
        b'n' => skip_literal(json, at, b"null"),
        _ => Err(Invalid::new(at, "expected a value")),
    }
}

/// The first byte at or after `at` that is not whitespace, and its offset;
/// 0 at the end of the input (a 0 byte is never valid there either).
///
/// No loop on the common path (no whitespace): compiled to WebAssembly,
/// every loop entered also checks for interruption.
#[inline(always)]
fn significant(json: &[u8], mut at: usize) -> (usize, u8) {
    // Every JSON whitespace byte is at most b' '.
    match json.get(at) {
        Some(&byte) if byte > b' ' => return (at, byte),
        _ => {}
    }
    while let Some(&byte) = json.get(at) {
        if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
            return (at, byte);
        }
        at += 1;
    }
    (at, 0)
}

/// Skips `literal` (`true`, `false` or `null`) at `at`, whose first byte
/// the caller matched: its last four bytes are compared as one word (a
/// slice comparison would be a call to `memcmp` in WebAssembly).
fn skip_literal(json: &[u8], at: usize, literal: &[u8]) -> Result<usize, Invalid> {
    let end = at + literal.len();
    let last_four = |bytes: &[u8]| {
        let four = &bytes[bytes.len() - 4..];
        u32::from_le_bytes(four.try_into().expect("four bytes"))
    };
    match json.get(at..end) {
        Some(bytes) if last_four(bytes) == last_four(literal) => Ok(end),
        _ => Err(Invalid::new(at, "expected a value")),
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` at `at`.
#[inline(always)]
fn skip_number(json: &[u8], mut at: usize) -> Result<usize, Invalid> {
    if json.get(at) == Some(&b'-') {
        at += 1;
    }
    match json.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at = skip_digits(json, at + 1),
        _ => return Err(Invalid::new(at, "expected a digit")),
    }
    if json.get(at) == Some(&b'.') {
        at = skip_some_digits(json, at + 1)?;
    }
    if let Some(b'e' | b'E') = json.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = json.get(at) {
            at += 1;
        }
        at = skip_some_digits(json, at)?;
    }
    Ok(at)
}

/// Skips a run of digits: eight bytes at a time, and no loop for a run of
/// up to seven (compiled to WebAssembly, every loop entered also checks
/// for interruption); one at a time near the end of the input.
#[inline(always)]
fn skip_digits(json: &[u8], mut at: usize) -> usize {
    let digits_in = |chunk: &[u8]| {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        ((!digit_bytes(word) & splat(0x80)).trailing_zeros() / 8) as usize
    };
    if let Some(chunk) = json.get(at..at + 8) {
        let digits = digits_in(chunk);
        if digits < 8 {
            return at + digits;
        }
        at += 8;
        while let Some(chunk) = json.get(at..at + 8) {
            let digits = digits_in(chunk);
            at += digits;
            if digits < 8 {
                return at;
            }
        }
    }
    while json.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    at
}

/// The high bit of each byte of `word` that is an ASCII digit.
#[inline(always)]
fn digit_bytes(word: u64) -> u64 {
    // On the low seven bits of each byte no sum carries into the next one.
    let low = word & splat(0x7f);
    let at_least_zero = low + splat(0x80 - b'0');
    let above_nine = low + splat(0x80 - b'9' - 1);
    at_least_zero & !above_nine & !word & splat(0x80)
}

/// At least one digit.
fn skip_some_digits(json: &[u8], at: usize) -> Result<usize, Invalid> {
    match json.get(at) {
        Some(b'0'..=b'9') => Ok(skip_digits(json, at + 1)),
        _ => Err(Invalid::new(at, "expected a digit")),
    }
}

/// Eight copies of a byte, for the word-at-a-time tests below.
const fn splat(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// The high bit of each byte of `word` that ends a run of plain string
/// bytes: `"`, `\` or a control character. Bits above the first are not
/// reliable (borrows), the first one is.
#[inline(always)]
fn string_stops(word: u64) -> u64 {
    const LOW: u64 = splat(0x01);
    const HIGH: u64 = splat(0x80);
    let zero_in = |bits: u64| bits.wrapping_sub(LOW) & !bits;
    let quote = zero_in(word ^ splat(b'"'));
    let backslash = zero_in(word ^ splat(b'\\'));
    let control = word.wrapping_sub(splat(0x20)) & !word;
    (quote | backslash | control) & HIGH
}

/// Skips a string body starting at `at` (after the opening quote); returns
/// the offset after the closing quote and whether there were escapes.
#[inline(always)]
fn skip_string(json: &[u8], mut at: usize) -> Result<(usize, bool), Invalid> {
    // Most strings are short and plain: their closing quote is the first
    // stop in the first eight bytes, read from the word (no second load).
    if let Some(chunk) = json.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let stops = string_stops(word);
        // The stop's bit is the high bit of its byte: round down to the byte.
        let shift = stops.trailing_zeros() & !7;
        if stops != 0 && (word >> shift) as u8 == b'"' {
            return Ok((at + (shift / 8) as usize + 1, false));
        }
    }
    let mut escaped = false;
    loop {
        at = plain_run_end(json, at);
        match json.get(at) {
            Some(b'"') => return Ok((at + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                at = skip_escape(json, at + 1)?;
            }
            Some(_) => return Err(Invalid::new(at, "control character in a string")),
            None => return Err(Invalid::new(at, "unterminated string")),
        }
    }
}

/// The offset of the first byte at or after `at` that ends a run of plain
/// string bytes (`"`, `\` or a control character), or the end of `json`.
///
/// Eight bytes at a time, then sixteen; the last few bytes of the input as
/// one word too. Most strings are short: their end is in the first eight
/// bytes and no loop is entered (compiled to WebAssembly, every loop
/// entered and every turn of one also checks for interruption).
#[inline(always)]
fn plain_run_end(json: &[u8], mut at: usize) -> usize {
    let first_stop = |chunk: &[u8]| {
        let stops = string_stops(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        (stops.trailing_zeros() / 8) as usize
    };
    if let Some(chunk) = json.get(at..at + 8) {
        let stop = first_stop(chunk);
        if stop < 8 {
            return at + stop;
        }
        at += 8;
        while let Some(chunk) = json.get(at..at + 16) {
            let (low, high) = chunk.split_at(8);
            let stop = match first_stop(low) {
                8 => 8 + first_stop(high),
                stop => stop,
            };
            if stop < 16 {
                return at + stop;
            }
            at += 16;
        }
        if let Some(chunk) = json.get(at..at + 8) {
            let stop = first_stop(chunk);
            if stop < 8 {
                return at + stop;
            }
            at += 8;
        }
    }
    plain_tail_end(json, at)
}

/// [`plain_run_end`] for the last seven bytes or fewer: the input's last
/// eight bytes as one word, shifted down to `at`.
#[inline(always)]
fn plain_tail_end(json: &[u8], mut at: usize) -> usize {
    let Some(last_start) = json.len().checked_sub(8) else {
        // An input of fewer than eight bytes.
        while json
            .get(at)
            .is_some_and(|&byte| byte != b'"' && byte != b'\\' && byte >= 0x20)
        {
            at += 1;
        }
        return at;
    };
    let word = u64::from_le_bytes(json[last_start..].try_into().expect("eight bytes"));
    // The bytes shifted in from the top are zeros, which count as stops:
    // the first of them is at the end of the input.
    let shift = 8 * at.saturating_sub(last_start) as u32;
    let stops = string_stops(word.checked_shr(shift).unwrap_or(0));
    (at + (stops.trailing_zeros() / 8) as usize).min(json.len())
}

/// Checks the escape whose letter is at `at` (after `\`); returns the
/// offset after it.
#[inline(always)]
fn skip_escape(json: &[u8], at: usize) -> Result<usize, Invalid> {
    match json.get(at) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 1),
        Some(b'u') => match json.get(at + 1..at + 5) {
            Some(digits) if digits.iter().all(u8::is_ascii_hexdigit) => Ok(at + 5),
            _ => Err(Invalid::new(at + 1, "expected four hex digits after \\u")),
        },
        Some(_) => Err(Invalid::new(at, "invalid escape")),
        None => Err(Invalid::new(at, "unterminated string")),
    }
}

/// The value of four hex digits at `at`.
fn hex4(raw: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(raw.get(at..at + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

/// Decodes the escape whose letter is at `raw[at]` (after `\`) in a string
/// body the scan checked: the character and the offset after the escape.
/// `None` for a lone surrogate (`\ud800` not followed by `\udc00`..`\udfff`),
/// which is no character.
pub(super) fn unescape(raw: &[u8], at: usize) -> Option<(char, usize)> {
    let simple = match raw.get(at)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        _ => {
            let first = hex4(raw, at + 1)?;
            if !(0xd800..0xdc00).contains(&first) {
                return char::from_u32(first).map(|c| (c, at + 5));
            }
            if raw.get(at + 5..at + 7)? != b"\\u" {
                return None;
            }
            let second = hex4(raw, at + 7)?;
            if !(0xdc00..0xe000).contains(&second) {
                return None;
            }
            let code = 0x1_0000 + ((first - 0xd800) << 10) + (second - 0xdc00);
            return char::from_u32(code).map(|c| (c, at + 11));
        }
    };
    Some((simple, at + 1))
}

/// Whether the string body `raw`, escapes decoded, is `key`. A lone
/// surrogate is never equal (`key` is UTF-8); no allocation.
#[cold]
#[inline(never)]
fn unescaped_equals(raw: &[u8], key: &[u8]) -> bool {
    let (mut at, mut matched) = (0, 0);
    while let Some(&byte) = raw.get(at) {
        if byte != b'\\' {
            if key.get(matched) != Some(&byte) {
                return false;
            }
            at += 1;
            matched += 1;
            continue;
        }
        let Some((decoded, next)) = unescape(raw, at + 1) else {
            return false;
        };
        let mut buffer = [0; 4];
        let bytes = decoded.encode_utf8(&mut buffer).as_bytes();
        if !key[matched..].starts_with(bytes) {
            return false;
        }
        at = next;
        matched += bytes.len();
    }
    matched == key.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_stops_find_the_first_special_byte() {
        let first = |bytes: &[u8; 8]| {
            let stops = string_stops(u64::from_le_bytes(*bytes));
            (stops != 0).then(|| stops.trailing_zeros() / 8)
        };
        assert_eq!(first(b"abcdefgh"), None);
        assert_eq!(first(b"abc\"efgh"), Some(3));
        assert_eq!(first(b"\\bcdefgh"), Some(0));
        assert_eq!(first(b"abcdefg\x1f"), Some(7));
        assert_eq!(first(b"ab\x00\"\x01fgh"), Some(2));
        assert_eq!(
            first(&[0xc3, 0xa9, 0xff, 0x80, b' ', b'~', 0x7f, 0x21]),
            None
        );
        // Every byte value, alone among plain bytes.
        for byte in 0..=255_u8 {
            let mut bytes = *b"aaaaaaaa";
            bytes[5] = byte;
            let special = byte == b'"' || byte == b'\\' || byte < 0x20;
            assert_eq!(first(&bytes), special.then_some(5), "{byte:#x}");
        }
    }

    #[test]
    fn unescape_decodes_escapes_and_pairs() {
        assert_eq!(unescape(br"\n", 1), Some(('\n', 2)));
        assert_eq!(unescape(br"\u00e9x", 1), Some(('é', 6)));
        assert_eq!(unescape(br"\ud83d\ude00", 1), Some(('😀', 12)));
        assert_eq!(unescape(br"\ud83d", 1), None);
        assert_eq!(unescape(br"\ud83d\u0041", 1), None);
        assert_eq!(unescape(br"\ude00", 1), None);
        assert!(unescaped_equals(br"k\u0065y", b"key"));
        assert!(unescaped_equals(br"caf\u00e9", "café".as_bytes()));
        assert!(!unescaped_equals(br"k\u0065y", b"ke"));
        assert!(!unescaped_equals(br"k\u0065", b"key"));
        assert!(!unescaped_equals(br"\ud800", b"\xed\xa0\x80"));
    }

    #[test]
    fn nesting_is_limited_like_serde_json() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let allowed = nested(NESTING_MAX);
        assert!(scan(allowed.as_bytes(), &[]).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&allowed).is_ok());
        let deep = nested(NESTING_MAX + 1);
        assert_eq!(
            scan(deep.as_bytes(), &[]),
            Err(Invalid::new(
                NESTING_MAX,
                "arrays and objects nested too deeply"
            ))
        );
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_err());
        // Far deeper input is the same error, not a stack overflow.
        assert!(scan(nested(1_000_000).as_bytes(), &[]).is_err());
    }
}
