//! Unit tests: condition parsing, comparison semantics, edge cases of the
//! JSON walk, and the exported filter through the SDK's test harness.

use sluice_sdk::testing::{self, TestError};

use super::*;

fn check(pairs: &[(&str, &str)], value: &str) -> Result<bool> {
    matches(value.as_bytes(), &Condition::from_pairs(pairs).unwrap())
}

fn yes(pairs: &[(&str, &str)], value: &str) {
    assert!(
        check(pairs, value).unwrap(),
        "{pairs:?} should keep {value}"
    );
}

fn no(pairs: &[(&str, &str)], value: &str) {
    assert!(
        !check(pairs, value).unwrap(),
        "{pairs:?} should drop {value}"
    );
}

const ORDER: &str = r#"{"id": 7, "user": {"country": "fr", "tags": ["vip", "new"]}, "amount": 12.5, "paid": true, "note": null}"#;

#[test]
fn equals_strings_numbers_bools_and_null() {
    yes(&[("field", "user.country"), ("equals", "fr")], ORDER);
    yes(&[("field", "user.country"), ("equals", "\"fr\"")], ORDER);
    no(&[("field", "user.country"), ("equals", "FR")], ORDER);
    yes(&[("field", "id"), ("equals", "7")], ORDER);
    yes(&[("field", "id"), ("equals", "7.0")], ORDER);
    no(&[("field", "id"), ("equals", "\"7\"")], ORDER);
    yes(&[("field", "paid"), ("equals", "true")], ORDER);
    yes(&[("field", "note"), ("equals", "null")], ORDER);
    yes(
        &[("field", "user.tags"), ("equals", r#"["vip","new"]"#)],
        ORDER,
    );
}

#[test]
fn nested_paths_and_array_indexes() {
    yes(&[("field", "user.tags.0"), ("equals", "vip")], ORDER);
    yes(&[("field", "user.tags.1"), ("equals", "new")], ORDER);
    no(&[("field", "user.tags.2"), ("exists", "true")], ORDER);
    yes(
        &[("field", "a.b.0.c"), ("equals", "1")],
        r#"{"a": {"b": [{"c": 1}]}}"#,
    );
}

#[test]
fn missing_fields() {
    no(&[("field", "user.city"), ("equals", "paris")], ORDER);
    yes(&[("field", "user.city"), ("not_equals", "paris")], ORDER);
    no(&[("field", "user.country"), ("not_equals", "fr")], ORDER);
    yes(&[("field", "user.city"), ("exists", "false")], ORDER);
    yes(&[("field", "note"), ("exists", "true")], ORDER);
    no(&[("field", "id.x"), ("exists", "true")], ORDER);
    no(&[("field", "missing"), ("gt", "1")], ORDER);
}

#[test]
fn ordering_numbers_and_strings() {
    yes(&[("field", "amount"), ("gt", "12")], ORDER);
    no(&[("field", "amount"), ("gt", "12.5")], ORDER);
    yes(&[("field", "amount"), ("gte", "12.5")], ORDER);
    yes(&[("field", "id"), ("lt", "7.5")], ORDER);
    yes(&[("field", "id"), ("lte", "7")], ORDER);
    no(&[("field", "id"), ("lt", "-1")], ORDER);
    yes(
        &[("field", "big"), ("gt", "-1")],
        r#"{"big": 18446744073709551615}"#,
    );
    yes(
        &[("field", "big"), ("gt", "9007199254740992")],
        r#"{"big": 9007199254740993}"#,
    );
    yes(
        &[("field", "day"), ("gte", "2024-01-01")],
        r#"{"day": "2024-03-01"}"#,
    );
    no(&[("field", "user.country"), ("gt", "1")], ORDER);
}

#[test]
fn contains_and_in() {
    yes(&[("field", "user.country"), ("contains", "r")], ORDER);
    no(&[("field", "user.country"), ("contains", "x")], ORDER);
    no(&[("field", "id"), ("contains", "7")], ORDER);
    yes(&[("field", "n"), ("contains", "12")], r#"{"n": "a12b"}"#);
    yes(
        &[("field", "user.country"), ("in", r#"["de","fr"]"#)],
        ORDER,
    );
    yes(&[("field", "user.country"), ("in", "de, fr")], ORDER);
    yes(&[("field", "id"), ("in", "[1, 7.0]")], ORDER);
    no(&[("field", "id"), ("in", r#"["7"]"#)], ORDER);
}

#[test]
fn escaped_strings_match_their_text() {
    yes(
        &[("field", "name"), ("equals", "café \"x\"")],
        r#"{"name": "caf\u00e9 \"x\""}"#,
    );
    yes(
        &[("field", "k.y"), ("equals", "1")],
        r#"{"\u006b": {"y": 1}}"#,
    );
}

#[test]
fn invalid_values_fail_or_drop() {
    let strict = [("field", "a"), ("equals", "1")];
    for bad in [
        "[1",
        "not json",
        "",
        "42",
        "\"text\"",
        r#"{"a": 1} trailing"#,
        r#"{"a": 1, "b": }"#,
    ] {
        assert!(check(&strict, bad).is_err(), "{bad}");
    }
    assert_eq!(
        check(&strict, "7").unwrap_err().message(),
        "the value is not a JSON object"
    );
    let lenient = [("field", "a"), ("equals", "1"), ("invalid", "drop")];
    assert!(!check(&lenient, "[1").unwrap());
    let condition = Condition::from_pairs(&lenient).unwrap();
    assert!(!keep(&Record::tombstone(), &condition).unwrap());
    let condition = Condition::from_pairs(&strict).unwrap();
    assert!(keep(&Record::tombstone(), &condition)
        .unwrap_err()
        .message()
        .contains("tombstone"));
}

#[test]
fn config_needs_exactly_one_test() {
    let error = Condition::from_pairs(&[("field", "a")]).unwrap_err();
    assert!(error.message().contains("exactly one"), "{error}");
    let error = Condition::from_pairs(&[("field", "a"), ("equals", "1"), ("gt", "0")]).unwrap_err();
    assert!(error.message().contains("got equals, gt"), "{error}");
    let error = Condition::from_pairs(&[("field", "a"), ("gt", "true")]).unwrap_err();
    assert!(error.message().contains("number or a string"), "{error}");
    let error = Condition::from_pairs(&[("field", "a"), ("equal", "1")]).unwrap_err();
    assert!(error.message().contains("unknown field `equal`"), "{error}");
    let error = Condition::from_pairs(&[("field", "a"), ("exists", "maybe")]).unwrap_err();
    assert!(error.message().contains("key `exists`"), "{error}");
    let error = Condition::from_pairs(&[("field", "a"), ("exists", "true"), ("invalid", "skip")])
        .unwrap_err();
    assert!(error.message().contains("key `invalid`"), "{error}");
}

#[test]
fn the_exported_filter_forwards_matches_and_names_bad_records() {
    let config = [("field", "user.country"), ("equals", "fr")];
    let records = testing::records(&[
        r#"{"user":{"country":"fr"}}"#,
        r#"{"user":{"country":"de"}}"#,
        r#"{"user":{"country":"fr"}}"#,
    ]);
    let outputs = testing::run_filter(keep, &config, records).unwrap();
    let sources: Vec<_> = outputs.iter().map(|output| output.source).collect();
    assert_eq!(sources, [0, 2]);
    assert!(outputs.iter().all(|output| output.forwarded));

    let records = testing::records(&[r#"{"user":{"country":"fr"}}"#, "oops"]);
    match testing::run_filter(keep, &config, records) {
        Err(TestError::Process(error)) => {
            assert_eq!(error.source, Some(1));
            assert!(
                error.message.starts_with("invalid JSON"),
                "{}",
                error.message
            );
        }
        other => panic!("expected a process error, got {other:?}"),
    }
}
