//! `GET /metrics`: parsed by the Prometheus project's own OpenMetrics
//! parser (Python's prometheus_client), and checked against traffic the
//! test made and the broker's own answers (`sluice group describe`, a
//! processor's status).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::processors::Pipeline;

/// The samples of one scrape, by name, each with its labels.
pub(crate) struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Scrapes `pipeline`'s broker without the admin token (Prometheus
    /// does not send it) and parses the answer.
    pub(crate) fn of(pipeline: &Pipeline) -> Self {
        let (code, text) = pipeline
            .broker
            .http_request_as("GET", "/metrics", &["Host: localhost"]);
        assert_eq!(code, 200, "{text}");
        // No token needed, but a foreign Host (DNS rebinding) is refused.
        let (code, _) = pipeline
            .broker
            .http_request_as("GET", "/metrics", &["Host: evil.example"]);
        assert_eq!(code, 403);
        let mut parser = crate::clients::python_script("parse_metrics.py", &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        parser
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = parser.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "the parser refused /metrics: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        let parsed: Value = serde_json::from_slice(&output.stdout).unwrap();
        let types = parsed["types"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, kind)| (name.clone(), kind.as_str().unwrap().to_string()))
            .collect();
        let samples = parsed["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|sample| {
                let labels = sample[1]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                (
                    sample[0].as_str().unwrap().to_string(),
                    labels,
                    sample[2].as_f64().unwrap(),
                )
            })
            .collect();
        Self { types, samples }
    }

    /// The sum of `name`'s samples whose labels include all of `labels`.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|(_, _, value)| value).sum()
    }

    fn count(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.matching(name, labels).count()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a (String, BTreeMap<String, String>, f64)> + 'a {
        self.samples.iter().filter(move |(sample, have, _)| {
            sample == name
                && labels
                    .iter()
                    .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

#[test]
fn metrics_parse_and_agree_with_the_brokers_own_figures() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 2);
    pipeline.create_topic("out", 1);
    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let records: Vec<(Option<&str>, &str)> = keys.iter().map(|k| (Some(k.as_str()), "v")).collect();
    pipeline.produce("in", &records);
    pipeline.sluice_ok(&["consume", "in", "-g", "readers", "-n", "4"]);
    pipeline.deploy("upper", "uppercase", &["--input", "in", "--output", "out"]);
    let status = pipeline.wait_caught_up("upper", 10);
    // A produce to a partition that does not exist: UNKNOWN_TOPIC_OR_PARTITION (3).
    let plain = crate::transactions::BatchAttributes {
        transactional: false,
        control: false,
    };
    let stray = crate::transactions::batch((-1, -1), plain, -1, &["stray"]);
    let mut client = crate::kafka::KafkaClient::connect(pipeline.broker.kafka);
    assert_eq!(client.produce("in", 7, stray), 3);
    // A heartbeat from a member the group does not know: an error code.
    use kafka_protocol::messages::{GroupId, HeartbeatRequest};
    use kafka_protocol::protocol::StrBytes;
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("nobody")))
        .with_generation_id(1)
        .with_member_id(StrBytes::from_static_str("ghost"));
    let heartbeat_code = client.call(heartbeat, 4).error_code;
    assert_ne!(heartbeat_code, 0);

    let scrape = Scrape::of(&pipeline);
    for (family, kind) in [
        ("sluice_kafka_requests", "counter"),
        ("sluice_kafka_request_duration_seconds", "histogram"),
        ("sluice_log_fsync_duration_seconds", "histogram"),
        ("sluice_processor_batch_duration_seconds", "histogram"),
        ("sluice_group_lag", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
    ] {
        assert_eq!(
            scrape.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }

    // Traffic: 10 records in, written by kcat; the processor wrote 10 to out.
    assert_eq!(
        scrape.sum("sluice_topic_records_in_total", &[("topic", "in")]),
        10.0
    );
    assert_eq!(
        scrape.sum("sluice_topic_records_in_total", &[("topic", "out")]),
        10.0
    );
    assert_eq!(
        scrape.sum("sluice_partition_high_watermark", &[("topic", "in")]),
        10.0
    );
    assert_eq!(
        scrape.count("sluice_partition_high_watermark", &[("topic", "in")]),
        2
    );
    assert!(scrape.sum("sluice_topic_records_out_total", &[("topic", "in")]) >= 4.0);
    assert!(scrape.sum("sluice_kafka_requests_total", &[("api", "Produce")]) >= 2.0);
    assert_eq!(
        scrape.sum(
            "sluice_kafka_request_errors_total",
            &[("api", "Produce"), ("code", "3")]
        ),
        1.0
    );
    let code = heartbeat_code.to_string();
    let labels = [("api", "Heartbeat"), ("code", code.as_str())];
    assert_eq!(
        scrape.sum("sluice_kafka_request_errors_total", &labels),
        1.0
    );
    assert!(scrape.sum("sluice_log_fsync_duration_seconds_count", &[]) >= 1.0);
    assert!(scrape.sum("process_resident_memory_bytes", &[]) > 0.0);
    assert!(scrape.sum("process_open_fds", &[]) > 0.0);

    // The group: the same lag and offsets as `sluice group describe`.
    let described = pipeline.sluice_ok(&["group", "describe", "readers", "--format", "json"]);
    let described: Value = serde_json::from_str(&described).unwrap();
    let total_lag = described["total_lag"].as_f64().unwrap();
    let labels = [("group", "readers"), ("topic", "in")];
    assert_eq!(scrape.sum("sluice_group_topic_lag", &labels), total_lag);
    assert_eq!(scrape.sum("sluice_group_lag", &labels), total_lag);
    let committed: f64 = described["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["committed_offset"].as_f64())
        .sum();
    assert_eq!(
        scrape.sum("sluice_group_committed_offset", &labels),
        committed
    );
    assert_eq!(committed + total_lag, 10.0, "{described:#}");

    // The processor: its status' figures.
    let upper = [("processor", "upper")];
    let records_in = status["records_in"].as_f64().unwrap();
    assert_eq!(records_in, 10.0);
    assert_eq!(
        scrape.sum("sluice_processor_records_in_total", &upper),
        records_in
    );
    assert_eq!(
        scrape.sum("sluice_processor_records_out_total", &upper),
        status["records_out"].as_f64().unwrap()
    );
    assert_eq!(scrape.sum("sluice_processor_lag", &upper), 0.0);
    assert_eq!(
        scrape.count("sluice_processor_records_in_total", &upper),
        2,
        "a series per task"
    );
    assert!(scrape.sum("sluice_processor_batch_duration_seconds_count", &upper) >= 1.0);

    // The Grafana dashboard in examples/ queries only series served here.
    let names = dashboard_metric_names();
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        assert!(
            scrape.count(&name, &[]) > 0,
            "the dashboard queries {name}, which /metrics does not serve"
        );
    }
}

/// Every metric name in the example dashboard's queries.
fn dashboard_metric_names() -> std::collections::BTreeSet<String> {
    let path = crate::clients::repo_root().join("examples/grafana/sluice-dashboard.json");
    let dashboard: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut names = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = ["sluice_", "process_"]
                .iter()
                .filter_map(|prefix| rest.find(prefix))
                .min()
            {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.insert(name);
            }
        }
    }
    names
}

/// `[metrics] partition_series = false`: per-partition series are summed
/// per topic or processor, for large deployments.
#[test]
fn partition_series_can_be_switched_off() {
    let pipeline = Pipeline::start_with_config("[metrics]\npartition_series = false\n");
    pipeline.create_topic("in", 3);
    pipeline.create_topic("out", 1);
    pipeline.produce(
        "in",
        &[(Some("a"), "1"), (Some("b"), "2"), (Some("c"), "3")],
    );
    pipeline.deploy("upper", "uppercase", &["--input", "in", "--output", "out"]);
    pipeline.wait_caught_up("upper", 3);
    let scrape = Scrape::of(&pipeline);
    assert_eq!(scrape.count("sluice_partition_high_watermark", &[]), 0);
    assert_eq!(scrape.count("sluice_group_lag", &[]), 0);
    assert_eq!(
        scrape.sum("sluice_topic_records_in_total", &[("topic", "in")]),
        3.0
    );
    let upper = [("processor", "upper")];
    assert_eq!(
        scrape.count("sluice_processor_records_in_total", &upper),
        1,
        "one series"
    );
    assert_eq!(scrape.sum("sluice_processor_records_in_total", &upper), 3.0);
}

/// A long poll that wakes on every append re-reads the partition each
/// time; only the read it answers with counts as fetched.
#[test]
fn a_long_poll_counts_only_what_it_answers() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let pipeline = Pipeline::start();
    pipeline.create_topic("slow", 1);
    let plain = || crate::transactions::BatchAttributes {
        transactional: false,
        control: false,
    };
    let kafka = pipeline.broker.kafka;
    let poll = std::thread::spawn(move || {
        let mut client = crate::kafka::KafkaClient::connect(kafka);
        let request = FetchRequest::default()
            .with_max_wait_ms(1500)
            .with_min_bytes(64 * 1024 * 1024)
            .with_max_bytes(64 * 1024 * 1024)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("slow")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(64 * 1024 * 1024)])]);
        let response = client.call(request, 12);
        let records = response.responses[0].partitions[0]
            .records
            .clone()
            .unwrap_or_default();
        records.len()
    });
    // Appends while the poll waits: each one wakes it to read again.
    let mut producer = crate::kafka::KafkaClient::connect(kafka);
    let mut appended = 0;
    while !poll.is_finished() {
        let batch = crate::transactions::batch((-1, -1), plain(), -1, &["tick"]);
        assert_eq!(producer.produce("slow", 0, batch), 0);
        appended += 1;
    }
    let answered_bytes = poll.join().unwrap();
    assert!(appended > 1, "the poll woke only {appended} times");
    let scrape = Scrape::of(&pipeline);
    assert_eq!(
        scrape.sum("sluice_topic_bytes_out_total", &[("topic", "slow")]),
        answered_bytes as f64,
        "{appended} appends during the poll"
    );
}

/// An at-least-once stateful processor makes its outputs durable before
/// each commit of its state and positions, not after every batch: thirty
/// batches processed between two commits cost no fsync each (they cost
/// one each before, a third of the task's time).
#[test]
fn an_at_least_once_stateful_processor_fsyncs_its_outputs_at_commits_not_every_batch() {
    const BATCHES: usize = 30;
    const BATCH_RECORDS: usize = 10;
    // Produces fsync nothing.
    let pipeline = Pipeline::start_with_config("[log]\nflush = \"interval:600000\"\n");
    pipeline.create_topic("views", 1);
    pipeline.create_topic("counts", 1);
    let records: Vec<(String, i64)> = (0..BATCHES * BATCH_RECORDS)
        .map(|i| (format!("user-{i}"), 1_767_225_600_000 + i as i64))
        .collect();
    crate::stateful::produce_at(&pipeline, "views", 0, &records);
    let fsyncs = || Scrape::of(&pipeline).sum("sluice_log_fsync_duration_seconds_count", &[]);
    let before = fsyncs();
    // Thirty batches of ten behind its input: one commit when caught up
    // (the interval, a minute, is not reached).
    let batch = BATCH_RECORDS.to_string();
    let extra = [
        "--guarantee",
        "at-least-once",
        "--commit-interval-ms",
        "60000",
        "--batch-records",
        &batch,
    ];
    crate::stateful::lifecycle::deploy(&pipeline, &extra);
    crate::stateful::wait_settled(&pipeline, "counter", records.len() as i64);
    let during = fsyncs() - before;
    assert!(
        during < (BATCHES / 2) as f64,
        "{during} fsyncs for {BATCHES} batches and one commit"
    );
    let counts = pipeline.consume("counts");
    assert_eq!(counts.len(), records.len());
}
