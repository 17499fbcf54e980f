//! The admin API's view of topics and groups (what the web console
//! shows): its figures agree with what clients did and with `sluice group
//! describe`, changes take effect, bad input is a 4xx that says why.

use serde_json::Value;

use crate::processors::Pipeline;

fn json(answer: (u16, String), status: u16) -> Value {
    assert_eq!(answer.0, status, "{}", answer.1);
    serde_json::from_str(&answer.1).unwrap()
}

#[test]
fn topics_messages_and_groups_through_the_admin_api() {
    let pipeline = Pipeline::start();
    let broker = &pipeline.broker;
    let created = json(
        broker.http_json(
            "POST",
            "/v1/topics",
            r#"{"name": "orders", "partitions": 2}"#,
        ),
        201,
    );
    assert_eq!(created["partitions"], 2);
    let refused = broker.http_json("POST", "/v1/topics", r#"{"name": "bad name!"}"#);
    assert_eq!(refused.0, 400);
    assert!(refused.1.contains("invalid topic name"), "{}", refused.1);
    pipeline.produce(
        "orders",
        &[
            (Some("a"), r#"{"sku":"x1","qty":2}"#),
            (Some("a"), "plain"),
            (Some("b"), "third"),
        ],
    );

    let topics = json(broker.http_get("/v1/topics"), 200);
    let orders = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap();
    assert_eq!(orders["records"], 3, "{orders:#}");
    let topic = json(broker.http_get("/v1/topics/orders"), 200);
    let ends: i64 = topic["partition_details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_i64().unwrap())
        .sum();
    assert_eq!(ends, 3);
    assert_eq!(
        json(broker.http_get("/v1/topics/nope"), 404)["error"],
        "no topic \"nope\""
    );

    // Messages: key "a"'s partition holds both of its records, the JSON
    // one pretty-printed; `contains` finds it alone, `offset` starts later.
    let read = |path: &str| json(broker.http_get(path), 200);
    let keyed_a = |found: &Value| {
        let records = found["records"].as_array().unwrap();
        records.iter().filter(|r| r["key"] == "a").count()
    };
    let partition = (0..2)
        .find(|p| keyed_a(&read(&format!("/v1/topics/orders/messages?partition={p}"))) == 2)
        .expect("key a's partition has both its records");
    let found = read(&format!(
        "/v1/topics/orders/messages?partition={partition}&contains=sku"
    ));
    let records = found["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{found:#}");
    assert_eq!(records[0]["key"], "a");
    assert_eq!(
        records[0]["value"],
        "{\n  \"qty\": 2,\n  \"sku\": \"x1\"\n}"
    );
    let first = records[0]["offset"].as_i64().unwrap();
    let later = read(&format!(
        "/v1/topics/orders/messages?partition={partition}&offset={}",
        first + 1
    ));
    assert_eq!(later["records"][0]["value"], "plain", "{later:#}");

    // Configs.
    let changed = json(
        broker.http_json(
            "PATCH",
            "/v1/topics/orders/configs",
            r#"{"configs": {"retention.ms": "3600000"}}"#,
        ),
        200,
    );
    assert_eq!(changed["configs"]["retention.ms"], "3600000");
    let refused = broker.http_json(
        "PATCH",
        "/v1/topics/orders/configs",
        r#"{"configs": {"retention.ms": "soon"}}"#,
    );
    assert_eq!(refused.0, 400, "{}", refused.1);

    // Groups: the same lag as `sluice group describe`; a reset moves it.
    pipeline.sluice_ok(&["consume", "orders", "-g", "readers", "-n", "1"]);
    let described: Value = serde_json::from_str(
        &pipeline.sluice_ok(&["group", "describe", "readers", "--format", "json"]),
    )
    .unwrap();
    let group = json(broker.http_get("/v1/groups/readers"), 200);
    let lag: i64 = group["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["lag"].as_i64().unwrap())
        .sum();
    assert_eq!(lag, described["total_lag"].as_i64().unwrap(), "{group:#}");
    let groups = json(broker.http_get("/v1/groups"), 200);
    assert_eq!(groups["groups"][0]["lag"], lag);
    let reset = json(
        broker.http_json(
            "POST",
            "/v1/groups/readers/reset",
            r#"{"topic": "orders", "to": "earliest"}"#,
        ),
        200,
    );
    let lag: i64 = reset["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["lag"].as_i64().unwrap())
        .sum();
    assert_eq!(lag, 3);
    let refused = broker.http_json(
        "POST",
        "/v1/groups/sluice-processor-any/reset",
        r#"{"topic": "orders", "to": "earliest"}"#,
    );
    assert_eq!(refused.0, 400);

    // A processor's topics are the broker's here too.
    let refused = broker.http_request("DELETE", "/v1/topics/sluice-processor-p-changelog");
    assert_eq!(refused.0, 409, "{}", refused.1);

    // Without the token: refused.
    let (code, _) = broker.http_request_as("GET", "/v1/topics", &["Host: localhost"]);
    assert_eq!(code, 401);

    // Delete.
    json(broker.http_request("DELETE", "/v1/topics/orders"), 200);
    assert_eq!(broker.http_get("/v1/topics/orders").0, 404);
    let overview = json(broker.http_get("/v1/overview"), 200);
    assert_eq!(overview["topics"], 0, "{overview:#}");
}
