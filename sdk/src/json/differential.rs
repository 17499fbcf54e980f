//! Differential test of [`find`] against serde_json, the behaviour it
//! replaces: many generated documents (nesting, escapes, `\u` escapes and
//! surrogate pairs, numbers of every shape, duplicate keys, whitespace), the
//! same documents with bytes mutated (mostly invalid), and several paths for
//! each.
//!
//! The reference is `serde_json::from_slice::<Value>` walked with
//! [`Path::get`]. It also rejects what `find` only checks in the field it
//! reads (a lone surrogate or a number out of range elsewhere); for those
//! documents the grammar is checked against `IgnoredAny`, which skips values
//! the way `find` does. Mutations keep the text valid UTF-8, since serde_json
//! checks UTF-8 in every string and `find` only in the one it reads (a unit
//! test in `lookup` covers that difference).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::de::IgnoredAny;
use serde_json::Value;

use super::scan::{self, Scanned};
use super::{find, Field, Path};

/// xorshift64*: deterministic, good enough to pick shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Few keys, so objects often repeat one; some need escapes.
const KEYS: [&str; 12] = [
    "a", "b", "id", "user", "key", "0", "1", "é", "x y", "q\"", "tab\t", "😀",
];

/// Pieces of string values.
const TEXT: [&str; 16] = [
    "a",
    "b",
    "z",
    " ",
    "é",
    "€",
    "😀",
    "\"",
    "\\",
    "/",
    "\n",
    "\t",
    "\u{1}",
    "\u{1f}",
    "\u{7f}",
    "xyzxyzxyzxyz",
];

/// Numbers whose reading has an edge: signs, zeros, 64-bit limits, values
/// only a float holds, exponents.
const NUMBERS: [&str; 22] = [
    "0",
    "-0",
    "-0.0",
    "0.5",
    "1e5",
    "1E+2",
    "2.5e-3",
    "-1.25E10",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "9223372036854775807",
    "9999999999999999999",
    "12345678901234567890",
    "-9999999999999999999",
    "0.1",
    "1.7976931348623157e308",
    "5e-324",
    "123456789012345678901234567890",
    "1.000000000000000000001",
    "-12",
];

/// What mutations insert or put in place of a character.
const MUTANTS: [&str; 22] = [
    "{", "}", "[", "]", ",", ":", "\"", "\\", " ", "0", "-", ".", "e", "1", "t", "n", "\u{1}", "x",
    "é", "\\u", "/", "\\ud800",
];

/// Writes random JSON documents (valid, and valid UTF-8).
struct Generator {
    rng: Rng,
    out: String,
}

impl Generator {
    fn space(&mut self) {
        if self.rng.chance(25) {
            let space = *self.rng.pick(&[" ", "\n", "\t", "\r", "  \r\n "]);
            self.out.push_str(space);
        }
    }

    fn document(&mut self) {
        self.out.clear();
        self.space();
        match self.rng.below(20) {
            0 => self.scalar(),
            1..=5 => self.array(0),
            _ => self.object(0),
        }
        self.space();
    }

    fn value(&mut self, depth: usize) {
        match self.rng.below(if depth < 5 { 8 } else { 5 }) {
            0..=4 => self.scalar(),
            5 => self.array(depth + 1),
            _ => self.object(depth + 1),
        }
    }

    fn scalar(&mut self) {
        match self.rng.below(6) {
            0 | 1 => {
                let text: String = (0..self.rng.below(6))
                    .map(|_| *self.rng.pick(&TEXT))
                    .collect();
                self.string(&text);
            }
            2 | 3 => self.number(),
            _ => {
                let literal = *self.rng.pick(&["true", "false", "null"]);
                self.out.push_str(literal);
            }
        }
    }

    fn number(&mut self) {
        if self.rng.chance(40) {
            let number = *self.rng.pick(&NUMBERS);
            self.out.push_str(number);
            return;
        }
        if self.rng.chance(30) {
            self.out.push('-');
        }
        let digits = 1 + self.rng.below(22);
        for index in 0..digits {
            let lowest = if index == 0 && digits > 1 { 1 } else { 0 };
            let digit = lowest + self.rng.below(10 - lowest);
            self.out.push(char::from(b'0' + digit as u8));
        }
        if self.rng.chance(30) {
            let _ = write!(self.out, ".{}", self.rng.next() % 100_000);
        }
        if self.rng.chance(20) {
            let e = *self.rng.pick(&["e", "E", "e+", "e-", "E-"]);
            let _ = write!(self.out, "{e}{}", self.rng.below(40));
        }
    }

    fn array(&mut self, depth: usize) {
        self.out.push('[');
        self.space();
        for index in 0..self.rng.below(5) {
            if index > 0 {
                self.out.push(',');
                self.space();
            }
            self.value(depth);
            self.space();
        }
        self.out.push(']');
    }

    fn object(&mut self, depth: usize) {
        self.out.push('{');
        self.space();
        for index in 0..self.rng.below(6) {
            if index > 0 {
                self.out.push(',');
                self.space();
            }
            let key = *self.rng.pick(&KEYS);
            self.string(key);
            self.space();
            self.out.push(':');
            self.space();
            self.value(depth);
            self.space();
        }
        self.out.push('}');
    }

    /// `text` as a JSON string, each character escaped at random where it
    /// need not be; now and then a lone surrogate, which only reading the
    /// string rejects.
    fn string(&mut self, text: &str) {
        self.out.push('"');
        for character in text.chars() {
            let short = match character {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '\n' => Some("\\n"),
                '\t' => Some("\\t"),
                '/' if self.rng.chance(50) => Some("\\/"),
                _ => None,
            };
            if let Some(short) = short {
                self.out.push_str(short);
            } else if character < ' ' || self.rng.chance(15) {
                let mut units = [0; 2];
                for unit in character.encode_utf16(&mut units) {
                    let _ = if self.rng.chance(50) {
                        write!(self.out, "\\u{unit:04x}")
                    } else {
                        write!(self.out, "\\u{unit:04X}")
                    };
                }
            } else {
                self.out.push(character);
            }
        }
        if self.rng.chance(1) {
            self.out.push_str("\\ud800");
        }
        self.out.push('"');
    }
}

/// Paths into `value`: mostly along what is there, sometimes off it.
fn paths(rng: &mut Rng, value: &Value) -> Vec<String> {
    (0..4)
        .map(|_| {
            let mut segments = Vec::new();
            let mut current = Some(value);
            for _ in 0..=rng.below(4) {
                let segment = match current {
                    Some(Value::Object(object)) if !object.is_empty() && rng.chance(85) => {
                        let key = object.keys().nth(rng.below(object.len())).unwrap();
                        key.clone()
                    }
                    Some(Value::Array(array)) if !array.is_empty() && rng.chance(85) => {
                        rng.below(array.len()).to_string()
                    }
                    _ if rng.chance(50) => rng.below(6).to_string(),
                    _ => rng.pick(&KEYS).to_string(),
                };
                current = current.and_then(|value| super::get(value, &segment));
                segments.push(segment);
            }
            segments.join(".")
        })
        .collect()
}

/// `document` changed at one character: deleted, replaced, inserted
/// before, or cut there. Stays valid UTF-8.
fn mutate(rng: &mut Rng, document: &str) -> String {
    let boundaries: Vec<usize> = document
        .char_indices()
        .map(|(index, _)| index)
        .chain([document.len()])
        .collect();
    let at = *rng.pick(&boundaries);
    let next = document[at..]
        .chars()
        .next()
        .map_or(at, |character| at + character.len_utf8());
    let mutant = *rng.pick(&MUTANTS);
    match rng.below(4) {
        0 => format!("{}{}", &document[..at], &document[next..]),
        1 => format!("{}{mutant}{}", &document[..at], &document[next..]),
        2 => format!("{}{mutant}{}", &document[..at], &document[at..]),
        _ => document[..at].to_owned(),
    }
}

#[derive(Debug, Default)]
struct Tally {
    found: usize,
    missing: usize,
    scalar: usize,
    invalid: usize,
    invalid_elsewhere: usize,
}

/// `find(document, path)` against the reference.
fn check(document: &str, path: &str, tally: &mut Tally) {
    let bytes = document.as_bytes();
    let parsed = Path::parse(path).unwrap();
    let ours = find(bytes, &parsed);
    let context = || format!("document {document:?}, path {path:?}, found {ours:?}");
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => {
            let found = ours.as_ref().unwrap_or_else(|_| panic!("{}", context()));
            let expected = parsed.get(&value);
            assert_eq!(
                found.as_ref().map(Field::to_value).as_ref(),
                expected,
                "{}",
                context()
            );
            if let Ok(Scanned::Container(Some(span))) = scan::scan(bytes, parsed.segments()) {
                let raw = &bytes[span];
                if raw[0] == b'"' && !raw.contains(&b'\\') {
                    let borrowed = matches!(found, Some(Field::String(Cow::Borrowed(_))));
                    assert!(borrowed, "{}", context());
                }
            }
            match found {
                Some(_) => tally.found += 1,
                None => tally.missing += 1,
            }
        }
        Ok(_) => {
            let error = ours.as_ref().unwrap_err();
            assert_eq!(
                error.message(),
                "the value is not a JSON object",
                "{}",
                context()
            );
            tally.scalar += 1;
        }
        Err(_) if serde_json::from_slice::<IgnoredAny>(bytes).is_err() => {
            let error = ours.as_ref().expect_err(&context());
            assert!(
                error.message().starts_with("invalid JSON at byte "),
                "{}",
                context()
            );
            tally.invalid += 1;
        }
        Err(_) => {
            // Valid grammar, but a string or number in it does not read:
            // an error only if it is in the field found.
            assert!(
                scan::scan(bytes, parsed.segments()).is_ok(),
                "{}",
                context()
            );
            if let Err(error) = &ours {
                let message = error.message();
                let expected = message.starts_with("invalid JSON at byte ")
                    || message == "the value is not a JSON object";
                assert!(expected, "{}", context());
            }
            tally.invalid_elsewhere += 1;
        }
    }
}

#[test]
fn find_agrees_with_serde_json() {
    let mut generator = Generator {
        rng: Rng(0x5eed_1234_abcd_0042),
        out: String::new(),
    };
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let mut tally = Tally::default();
    for _ in 0..4_000 {
        generator.document();
        let document = generator.out.clone();
        let value = serde_json::from_str(&document).unwrap_or(Value::Null);
        let paths = paths(&mut rng, &value);
        for path in &paths {
            check(&document, path, &mut tally);
        }
        for _ in 0..6 {
            let mutated = mutate(&mut rng, &document);
            for path in &paths {
                check(&mutated, path, &mut tally);
            }
        }
    }
    // Every outcome is well represented, or the test proves little.
    assert!(tally.found > 5_000, "{tally:?}");
    assert!(tally.missing > 10_000, "{tally:?}");
    assert!(tally.invalid > 30_000, "{tally:?}");
    assert!(tally.scalar > 1_000, "{tally:?}");
    assert!(tally.invalid_elsewhere > 1_000, "{tally:?}");
}

/// Strings, keys and numbers of every length up to 34, near the end of the
/// input or not, with a special byte at every place: the word-at-a-time
/// code has edges at 8 and 16 bytes and at the input's last 8.
#[test]
fn every_length_and_every_place() {
    let mut tally = Tally::default();
    for length in 0..34 {
        let plain: String = (0..length)
            .map(|index| char::from(b'a' + (index % 26) as u8))
            .collect();
        let mut texts = vec![plain.clone()];
        for place in 0..length {
            for special in ["\"", "\\\\", "\\n", "\\u00e9", "\u{1}", "é", "\\"] {
                let mut text = plain.clone();
                text.replace_range(place..place + 1, special);
                texts.push(text);
            }
        }
        let paths: Vec<&str> = ["k", "a", "0", plain.as_str()]
            .into_iter()
            .filter(|path| !path.is_empty())
            .collect();
        for text in &texts {
            for document in [
                format!(r#"["{text}"]"#),
                format!(r#"{{"k":"{text}"}}"#),
                format!(r#"{{"{text}":1}}"#),
                format!(r#"{{"{text}":1,"a":"{text}"}}"#),
                format!(r#""{text}""#),
                format!(r#"["{text}"#),
            ] {
                for path in &paths {
                    check(&document, path, &mut tally);
                }
            }
        }
        let digits: String = (0..=length)
            .map(|index| char::from(b'1' + (index % 9) as u8))
            .collect();
        for number in [
            digits.clone(),
            format!("-{digits}"),
            format!("{digits}.{digits}"),
            format!("-0.{digits}e-{}", length % 7),
            format!("{digits}E+{digits}"),
            format!("0{digits}"),
            format!("{digits}."),
            format!("{digits}e"),
        ] {
            for document in [
                format!(r#"{{"k":{number}}}"#),
                format!("[{number}]"),
                format!("[{number}"),
                number.clone(),
            ] {
                check(&document, "k", &mut tally);
                check(&document, "0", &mut tally);
            }
        }
    }
    assert!(tally.found > 5_000, "{tally:?}");
    assert!(tally.invalid > 20_000, "{tally:?}");
}

/// Arbitrary bytes, valid UTF-8 or not, drawn mostly from JSON's own
/// alphabet so the scanner gets deep into them: `find` answers every one
/// (a field, nothing, or an error) without panicking. In a plugin a panic
/// is a trap, which would replace the clear "invalid JSON at byte N".
#[test]
fn arbitrary_bytes_never_panic() {
    const ALPHABET: &[u8] = b"{}[]:,\"\\ \t\n0123456789-+.eEtrufalsn/bu\xc3\xa9\xff\x00\x1f";
    let mut rng = Rng(0x000d_db17_e50f_f00d);
    let paths: Vec<Path> = ["a", "a.b", "0", "a.0.b", "\u{e9}"]
        .iter()
        .map(|path| Path::parse(path).unwrap())
        .collect();
    let mut document = Vec::new();
    for _ in 0..100_000 {
        document.clear();
        let prefix = rng.below(3);
        document.extend_from_slice([b"{\"a\":".as_slice(), b"[", b""][prefix]);
        for _ in 0..rng.below(48) {
            let byte = if rng.chance(90) {
                ALPHABET[rng.below(ALPHABET.len())]
            } else {
                rng.next() as u8
            };
            document.push(byte);
        }
        for path in &paths {
            let _ = find(&document, path);
        }
    }
}
