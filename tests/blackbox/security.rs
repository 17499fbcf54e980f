//! Who may reach what: the admin API runs code, so it answers only
//! requests that carry the broker's token, name the broker in `Host` (DNS
//! rebinding) and are not cross-site; the CLI on the broker's machine
//! finds the token by itself; the broker refuses to listen beyond
//! loopback while its Kafka listener has no authentication, unless told
//! `--insecure`.

use std::process::Command;

use crate::harness::{sluice_binary, Broker};
use crate::processors::Pipeline;

#[test]
fn the_admin_api_needs_the_token_its_own_host_and_a_same_site_caller() {
    let pipeline = Pipeline::start();
    pipeline.create_topic("in", 1);
    pipeline.create_topic("out", 1);
    // The CLI works as before: it read the token from the data dir.
    pipeline.deploy("shout", "uppercase", &["--input", "in", "--output", "out"]);
    let broker = &pipeline.broker;
    assert_eq!(broker.token.len(), 64, "a generated token");
    let bearer = format!("Authorization: Bearer {}", broker.token);
    let pause = "/v1/processors/shout/pause";

    // A DNS-rebinding page: the request reaches 127.0.0.1 under its own
    // name, without the token (and with it: the host alone refuses).
    let (code, body) = broker.http_request_as("POST", pause, &["Host: evil.example"]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("evil.example"), "{body}");
    let (code, _) = broker.http_request_as("POST", pause, &["Host: evil.example:9644", &bearer]);
    assert_eq!(code, 403);
    // A cross-site form post or fetch, even if it somehow had the token.
    let (code, _) = broker.http_request_as(
        "POST",
        pause,
        &["Host: localhost", "Origin: http://evil.example", &bearer],
    );
    assert_eq!(code, 403);
    let (code, _) = broker.http_request_as(
        "POST",
        pause,
        &["Host: localhost", "Sec-Fetch-Site: cross-site", &bearer],
    );
    assert_eq!(code, 403);
    // No token, a wrong one: 401, reads included.
    let (code, body) = broker.http_request_as("POST", pause, &["Host: localhost"]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("admin.token"), "{body}");
    let (code, _) = broker.http_request_as(
        "GET",
        "/v1/processors",
        &["Host: 127.0.0.1", "Authorization: Bearer 0000"],
    );
    assert_eq!(code, 401);
    assert_eq!(
        pipeline.status("shout")["state"],
        "running",
        "nothing refused took effect"
    );

    // Health stays open (load balancers and the CLI ask it).
    let (code, _) = broker.http_request_as("GET", "/health", &["Host: evil.example"]);
    assert_eq!(code, 200);
    // The owner, same-origin: allowed.
    let (code, body) = broker.http_request_as(
        "POST",
        pause,
        &["Host: localhost", "Origin: http://localhost:9644", &bearer],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(pipeline.status("shout")["state"], "paused");

    // `sluice processor token` prints it, for curl; a wrong --token is
    // refused with the broker's reason.
    assert_eq!(
        pipeline.sluice_ok(&["processor", "token"]).trim(),
        broker.token
    );
    let output = pipeline.sluice(&["processor", "list", "--token", "wrong"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("token is wrong"), "{stderr}");
}

#[test]
fn listening_beyond_loopback_needs_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(sluice_binary())
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0") && stderr.contains("--insecure"),
        "{stderr}"
    );
    let mut command = Command::new(sluice_binary());
    command
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--http",
            "127.0.0.1:0",
            "--insecure",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let broker = Broker::spawn(command);
    assert!(broker.kafka.ip().is_unspecified());
}

/// kcat with `-X` settings for SASL as `user`/`password` over `mechanism`.
fn kcat_sasl(pipeline: &Pipeline, mechanism: &str, user: &str, password: &str) -> Command {
    let mut command = Command::new("kcat");
    command
        .args(["-b", &pipeline.broker.kafka.to_string()])
        .args([
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            &format!("sasl.mechanisms={mechanism}"),
            "-X",
            &format!("sasl.username={user}"),
            "-X",
            &format!("sasl.password={password}"),
        ]);
    command
}

pub(crate) fn produce_lines(
    mut command: Command,
    topic: &str,
    lines: &str,
) -> std::process::Output {
    command.args(["-P", "-t", topic]);
    crate::harness::output_with_input(&mut command, lines.as_bytes())
}

#[test]
fn sasl_scram_and_plain_users_reach_topics_and_a_wrong_password_is_refused() {
    let pipeline = Pipeline::start_with_config("[kafka]\nsecurity_protocol = \"SASL_PLAINTEXT\"\n");
    // Users are added through the admin API (the CLI finds the token).
    let mut create = Command::new(sluice_binary());
    create
        .args(["user", "create", "alice", "--password-stdin"])
        .env("SLUICE_ADMIN", format!("http://{}", pipeline.broker.http))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = create.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"wonder land\n")
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = pipeline.sluice_ok(&["user", "list", "--format", "json"]);
    assert!(
        listed.contains("\"alice\"") && listed.contains("SCRAM-SHA-512"),
        "{listed}"
    );
    assert!(!listed.contains("wonder"), "{listed}");

    // SCRAM-SHA-256 writes (the topic is created on first use), SCRAM-SHA-512
    // and PLAIN read it back.
    let produced = produce_lines(
        kcat_sasl(&pipeline, "SCRAM-SHA-256", "alice", "wonder land"),
        "secrets",
        "one\ntwo\nthree\n",
    );
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    for mechanism in ["SCRAM-SHA-512", "PLAIN"] {
        let output = kcat_sasl(&pipeline, mechanism, "alice", "wonder land")
            .args(["-C", "-t", "secrets", "-e", "-q"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{mechanism}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "one\ntwo\nthree\n",
            "{mechanism}"
        );
    }

    // A wrong password, an unknown user, no SASL at all: refused.
    for (mechanism, user, password) in [
        ("SCRAM-SHA-256", "alice", "wrong"),
        ("PLAIN", "alice", "wrong"),
        ("SCRAM-SHA-512", "mallory", "wonder land"),
    ] {
        let output = kcat_sasl(&pipeline, mechanism, user, password)
            .args(["-L", "-m", "3"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{mechanism} {user}: {stderr}");
        assert!(
            stderr.contains("Authentication failed"),
            "{mechanism} {user}: {stderr}"
        );
    }
    let output = Command::new("kcat")
        .args([
            "-b",
            &pipeline.broker.kafka.to_string(),
            "-C",
            "-t",
            "secrets",
            "-e",
            "-q",
        ])
        .args(["-m", "3"])
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "a client without SASL read: {:?}",
        output
    );
    assert!(output.stdout.is_empty());

    // A deleted user can no longer authenticate.
    pipeline.sluice_ok(&["user", "delete", "alice"]);
    let output = kcat_sasl(&pipeline, "SCRAM-SHA-256", "alice", "wonder land")
        .args(["-L", "-m", "3"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[test]
fn kafkajs_authenticates_with_scram_and_plain_and_a_wrong_password_fails() {
    let pipeline = Pipeline::start_with_config("[kafka]\nsecurity_protocol = \"SASL_PLAINTEXT\"\n");
    pipeline.sluice_ok(&["user", "create", "app", "--password", CLIENT_PASSWORD]);
    clients_authenticate(
        &pipeline.broker.kafka.to_string(),
        None,
        &[
            ("SCRAM-SHA-256", "t256"),
            ("SCRAM-SHA-512", "t512"),
            ("PLAIN", "tplain"),
        ],
        KAFKAJS_CONSUMED,
        &kafkajs_sasl,
    );
}

#[test]
fn confluent_kafka_authenticates_with_scram_and_plain_and_a_wrong_password_fails() {
    let pipeline = Pipeline::start_with_config("[kafka]\nsecurity_protocol = \"SASL_PLAINTEXT\"\n");
    pipeline.sluice_ok(&["user", "create", "app", "--password", CLIENT_PASSWORD]);
    clients_authenticate(
        &pipeline.broker.kafka.to_string(),
        None,
        &[("SCRAM-SHA-512", "c512"), ("PLAIN", "cplain")],
        CONFLUENT_KAFKA_CONSUMED,
        &confluent_kafka_sasl,
    );
}

/// The password of the user `app` the client tests create.
pub(crate) const CLIENT_PASSWORD: &str = "s3cret";

/// What `kafkajs_sasl.js` prints after a round trip.
pub(crate) const KAFKAJS_CONSUMED: &str = r#"{"consumed":["one","two","three"]}"#;
/// What `ck_sasl.py` prints after a round trip.
pub(crate) const CONFLUENT_KAFKA_CONSUMED: &str = r#"{"consumed": ["one", "two", "three"]}"#;

/// kafkajs (`tests/clients/node/kafkajs_sasl.js`) with `args`.
pub(crate) fn kafkajs_sasl(args: &[&str]) -> Command {
    let mut command = Command::new("node");
    command
        .current_dir(crate::clients::node_dir())
        .arg("kafkajs_sasl.js")
        .args(args);
    command
}

/// confluent-kafka (`tests/clients/python/ck_sasl.py`) with `args`.
pub(crate) fn confluent_kafka_sasl(args: &[&str]) -> Command {
    crate::clients::python_script("ck_sasl.py", args)
}

/// Runs a client script, `script(args)` with args BOOTSTRAP MECHANISM USER
/// PASSWORD TOPIC [CA_FILE] (over TLS with a CA file): as the user `app`
/// with [`CLIENT_PASSWORD`], each (mechanism, topic) of `cases` must
/// succeed and print `expected` (the three records it wrote, read back);
/// with a wrong password the first mechanism must fail, reporting that
/// authentication failed.
pub(crate) fn clients_authenticate(
    bootstrap: &str,
    ca: Option<&str>,
    cases: &[(&str, &str)],
    expected: &str,
    script: &dyn Fn(&[&str]) -> Command,
) {
    let run = |mechanism: &str, password: &str, topic: &str| {
        let mut args = vec![bootstrap, mechanism, "app", password, topic];
        args.extend(ca);
        script(&args).output().unwrap()
    };
    for (mechanism, topic) in cases {
        let output = run(mechanism, CLIENT_PASSWORD, topic);
        assert!(
            output.status.success(),
            "{mechanism}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            expected,
            "{mechanism}"
        );
    }
    let (mechanism, topic) = cases[0];
    let output = run(mechanism, "wrong", topic);
    assert!(!output.status.success(), "{mechanism}: a wrong password");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.to_lowercase().contains("authentication failed"),
        "{mechanism}: {stderr}"
    );
}
