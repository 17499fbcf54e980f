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
