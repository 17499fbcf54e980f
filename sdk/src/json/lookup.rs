//! Reading one field out of raw JSON bytes without building the document.
//!
//! [`scan`](super::scan) validates the whole document in one pass and
//! returns the byte span of the field at the path; only that span is then
//! read: null and booleans directly, plain integers by hand, other numbers,
//! arrays and objects through serde_json, and a string borrowed from the
//! input when it has no escapes. Invalid JSON anywhere is an error naming
//! the byte offset.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::{Number, Value};

use super::scan::{self, Invalid, Scanned};
use super::Path;
use crate::{Error, Result};

/// A field read by [`find`]: scalars as they are, strings borrowed when
/// possible, arrays and objects as a [`Value`].
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string, borrowed from the input unless it had escapes.
    String(Cow<'a, str>),
    /// An array or an object.
    Compound(Value),
}

impl Field<'_> {
    /// The field as a [`Value`].
    pub fn to_value(&self) -> Value {
        match self {
            Field::Null => Value::Null,
            Field::Bool(value) => Value::Bool(*value),
            Field::Number(number) => Value::Number(number.clone()),
            Field::String(text) => Value::String(text.clone().into_owned()),
            Field::Compound(value) => value.clone(),
        }
    }

    /// The field as text: a string as itself, anything else as compact JSON.
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Field::Null => Cow::Borrowed("null"),
            Field::Bool(true) => Cow::Borrowed("true"),
            Field::Bool(false) => Cow::Borrowed("false"),
            Field::Number(number) => Cow::Owned(number.to_string()),
            Field::String(text) => Cow::Borrowed(text),
            Field::Compound(value) => Cow::Owned(value.to_string()),
        }
    }
}

/// The field at `path` in the JSON document `json`: `Ok(None)` when the
/// path leads nowhere (a missing key, an index past the end, a scalar on the
/// way). Errors when `json` is not valid JSON or not an object or array.
pub fn find<'a>(json: &'a [u8], path: &Path) -> Result<Option<Field<'a>>> {
    match scan::scan(json, path.segments()) {
        Ok(Scanned::Container(Some(span))) => read(json, span).map(Some),
        Ok(Scanned::Container(None)) => Ok(None),
        Ok(Scanned::Scalar) => Err(Error::new("the value is not a JSON object")),
        Err(invalid) => Err(invalid_json(json, invalid)),
    }
}

/// The field whose bytes are `json[span]`, a value the scan checked.
fn read(json: &[u8], span: Range<usize>) -> Result<Field<'_>> {
    let bytes = &json[span.clone()];
    match bytes.first() {
        Some(b'n') => Ok(Field::Null),
        Some(b't') => Ok(Field::Bool(true)),
        Some(b'f') => Ok(Field::Bool(false)),
        Some(b'"') => read_string(json, span).map(Field::String),
        Some(b'{' | b'[') => serde_json::from_slice(bytes)
            .map(Field::Compound)
            .map_err(|error| serde_invalid(json, span.start, &error)),
        _ => match integer(bytes) {
            Some(number) => Ok(Field::Number(number)),
            // Fractions, exponents, `-0` and integers beyond 64 bits: as
            // serde_json reads them (an error if out of range, as `1e999`).
            None => serde_json::from_slice(bytes)
                .map(Field::Number)
                .map_err(|error| serde_invalid(json, span.start, &error)),
        },
    }
}

/// A plain integer (`-?[0-9]{1,19}`) as serde_json would read it: `u64`
/// when positive, `i64` when negative; `None` for anything else, and for
/// `-0`, which serde_json reads as a float.
fn integer(bytes: &[u8]) -> Option<Number> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, bytes),
    };
    // 19 digits always fit in a u64.
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value = 0_u64;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(digit - b'0');
    }
    match (negative, value) {
        (false, value) => Some(value.into()),
        (true, 0) => None,
        (true, value) => 0_i64.checked_sub_unsigned(value).map(Number::from),
    }
}

/// The string whose quoted bytes are `json[span]`: borrowed when it has no
/// escapes; its UTF-8 and `\u` surrogate pairs checked either way.
fn read_string(json: &[u8], span: Range<usize>) -> Result<Cow<'_, str>> {
    let body_start = span.start + 1;
    let body = &json[body_start..span.end - 1];
    let utf8 = |from: usize, to: usize| {
        std::str::from_utf8(&body[from..to]).map_err(|error| {
            let offset = body_start + from + error.valid_up_to();
            Error::new(format!(
                "invalid JSON at byte {offset}: invalid UTF-8 in a string"
            ))
        })
    };
    let Some(first) = body.iter().position(|&byte| byte == b'\\') else {
        return utf8(0, body.len()).map(Cow::Borrowed);
    };
    let mut text = String::with_capacity(body.len());
    let (mut from, mut escape) = (0, Some(first));
    while let Some(at) = escape {
        text.push_str(utf8(from, at)?);
        let (decoded, next) = scan::unescape(body, at + 1).ok_or_else(|| {
            let offset = body_start + at;
            Error::new(format!(
                "invalid JSON at byte {offset}: lone surrogate in a \\u escape"
            ))
        })?;
        text.push(decoded);
        from = next;
        escape = body[from..]
            .iter()
            .position(|&byte| byte == b'\\')
            .map(|offset| from + offset);
    }
    text.push_str(utf8(from, body.len())?);
    Ok(Cow::Owned(text))
}

/// The scan's verdict as an error: `invalid JSON at byte 17: expected ',' or '}'`.
fn invalid_json(json: &[u8], invalid: Invalid) -> Error {
    let Invalid { offset, reason } = invalid;
    if offset >= json.len() {
        return Error::new(format!(
            "invalid JSON at byte {offset}: unexpected end of input ({reason})"
        ));
    }
    Error::new(format!("invalid JSON at byte {offset}: {reason}"))
}

/// A serde_json error reading the value at `start` in the same words,
/// its line and column turned into a byte offset in `json`.
#[cold]
fn serde_invalid(json: &[u8], start: usize, error: &serde_json::Error) -> Error {
    let lines_before = error.line().saturating_sub(1);
    let line_start: usize = json[start..]
        .split(|&byte| byte == b'\n')
        .take(lines_before)
        .map(|line| line.len() + 1)
        .sum();
    let offset = start + line_start + error.column().saturating_sub(1);
    let message = error.to_string();
    let reason = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(reason, _)| reason);
    Error::new(format!("invalid JSON at byte {offset}: {reason}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lookup<'a>(json: &'a str, path: &str) -> Result<Option<Field<'a>>> {
        find(json.as_bytes(), &Path::parse(path).unwrap())
    }

    #[test]
    fn finds_nested_fields_and_array_elements() {
        let doc = r#"{"skip": {"deep": [1, {"x": 2}]}, "user": {"country": "fr", "age": 42, "tags": ["a", "b"]}}"#;
        assert_eq!(
            lookup(doc, "user.country").unwrap(),
            Some(Field::String(Cow::Borrowed("fr")))
        );
        assert_eq!(
            lookup(doc, "user.age").unwrap(),
            Some(Field::Number(42.into()))
        );
        assert_eq!(
            lookup(doc, "user.tags.1").unwrap(),
            Some(Field::String("b".into()))
        );
        assert_eq!(
            lookup(doc, "user.tags").unwrap(),
            Some(Field::Compound(json!(["a", "b"])))
        );
        assert_eq!(
            lookup(doc, "skip.deep.1.x").unwrap(),
            Some(Field::Number(2.into()))
        );
    }

    #[test]
    fn missing_paths_are_none() {
        let doc = r#"{"a": {"b": 1}, "list": [1], "n": null}"#;
        for path in ["x", "a.c", "a.b.c", "list.1", "list.x", "n.y"] {
            assert_eq!(lookup(doc, path).unwrap(), None, "{path}");
        }
        assert_eq!(lookup(doc, "n").unwrap(), Some(Field::Null));
    }

    #[test]
    fn escaped_strings_and_keys() {
        let doc = r#"{"k\u0065y": "a\"b", "plain": "c"}"#;
        let found = lookup(doc, "key").unwrap().unwrap();
        assert_eq!(found, Field::String(Cow::Owned("a\"b".to_owned())));
        assert!(matches!(
            lookup(doc, "plain").unwrap(),
            Some(Field::String(Cow::Borrowed("c")))
        ));
    }

    #[test]
    fn invalid_documents_are_errors() {
        assert_eq!(
            lookup("42", "a").unwrap_err().message(),
            "the value is not a JSON object"
        );
        assert_eq!(
            lookup(r#""s""#, "a").unwrap_err().message(),
            "the value is not a JSON object"
        );
        for bad in [
            "",
            "{",
            r#"{"a": 1,}"#,
            r#"{"a": 1} x"#,
            r#"{"a": 1, "b": tru}"#,
            "nope",
        ] {
            let error = lookup(bad, "a").unwrap_err();
            assert!(
                error.message().starts_with("invalid JSON"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn duplicate_keys_take_the_last() {
        assert_eq!(
            lookup(r#"{"a": 1, "a": 2}"#, "a").unwrap(),
            Some(Field::Number(2.into()))
        );
    }

    #[test]
    fn errors_say_where_and_what() {
        let cases = [
            (
                r#"{"a": 1 "b": 2}"#,
                "invalid JSON at byte 8: expected ',' or '}'",
            ),
            (
                r#"[1, 2"#,
                "invalid JSON at byte 5: unexpected end of input (expected ',' or ']')",
            ),
            (
                r#"{"a": 01}"#,
                "invalid JSON at byte 7: expected ',' or '}'",
            ),
            (r#"{"a": 1.}"#, "invalid JSON at byte 8: expected a digit"),
            (r#"{"a": "x\q"}"#, "invalid JSON at byte 9: invalid escape"),
            (
                "{\"a\": \"\u{1}\"}",
                "invalid JSON at byte 7: control character in a string",
            ),
            (r#"{"a": [1,]}"#, "invalid JSON at byte 9: expected a value"),
            (r#"{"a" 1}"#, "invalid JSON at byte 5: expected ':'"),
            (
                r#"{1: 2}"#,
                r#"invalid JSON at byte 1: expected '"' to start a key"#,
            ),
            (
                r#"{} {}"#,
                "invalid JSON at byte 3: trailing characters after the value",
            ),
        ];
        for (document, message) in cases {
            assert_eq!(
                lookup(document, "a").unwrap_err().message(),
                message,
                "{document}"
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let error = lookup(&deep, "a").unwrap_err();
        assert_eq!(
            error.message(),
            "invalid JSON at byte 127: arrays and objects nested too deeply"
        );
    }

    #[test]
    fn only_the_field_read_is_checked_for_meaning() {
        // Invalid UTF-8, a lone surrogate and a number out of range are
        // errors in the field read, as serde_json reads them; elsewhere they
        // are skipped, as serde_json skips them (the grammar is checked).
        let mut document = br#"{"bad": "\ud800", "big": 1e999, "raw": "?", "ok": 1}"#.to_vec();
        let raw = document.iter().position(|&byte| byte == b'?').unwrap();
        document[raw] = 0xff;
        let find_in = |path: &str| find(&document, &Path::parse(path).unwrap());
        assert_eq!(find_in("ok").unwrap(), Some(Field::Number(1.into())));
        let message = |path: &str| find_in(path).unwrap_err().message().to_owned();
        assert_eq!(
            message("bad"),
            "invalid JSON at byte 9: lone surrogate in a \\u escape"
        );
        assert!(
            message("big").starts_with("invalid JSON at byte 29: number out of range"),
            "{}",
            message("big")
        );
        assert_eq!(
            message("raw"),
            format!("invalid JSON at byte {raw}: invalid UTF-8 in a string")
        );
        // A key compared with the path is not checked either.
        let keys = b"{\"\xff\": 1, \"\\udc00\": 2, \"k\": 3}";
        assert_eq!(
            find(keys, &Path::parse("k").unwrap()).unwrap(),
            Some(Field::Number(3.into()))
        );
    }

    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        for number in [
            "0",
            "-0",
            "7",
            "-7",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1.5",
            "-2.5e-3",
            "1E400",
        ] {
            let document = format!(r#"{{"n": {number}}}"#);
            let expected = serde_json::from_str::<Value>(&document)
                .ok()
                .map(|value| value["n"].clone());
            let found = lookup(&document, "n")
                .ok()
                .flatten()
                .map(|field| field.to_value());
            assert_eq!(found, expected, "{number}");
        }
    }

    #[test]
    fn a_later_duplicate_replaces_a_deeper_find() {
        let document = r#"{"a": {"b": 1}, "a": {"c": 2}, "x": [{"b": 3}]}"#;
        assert_eq!(lookup(document, "a.b").unwrap(), None);
        assert_eq!(
            lookup(document, "a.c").unwrap(),
            Some(Field::Number(2.into()))
        );
        let document = r#"{"a": [[5], 6, 7], "b": {"a": 1}}"#;
        assert_eq!(
            lookup(document, "a.0.0").unwrap(),
            Some(Field::Number(5.into()))
        );
        assert_eq!(
            lookup(document, "a.1").unwrap(),
            Some(Field::Number(6.into()))
        );
        assert_eq!(
            lookup(document, "a.2").unwrap(),
            Some(Field::Number(7.into()))
        );
        assert_eq!(lookup(document, "a.3").unwrap(), None);
        assert_eq!(
            lookup(document, "b.a").unwrap(),
            Some(Field::Number(1.into()))
        );
        assert_eq!(
            lookup(document, "a").unwrap(),
            Some(Field::Compound(json!([[5], 6, 7])))
        );
    }

    #[test]
    fn field_text() {
        assert_eq!(
            Field::Number(Number::from_f64(1.5).unwrap()).to_text(),
            "1.5"
        );
        assert_eq!(Field::String("x".into()).to_text(), "x");
        assert_eq!(Field::Bool(true).to_value(), json!(true));
    }
}
