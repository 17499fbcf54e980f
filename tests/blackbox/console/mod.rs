//! The web console in a real browser (headless Chromium through
//! `webdriver`) against a real `sluice serve`: every page loads and shows
//! the figures the admin API gives (a topic's high watermark, a group's
//! lag, a processor's records in), the message browser finds records,
//! a processor is paused, resumed and deployed from the page, and bad
//! input shows the API's own message. Screenshots of the main pages are
//! kept in `target/console-screenshots/`.

mod webdriver;

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::plugins::{target_dir, wasm};
use crate::processors::Pipeline;
use webdriver::Browser;

fn api(pipeline: &Pipeline, path: &str) -> Value {
    let (status, body) = pipeline.broker.http_get(path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A figure as the page prints it (`1,234`).
fn shown(value: &Value) -> String {
    let digits = value.as_i64().unwrap().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn screenshots() -> PathBuf {
    let dir = target_dir().join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A JavaScript expression: the text of the `data-field` cell named
/// `field` under `scope`.
fn field(scope: &str, field: &str) -> String {
    format!("document.querySelector('{scope} [data-field={field}]').innerText")
}

fn wait_shown(browser: &Browser, what: &str, scope: &str, name: &str, value: &Value) {
    let expected = shown(value);
    let expression = format!("{} === {}", field(scope, name), json!(expected));
    browser.wait(&format!("{what} = {expected}"), &expression);
}

/// Topics, a group, a processor with its counters, records to browse.
fn scenario() -> Pipeline {
    let pipeline = Pipeline::start();
    pipeline.create_topic("words", 2);
    pipeline.create_topic("shout", 1);
    pipeline.create_topic("shout-again", 1);
    let mut records: Vec<(Option<&str>, String)> = (0..30)
        .map(|i| {
            (
                Some(if i % 2 == 0 { "even" } else { "odd" }),
                format!("word {i}"),
            )
        })
        .collect();
    records.push((Some("even"), r#"{"needle":"haystack","n":1}"#.to_string()));
    let records: Vec<(Option<&str>, &str)> =
        records.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pipeline.produce("words", &records);
    pipeline.deploy(
        "shouter",
        "uppercase",
        &["--input", "words", "--output", "shout"],
    );
    pipeline.wait_caught_up("shouter", 31);
    // A stateful one: a count per key and minute.
    pipeline.create_topic("counts", 2);
    crate::stateful::deploy_window_count(&pipeline, "counter", ("words", "counts"), 60_000, &[]);
    pipeline.wait_caught_up("counter", 31);
    pipeline.sluice_ok(&[
        "consume", "words", "-g", "readers", "-n", "5", "--from", "earliest",
    ]);
    for topic in ["payments", "payments-out", "bad-payments"] {
        pipeline.create_topic(topic, 1);
    }
    pipeline.produce("payments", &[(None, "a"), (None, "boom"), (None, "c")]);
    let on_error = ["--on-error", "dead-letter=bad-payments"];
    let io = ["--input", "payments", "--output", "payments-out"];
    pipeline.deploy("checker", "fault-error", &[&io[..], &on_error[..]].concat());
    pipeline.wait_caught_up("checker", 3);
    pipeline
}

#[test]
fn the_console_shows_the_brokers_state_and_drives_it() {
    let pipeline = scenario();
    let broker = &pipeline.broker;
    let shots = screenshots();
    let base = format!("http://127.0.0.1:{}/", broker.http.port());

    // The page needs no token and holds no data; the API still does.
    let (status, page) = broker.http_request_as("GET", "/", &["Host: localhost"]);
    assert_eq!(status, 200);
    assert!(page.contains("/console/core.js"), "{page}");
    // A link to the console followed from another site opens it.
    let followed = ["Host: localhost", "Sec-Fetch-Site: cross-site"];
    assert_eq!(
        broker
            .http_request_as("GET", "/console/core.js", &followed)
            .0,
        200
    );
    let (status, _) = broker.http_request_as("GET", "/v1/topics", &followed);
    assert_eq!(status, 403);
    let (status, _) = broker.http_request_as("GET", "/v1/overview", &["Host: localhost"]);
    assert_eq!(status, 401);

    let browser = Browser::start();
    // Without a token: the page asks for one.
    browser.goto(&base);
    browser.wait("the token form", "document.getElementById('token-input')");
    // The link `sluice console` prints: the token in the fragment.
    let link = pipeline.sluice_ok(&["console"]);
    assert_eq!(link.trim(), format!("{base}#token={}", broker.token));
    browser.goto(link.trim());
    browser.wait("the overview", "location.hash === '#/overview'");
    let overview = api(&pipeline, "/v1/overview");
    wait_shown(
        &browser,
        "records in",
        "#overview-cards",
        "records_in",
        &overview["records_in"],
    );
    wait_shown(
        &browser,
        "topics",
        "#overview-cards",
        "topics",
        &overview["topics"],
    );
    browser.wait(
        "a plotted throughput line",
        "document.querySelector('[data-chart=records-rate] polyline')",
    );
    browser.screenshot(&shots.join("overview.png"));

    // Topics and a topic's partitions: the broker's high watermarks.
    browser.goto(&format!("{base}#/topics"));
    browser.wait(
        "the topics table",
        "document.querySelector('tr[data-topic=words]')",
    );
    browser.screenshot(&shots.join("topics.png"));
    browser.goto(&format!("{base}#/topics/words"));
    let topic = api(&pipeline, "/v1/topics/words");
    for partition in topic["partition_details"].as_array().unwrap() {
        let scope = format!("tr[data-partition=\"{}\"]", partition["partition"]);
        wait_shown(
            &browser,
            "high watermark",
            &scope,
            "high_watermark",
            &partition["high_watermark"],
        );
    }
    // The message browser: partition 0's records; then a filter.
    let end0 = topic["partition_details"][0]["high_watermark"]
        .as_i64()
        .unwrap();
    browser.wait(
        "partition 0's records",
        &format!("document.querySelectorAll('#topic-messages tr.message').length === {end0}"),
    );
    let holder = (0..2)
        .find(|p| {
            let page = api(
                &pipeline,
                &format!("/v1/topics/words/messages?partition={p}&contains=needle"),
            );
            !page["records"].as_array().unwrap().is_empty()
        })
        .unwrap();
    browser.script(
        "const f = document.querySelector('.messages-form'); f.partition.value = arguments[0];",
        json!([holder.to_string()]),
    );
    browser.type_into(".messages-form input[name=contains]", "needle");
    browser.click(".messages-form button[type=submit]");
    browser.wait(
        "the one record holding needle",
        "document.querySelectorAll('#topic-messages tr.message').length === 1",
    );
    let value = browser.text("#topic-messages tr.message pre.value");
    assert_eq!(
        value, "{\n  \"n\": 1,\n  \"needle\": \"haystack\"\n}",
        "pretty-printed JSON"
    );
    browser.screenshot(&shots.join("topic.png"));

    // A group: the broker's lag; then a reset from the page.
    let groups = api(&pipeline, "/v1/groups");
    let readers = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "readers");
    let lag = readers.unwrap()["lag"].as_i64().unwrap();
    assert!(lag > 0, "{groups:#}");
    browser.goto(&format!("{base}#/groups"));
    wait_shown(
        &browser,
        "group lag",
        "tr[data-group=readers]",
        "lag",
        &json!(lag),
    );
    browser.goto(&format!("{base}#/groups/readers"));
    wait_shown(&browser, "group lag", "#group-cards", "lag", &json!(lag));
    browser.wait(
        "the lag plot",
        "document.querySelector('[data-chart=group-lag] polyline')",
    );
    browser.screenshot(&shots.join("group.png"));
    browser.script(
        "document.querySelector('#reset-group').to.value = 'latest';",
        json!([]),
    );
    browser.click("#reset-group button[type=submit]");
    wait_shown(
        &browser,
        "lag after the reset",
        "#group-cards",
        "lag",
        &json!(0),
    );
    let group = api(&pipeline, "/v1/groups/readers");
    assert!(
        group["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["lag"] == 0),
        "{group:#}"
    );

    // A stateful processor's state per partition, as the API counts it.
    browser.goto(&format!("{base}#/processors/counter"));
    let counter = pipeline.status("counter");
    let mut keys = 0;
    for partition in counter["partitions"].as_array().unwrap() {
        let scope = format!(
            "tr[data-state-partition=\"words/{}\"]",
            partition["partition"]
        );
        let stateful = &partition["stateful"];
        wait_shown(&browser, "state keys", &scope, "keys", &stateful["keys"]);
        wait_shown(
            &browser,
            "open windows",
            &scope,
            "open_windows",
            &stateful["open_windows"],
        );
        wait_shown(
            &browser,
            "timers",
            &scope,
            "timers_pending",
            &stateful["timers_pending"],
        );
        keys += stateful["keys"].as_u64().unwrap();
        // The SDK's windows: one store entry per key's window.
        assert_eq!(stateful["open_windows"], stateful["keys"], "{counter:#}");
    }
    assert!(keys >= 2, "a window per key at least: {counter:#}");
    browser.screenshot(&shots.join("stateful-processor.png"));

    // A processor: records in as the API says; pause and resume.
    browser.goto(&format!("{base}#/processors/shouter"));
    let status = pipeline.status("shouter");
    wait_shown(
        &browser,
        "records in",
        "#processor-cards",
        "records_in",
        &status["records_in"],
    );
    browser.click("#pause");
    pipeline.wait_for("shouter", "paused", |s| s["state"] == "paused");
    browser.wait(
        "paused on the page",
        &format!("{} === 'paused'", field("#processor-cards", "state")),
    );
    browser.click("#resume");
    pipeline.wait_for("shouter", "running", |s| s["state"] == "running");
    browser.wait(
        "running on the page",
        &format!("{} === 'running'", field("#processor-cards", "state")),
    );
    browser.screenshot(&shots.join("processor.png"));

    // Deploy a plugin from the page: the .wasm and its spec.
    browser.goto(&format!("{base}#/processors"));
    browser.wait(
        "the processors table",
        "document.querySelector('tr[data-processor=shouter]')",
    );
    browser.type_into("#deploy input[name=name]", "shouter-again");
    browser.type_into(
        "#deploy input[name=wasm]",
        wasm("uppercase").to_str().unwrap(),
    );
    browser.type_into("#deploy input[name=inputs]", "words");
    browser.type_into("#deploy input[name=outputs]", "shout-again");
    browser.type_into("#deploy input[name=on_error]", "skip");
    browser.screenshot(&shots.join("processors.png"));
    browser.click("#deploy button[type=submit]");
    browser.wait(
        "the new processor's page",
        "location.hash === '#/processors/shouter-again'",
    );
    let deployed = pipeline.wait_caught_up("shouter-again", 31);
    assert_eq!(deployed["inputs"], json!(["words"]));
    assert_eq!(deployed["on_error"], "skip");
    wait_shown(
        &browser,
        "records in",
        "#processor-cards",
        "records_in",
        &deployed["records_in"],
    );

    // A failed record: its coordinates link to it; the dead letters.
    browser.goto(&format!("{base}#/processors/checker"));
    let error = browser.wait(
        "the last error",
        "document.getElementById('processor-error').innerText",
    );
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("rejected offset 1 at payments/0 offset 1"),
        "{error}"
    );
    browser.wait(
        "the dead letter",
        "document.querySelector('#dead-letters tr.message pre.value').innerText === 'boom'",
    );
    browser.click("#processor-error a");
    browser.wait(
        "the offending record",
        "document.querySelector('#topic-messages tr.message').dataset.offset === '1'",
    );
    assert_eq!(browser.text("#topic-messages tr.message pre.value"), "boom");

    topic_lifecycle_and_errors(&pipeline, &browser, &base);
    // Everything ran within the page's content security policy.
    assert_eq!(browser.script("return Console.violations;", json!([])), 0);
}

/// Waits for the page's banner to show an error holding `needle`.
fn assert_refused(browser: &Browser, needle: &str) {
    let banner = "document.getElementById('banner')";
    let shown = browser.wait(
        &format!("an error about {needle}"),
        &format!("!{banner}.hidden && !{banner}.classList.contains('ok') && {banner}.innerText"),
    );
    assert!(shown.as_str().unwrap().contains(needle), "{shown}");
}

/// Create a topic, set a config, delete it; bad input shows the API's
/// message, never a blank page.
fn topic_lifecycle_and_errors(pipeline: &Pipeline, browser: &Browser, base: &str) {
    browser.goto(&format!("{base}#/topics/nope"));
    let error = browser.wait(
        "the error",
        "document.getElementById('page-error').innerText",
    );
    assert_eq!(error, "no topic \"nope\"");

    browser.goto(&format!("{base}#/topics"));
    browser.wait("the create form", "document.querySelector('#create-topic')");
    browser.submit("#create-topic", &[("name", "bad name!")]);
    assert_refused(browser, "invalid topic name");

    browser.submit(
        "#create-topic",
        &[("name", "made-here"), ("partitions", "3")],
    );
    browser.wait(
        "the new topic's page",
        "location.hash === '#/topics/made-here'",
    );
    assert_eq!(api(pipeline, "/v1/topics/made-here")["partitions"], 3);
    browser.wait("the config form", "document.querySelector('#set-config')");
    browser.submit(
        "#set-config",
        &[("key", "retention.ms"), ("value", "60000")],
    );
    browser.wait(
        "the override",
        "document.querySelector('tr[data-config=\"retention.ms\"]')",
    );
    assert_eq!(
        api(pipeline, "/v1/topics/made-here")["configs"]["retention.ms"],
        "60000"
    );
    browser.submit("#set-config", &[("value", "soon")]);
    assert_refused(browser, "retention.ms");

    browser.click("#delete-topic");
    browser.accept_dialog();
    browser.wait("the topics list", "location.hash === '#/topics'");
    assert_eq!(pipeline.broker.http_get("/v1/topics/made-here").0, 404);
}

/// The message browser's "from time": `from_ms` starts at the first record
/// at or after that time.
#[test]
fn messages_from_a_time() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("timed", 1);
    pipeline.produce("timed", &[(None, "early"), (None, "early too")]);
    std::thread::sleep(std::time::Duration::from_millis(50));
    pipeline.produce("timed", &[(None, "late")]);
    let late = api(&pipeline, "/v1/topics/timed/messages?contains=late");
    let record = &late["records"][0];
    assert_eq!(record["offset"], 2, "{late:#}");
    let time_ms = record["timestamp"].as_i64().unwrap();
    let from = api(
        &pipeline,
        &format!("/v1/topics/timed/messages?from_ms={time_ms}"),
    );
    assert_eq!(from["from"], 2, "{from:#}");
    assert_eq!(from["records"][0]["value"], "late");
    let all = api(&pipeline, "/v1/topics/timed/messages?from_ms=0");
    assert_eq!(all["records"].as_array().unwrap().len(), 3, "{all:#}");
    let none = api(
        &pipeline,
        &format!("/v1/topics/timed/messages?from_ms={}", time_ms + 60_000),
    );
    assert_eq!(none["records"], json!([]), "{none:#}");
}
