//! `sluice serve` lifecycle: health, lock, SIGTERM, restart on the same data.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sluice::log::{batch, LogStore, StdIo, StoreOptions, SystemClock};

use crate::harness::{sluice_binary, Broker, STARTUP_TIMEOUT};

fn open_store(dir: &std::path::Path) -> LogStore {
    LogStore::open(
        dir,
        StoreOptions::default(),
        Arc::new(StdIo),
        Arc::new(SystemClock),
    )
    .expect("open store")
}

#[test]
fn health_lock_sigterm_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Data written before the broker starts must be found by it and after it.
    {
        let store = open_store(dir.path());
        store.create_topic("orders", 2, BTreeMap::new()).unwrap();
        let partition = store.partition("orders", 1).unwrap();
        for _ in 0..3 {
            partition
                .append(&batch::build::values(4, 100, 1_000))
                .unwrap();
        }
    }

    let mut broker = Broker::start(dir.path(), &[]);
    let (status, body) = broker.http_get("/health");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime_ms"].as_u64().is_some());
    let canonical = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(health["data_dir"], canonical.display().to_string());
    assert_eq!(broker.http_get("/nope").0, 404);

    // A second broker on the same directory refuses, naming the holder.
    let second = Command::new(sluice_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "in use by another sluice process (pid {})",
            broker.pid()
        )),
        "{stderr}"
    );

    // SIGTERM: clean exit 0 within 5 s (`stop_with` fails the test otherwise).
    let status = broker.stop_with("TERM", Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    let logged = broker.stderr_lines();
    assert!(logged
        .iter()
        .any(|line| line.contains("data directory released")));
    // Logged to a pipe (a file, journald, a bench capturing it): plain
    // text, no terminal colour codes.
    assert!(
        !logged.iter().any(|line| line.contains('\u{1b}')),
        "{logged:#?}"
    );

    // Restart on the same directory finds everything, then the library can
    // open it again once that broker stops (the lock was released).
    let mut broker = Broker::start(dir.path(), &[]);
    assert_eq!(broker.http_get("/health").0, 200);
    assert!(broker.stop_with("INT", Duration::from_secs(5)).success());
    let store = open_store(dir.path());
    let partition = store.partition("orders", 1).unwrap();
    assert_eq!(partition.log_end_offset(), 12);
    let read = partition.read(0, 1 << 20).unwrap();
    assert_eq!(batch::verify(&read.records).unwrap().records_count, 4);
    assert_eq!(store.partition("orders", 0).unwrap().log_end_offset(), 0);
}

#[test]
fn oversized_frame_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut stream = TcpStream::connect(broker.kafka).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A 2 GiB length prefix must be refused before any allocation.
    stream.write_all(&i32::MAX.to_be_bytes()).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(stream.read(&mut buf).unwrap(), 0, "connection closed");
    assert_eq!(broker.http_get("/health").0, 200);
}

#[test]
fn bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[log]\nflush = \"sometimes\"\n").unwrap();
    let output = Command::new(sluice_binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sluice.toml") && stderr.contains("expected always, never or interval"),
        "{stderr}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn flags_beat_environment_beats_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (file_listen, file_http) = (free_port(), free_port());
    let config = dir.path().join("sluice.toml");
    let file_dir = dir.path().join("from-file");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{file_listen}\"\nhttp = \"127.0.0.1:{file_http}\"\ndata_dir = {:?}\n",
            file_dir.display().to_string()
        ),
    )
    .unwrap();
    let flag_dir = dir.path().join("from-flag");
    let mut command = Command::new(sluice_binary());
    command
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&flag_dir)
        .env("SLUICE_HTTP", "127.0.0.1:0")
        .env("SLUICE_DATA_DIR", dir.path().join("from-env"));
    let broker = Broker::spawn(command);
    assert_eq!(
        broker.kafka.port(),
        file_listen,
        "listen comes from the file"
    );
    assert_ne!(
        broker.http.port(),
        file_http,
        "the environment beats the file"
    );
    let (_, body) = broker.http_get("/health");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let expected = std::fs::canonicalize(&flag_dir).unwrap();
    assert_eq!(
        health["data_dir"],
        expected.display().to_string(),
        "the flag beats the environment"
    );
    assert!(!dir.path().join("from-env").exists() && !file_dir.exists());
}

/// Runs `sluice serve` on `data_dir` with `extra` arguments, expecting it to
/// refuse to start: it must exit (within [`STARTUP_TIMEOUT`]) with a
/// failure and without printing a ready line. Returns its stderr.
fn refused_start(data_dir: &std::path::Path, extra: &[&str]) -> String {
    let child = Command::new(sluice_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (sender, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let Ok(output) = exited.recv_timeout(STARTUP_TIMEOUT) else {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("sluice serve {extra:?} kept running: it should have refused to start");
    };
    let output = output.unwrap();
    let (status, stdout) = (output.status, String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !status.success(),
        "exit status {status:?}; stderr: {stderr}"
    );
    assert!(
        !stdout.contains(" ready "),
        "a ready line before failing: {stdout:?}; stderr: {stderr}"
    );
    stderr
}

/// Topic defaults from the config file pass the rules a topic override
/// passes: `segment_bytes = 0` is refused at start, naming the key.
#[test]
fn topic_defaults_in_the_config_file_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[log.topic_defaults]\nsegment_bytes = 0\n").unwrap();
    let data_dir = dir.path().join("data");
    let stderr = refused_start(&data_dir, &["--config", config.to_str().unwrap()]);
    assert!(
        stderr.contains("segment_bytes") && stderr.contains("minimum"),
        "{stderr}"
    );
}

/// The ready line means every part is serving: when the committed-offsets
/// store cannot be opened (here `groups` is a file, not a directory), the
/// broker reports the error and never claims to be ready.
#[test]
fn no_ready_line_when_a_part_fails_to_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("groups"), b"not a directory").unwrap();
    let stderr = refused_start(dir.path(), &[]);
    assert!(stderr.contains("committed-offsets store"), "{stderr}");
}

/// A SIGTERM sent the moment the ready line appears stops the broker
/// cleanly (exit 0, data directory released), not by the signal's default
/// action: the handlers are installed before the broker reports ready.
#[test]
fn sigterm_right_after_the_ready_line_stops_cleanly() {
    for attempt in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Broker::start(dir.path(), &[]);
        let status = broker.stop_with("TERM", Duration::from_secs(5));
        assert!(
            status.success(),
            "attempt {attempt}: exit status {status:?}"
        );
        assert!(
            broker
                .stderr_lines()
                .iter()
                .any(|line| line.contains("data directory released")),
            "attempt {attempt}"
        );
    }
}
