//! The `enrich` plugin on a real broker: a stream joined with a table
//! topic (`--table users=user-profiles`). Profiles are produced to a
//! compacted topic before, between and after the clicks; each click must
//! carry the profile as it was when the click was processed, which the
//! broker guarantees by catching the table up to its topic before each
//! batch.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::processors::Pipeline;

/// Produces `key\tvalue` lines with kcat; an empty value is a tombstone
/// (`-Z`).
fn produce_nullable(pipeline: &Pipeline, topic: &str, records: &[(&str, &str)]) {
    let mut child = Command::new("kcat")
        .args(["-P", "-q", "-Z", "-K", "\t", "-X", "acks=all"])
        .args(["-X", "partitioner=murmur2_random"])
        .args(["-b", &pipeline.broker.kafka.to_string(), "-t", topic])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat");
    let mut input = String::new();
    for (key, value) in records {
        input.push_str(&format!("{key}\t{value}\n"));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "kcat produce");
}

/// The enriched clicks: (key, value) in each partition's order, then by key.
fn enriched(pipeline: &Pipeline) -> Vec<(String, Value)> {
    let mut records: Vec<(String, Value)> = pipeline
        .consume("enriched")
        .into_iter()
        .map(|record| {
            let value = serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
            (record.key.unwrap(), value)
        })
        .collect();
    // Stable: keeps each key's records in their (single-partition) order.
    records.sort_by(|a, b| a.0.cmp(&b.0));
    records
}

fn click(page: &str, n: u64) -> String {
    json!({"page": page, "n": n}).to_string()
}

#[test]
fn clicks_carry_the_profile_current_when_they_are_processed() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("clicks", 2);
    pipeline.create_topic("enriched", 2);
    pipeline.sluice_ok(&[
        "topic",
        "create",
        "user-profiles",
        "--partitions",
        "3",
        "--config",
        "cleanup.policy=compact",
    ]);
    produce_nullable(
        &pipeline,
        "user-profiles",
        &[
            ("ann", r#"{"name":"Ann","plan":"free"}"#),
            ("bob", r#"{"name":"Bob","plan":"pro"}"#),
            ("ann", r#"{"name":"Ann","plan":"team"}"#),
        ],
    );
    pipeline.deploy(
        "enrich-clicks",
        "enrich",
        &[
            "--input",
            "clicks",
            "--output",
            "enriched",
            "--table",
            "users=user-profiles",
            "--config",
            "table=users",
            "--config",
            "into=user",
        ],
    );
    let first = [
        (Some("ann"), click("/a", 1)),
        (Some("bob"), click("/b", 2)),
        (Some("cat"), click("/c", 3)),
    ];
    let first: Vec<(Option<&str>, &str)> = first.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pipeline.produce("clicks", &first);
    pipeline.wait_caught_up("enrich-clicks", 3);
    assert_eq!(
        enriched(&pipeline),
        [
            (
                "ann".to_string(),
                json!({"page": "/a", "n": 1, "user": {"name": "Ann", "plan": "team"}})
            ),
            (
                "bob".to_string(),
                json!({"page": "/b", "n": 2, "user": {"name": "Bob", "plan": "pro"}})
            ),
            ("cat".to_string(), json!({"page": "/c", "n": 3})),
        ],
        "the latest profile per user; no profile: unchanged (missing=keep)"
    );

    // An update, a new profile and a tombstone, then more clicks.
    produce_nullable(
        &pipeline,
        "user-profiles",
        &[
            ("ann", r#"{"name":"Ann","plan":"enterprise"}"#),
            ("cat", r#"{"name":"Cat","plan":"free"}"#),
            ("bob", ""),
        ],
    );
    let second = [
        (Some("ann"), click("/a2", 4)),
        (Some("bob"), click("/b2", 5)),
        (Some("cat"), click("/c2", 6)),
    ];
    let second: Vec<(Option<&str>, &str)> = second.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pipeline.produce("clicks", &second);
    pipeline.wait_caught_up("enrich-clicks", 6);
    let all = enriched(&pipeline);
    let user = |key: &str, n: u64| -> Value {
        all.iter()
            .find(|(k, v)| k == key && v["n"] == n)
            .map(|(_, v)| v["user"].clone())
            .unwrap_or_else(|| panic!("no output for {key} #{n}: {all:?}"))
    };
    assert_eq!(user("ann", 1)["plan"], "team", "earlier outputs are kept");
    assert_eq!(user("ann", 4)["plan"], "enterprise", "the update is seen");
    assert_eq!(user("cat", 6)["name"], "Cat", "a new profile is seen");
    assert_eq!(user("bob", 5), Value::Null, "the tombstone removed bob");
    assert_eq!(all.len(), 6);
    let status = pipeline.status("enrich-clicks");
    assert_eq!(status["records_out"], 6, "{status:#}");
}
