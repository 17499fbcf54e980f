//! TLS on both listeners, with real clients: kcat, confluent-kafka and
//! kafkajs over `SSL` and `SASL_SSL`, the CLI against an HTTPS admin API.
//! Each test makes its own CA and a certificate it signed for localhost and
//! 127.0.0.1 (rcgen), so clients verify the broker as they would in
//! production. Peers that do not speak TLS, or say nothing, are closed
//! alone; certificates that do not fit stop the broker at start, naming
//! the file.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::{sluice_binary, Broker};
use crate::security::{
    clients_authenticate, confluent_kafka_sasl, kafkajs_sasl, produce_lines, CLIENT_PASSWORD,
    CONFLUENT_KAFKA_CONSUMED, KAFKAJS_CONSUMED,
};

/// How long a log line the broker is expected to write may take to appear.
const LOG_WAIT: Duration = Duration::from_secs(30);

/// PEM files in a test's directory: a CA, and a server certificate it
/// signed (with its key).
struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Makes a CA and a server certificate for `localhost` and `127.0.0.1`
/// in `dir`, named `<name>-ca.pem`, `<name>.pem`, `<name>.key`.
fn certificates(dir: &Path, name: &str) -> Certificates {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sluice test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let files = Certificates {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}

/// `[kafka]` settings for `protocol` with these certificate files, then
/// `extra` lines.
fn kafka_tls(protocol: &str, cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "[kafka]\nsecurity_protocol = \"{protocol}\"\ntls_cert_file = {cert:?}\n\
         tls_key_file = {key:?}\n{extra}"
    )
}

/// `[admin]` settings for HTTPS with `certificates`.
fn admin_https(certificates: &Certificates) -> String {
    format!(
        "[admin]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        certificates.cert, certificates.key
    )
}

/// kcat against `broker` with these librdkafka settings.
fn kcat(broker: &Broker, settings: &[(&str, &str)]) -> Command {
    let mut command = Command::new("kcat");
    command.args(["-b", &broker.kafka.to_string()]);
    for (name, value) in settings {
        command.args(["-X", &format!("{name}={value}")]);
    }
    command
}

/// Writes three lines to `topic` with `settings` and reads them back.
fn kcat_round_trip(broker: &Broker, settings: &[(&str, &str)], topic: &str) {
    let produced = produce_lines(kcat(broker, settings), topic, "one\ntwo\nthree\n");
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let consumed = kcat(broker, settings)
        .args(["-C", "-t", topic, "-e", "-q"])
        .output()
        .unwrap();
    assert!(
        consumed.status.success(),
        "{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&consumed.stdout),
        "one\ntwo\nthree\n"
    );
}

/// kcat asking for metadata, giving up after 3 s; its output.
fn kcat_metadata(broker: &Broker, settings: &[(&str, &str)]) -> Output {
    kcat(broker, settings)
        .args(["-L", "-m", "3"])
        .output()
        .unwrap()
}

/// `sluice ARGS` with the admin API at `admin` (a URL) and, when given,
/// `ca` trusted for it.
fn sluice(admin: &str, ca: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(sluice_binary());
    command
        .args(args)
        .env("SLUICE_ADMIN", admin)
        .env_remove("SLUICE_TOKEN")
        .env_remove("SLUICE_CA_FILE");
    if let Some(ca) = ca {
        command.env("SLUICE_CA_FILE", ca);
    }
    command.output().unwrap()
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until the broker has logged a line containing each of `texts`.
fn wait_for_log_line(broker: &Broker, seen: &mut Vec<String>, texts: &[&str]) {
    crate::clients::wait_for(
        &format!("a broker log line with {texts:?}"),
        LOG_WAIT,
        || {
            seen.extend(broker.stderr_lines());
            seen.iter()
                .any(|line| texts.iter().all(|text| line.contains(text)))
        },
    );
}

#[test]
fn ssl_round_trips_and_peers_without_tls_are_closed_alone() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = certificates(dir.path(), "broker");
    let config = kafka_tls(
        "SSL",
        &certificates.cert,
        &certificates.key,
        "tls_handshake_timeout_ms = 2000\n",
    );
    let broker = Broker::start_with_config(dir.path(), &config);
    let mut seen = Vec::new();
    // A peer that connects and never starts its handshake.
    let mut silent = TcpStream::connect(broker.kafka).unwrap();
    let silent_peer = silent.local_addr().unwrap().to_string();

    let ca = certificates.ca.to_str().unwrap();
    let tls = [("security.protocol", "SSL"), ("ssl.ca.location", ca)];
    kcat_round_trip(&broker, &tls, "over-tls");

    // A client speaking plain Kafka to the TLS listener gets nothing; the
    // broker logs the failed handshake and goes on serving others.
    let plain = kcat_metadata(&broker, &[]);
    assert!(!plain.status.success(), "{plain:?}");
    wait_for_log_line(
        &broker,
        &mut seen,
        &[
            "closing connection",
            "TLS handshake failed: received corrupt message",
        ],
    );
    // A client that does not trust the broker's CA refuses it.
    let untrusting = kcat_metadata(&broker, &[("security.protocol", "SSL")]);
    assert!(!untrusting.status.success(), "{untrusting:?}");
    let stderr = String::from_utf8_lossy(&untrusting.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
    kcat_round_trip(&broker, &tls, "still-served");

    // The silent peer is closed once the handshake timeout has passed.
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let read = silent.read(&mut [0u8; 1]);
    assert!(
        matches!(read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{read:?}"
    );
    wait_for_log_line(
        &broker,
        &mut seen,
        &[&silent_peer, "did not finish within 2000 ms"],
    );
}

/// A broker with a `SASL_SSL` Kafka listener, its admin API over HTTPS
/// when `admin_over_https`, and the user `app` (password
/// [`CLIENT_PASSWORD`]) created with the CLI.
fn sasl_ssl_broker(dir: &Path, admin_over_https: bool) -> (Certificates, Broker, String) {
    let certificates = certificates(dir, "broker");
    // Handshake timeouts far beyond the test: a silent peer that delayed
    // others would fail it.
    let patient = "tls_handshake_timeout_ms = 600000\n";
    let mut config = kafka_tls("SASL_SSL", &certificates.cert, &certificates.key, patient);
    if admin_over_https {
        config += &admin_https(&certificates);
        config += patient;
    }
    let broker = Broker::start_with_config(dir, &config);
    let scheme = if admin_over_https { "https" } else { "http" };
    let admin = format!("{scheme}://{}", broker.http);
    let args = ["user", "create", "app", "--password", CLIENT_PASSWORD];
    succeeded(&sluice(&admin, Some(&certificates.ca), &args));
    (certificates, broker, admin)
}

#[test]
fn sasl_ssl_with_kcat_and_the_cli_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (certificates, broker, admin) = sasl_ssl_broker(dir.path(), true);
    let ca = Some(certificates.ca.as_path());

    // The admin API: the CLI trusting the CA finds the token and is
    // served (while a peer that never starts its handshake waits); without
    // the CA, or over plain HTTP, nothing is.
    let _silent_admin = TcpStream::connect(broker.http).unwrap();
    let listed = succeeded(&sluice(&admin, ca, &["user", "list", "--format", "json"]));
    assert!(listed.contains("\"app\""), "{listed}");
    let untrusting = sluice(&admin, None, &["user", "list"]);
    assert!(!untrusting.status.success());
    let stderr = String::from_utf8_lossy(&untrusting.stderr);
    assert!(stderr.contains("--ca-file"), "{stderr}");
    let plain_admin = format!("http://{}", broker.http);
    let plain_cli = sluice(&plain_admin, ca, &["user", "list"]);
    assert!(!plain_cli.status.success());
    let stderr = String::from_utf8_lossy(&plain_cli.stderr);
    assert!(stderr.contains("point --admin at https://"), "{stderr}");
    let plain = broker.try_http_exchange("GET", "/health", &["Host: localhost"], "", &[]);
    assert_eq!(plain, None, "plain HTTP answered on the HTTPS port");

    // Kafka: SCRAM-SHA-256 over TLS writes and reads (while a peer that
    // never starts its handshake waits).
    let ca_path = certificates.ca.to_str().unwrap();
    let sasl = |password: &'static str| {
        [
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", ca_path),
            ("sasl.mechanisms", "SCRAM-SHA-256"),
            ("sasl.username", "app"),
            ("sasl.password", password),
        ]
    };
    let _silent_kafka = TcpStream::connect(broker.kafka).unwrap();
    kcat_round_trip(&broker, &sasl(CLIENT_PASSWORD), "sasl-over-tls");
    // A wrong password is refused; TLS without SASL reads nothing.
    let wrong = kcat_metadata(&broker, &sasl("wrong"));
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("Authentication failed"), "{stderr}");
    let anonymous = kcat(&broker, &sasl(CLIENT_PASSWORD)[..2])
        .args(["-C", "-t", "sasl-over-tls", "-e", "-q", "-m", "3"])
        .output()
        .unwrap();
    assert!(!anonymous.status.success(), "{anonymous:?}");
    assert!(anonymous.stdout.is_empty());
}

/// A client script over `SASL_SSL`: see [`clients_authenticate`].
fn scram_over_tls(mechanism: &str, expected: &str, script: &dyn Fn(&[&str]) -> Command) {
    let dir = tempfile::tempdir().unwrap();
    let (certificates, broker, _) = sasl_ssl_broker(dir.path(), false);
    clients_authenticate(
        &broker.kafka.to_string(),
        Some(certificates.ca.to_str().unwrap()),
        &[(mechanism, "over-tls")],
        expected,
        script,
    );
}

#[test]
fn confluent_kafka_authenticates_with_scram_over_tls() {
    scram_over_tls(
        "SCRAM-SHA-512",
        CONFLUENT_KAFKA_CONSUMED,
        &confluent_kafka_sasl,
    );
}

#[test]
fn kafkajs_authenticates_with_scram_over_tls() {
    scram_over_tls("SCRAM-SHA-256", KAFKAJS_CONSUMED, &kafkajs_sasl);
}

/// `sluice serve` on `<dir>/data` with `config` and these listeners.
fn serve(dir: &Path, config: &str, listen: &str, http: &str) -> Command {
    let file = dir.join("sluice.toml");
    std::fs::write(&file, config).unwrap();
    let mut command = Command::new(sluice_binary());
    command
        .args(["serve", "--listen", listen, "--http", http])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(file);
    command
}

/// Starting `command` fails with an error containing each of `texts`.
fn refused(mut command: Command, texts: &[&str]) {
    let output = command.output().unwrap();
    assert!(!output.status.success(), "started: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for text in texts {
        assert!(stderr.contains(text), "{text:?} not in {stderr}");
    }
}

#[test]
fn certificates_that_do_not_fit_and_unauthenticated_listeners_beyond_loopback_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ours = certificates(dir.path(), "ours");
    let theirs = certificates(dir.path(), "theirs");
    let loopback = "127.0.0.1:0";
    let missing = dir.path().join("missing.key");
    let config = kafka_tls("SSL", &ours.cert, &missing, "");
    refused(
        serve(dir.path(), &config, loopback, loopback),
        &["missing.key"],
    );
    let config = kafka_tls("SASL_SSL", &ours.cert, &theirs.key, "");
    refused(
        serve(dir.path(), &config, loopback, loopback),
        &["theirs.key", "does not go with", "ours.pem"],
    );
    let config = format!("[admin]\ntls_cert_file = {:?}\n", ours.cert);
    refused(
        serve(dir.path(), &config, loopback, loopback),
        &["go together"],
    );

    // Beyond loopback: TLS alone authenticates no Kafka client, and the
    // admin API's token needs HTTPS.
    let ssl = kafka_tls("SSL", &ours.cert, &ours.key, "");
    refused(
        serve(dir.path(), &ssl, "0.0.0.0:0", loopback),
        &["refusing to listen on 0.0.0.0", "SASL_SSL", "--insecure"],
    );
    let sasl_ssl = kafka_tls("SASL_SSL", &ours.cert, &ours.key, "");
    refused(
        serve(dir.path(), &sasl_ssl, "0.0.0.0:0", "0.0.0.0:0"),
        &[
            "refusing to listen on 0.0.0.0",
            "tls_cert_file",
            "--insecure",
        ],
    );
    let both = sasl_ssl + &admin_https(&ours);
    let broker = Broker::spawn(serve(dir.path(), &both, "0.0.0.0:0", "0.0.0.0:0"));
    assert!(broker.kafka.ip().is_unspecified() && broker.http.ip().is_unspecified());
}

/// `sluice`'s own Kafka verbs over `SASL_SSL`: `--ca-file` (implying TLS)
/// and SASL credentials; without the CA the handshake fails with a hint,
/// without TLS the broker is not spoken to.
#[test]
fn sluice_kafka_verbs_speak_tls_and_sasl() {
    let dir = tempfile::tempdir().unwrap();
    let (certificates, broker, admin) = sasl_ssl_broker(dir.path(), false);
    let verb = |args: &[&str], ca: Option<&Path>, input: &str| {
        let mut command = Command::new(sluice_binary());
        command
            .args(args)
            .env("SLUICE_BROKERS", broker.kafka.to_string())
            .env("SLUICE_ADMIN", &admin)
            .env("SLUICE_USER", "app")
            .env("SLUICE_PASSWORD", CLIENT_PASSWORD)
            .env_remove("SLUICE_CA_FILE")
            .env_remove("SLUICE_TLS");
        if let Some(ca) = ca {
            command.env("SLUICE_CA_FILE", ca);
        }
        crate::harness::output_with_input(&mut command, input.as_bytes())
    };
    let ca = Some(certificates.ca.as_path());
    succeeded(&verb(&["topic", "create", "secure", "-p", "2"], ca, ""));
    succeeded(&verb(&["produce", "secure"], ca, "one\ntwo\nthree\n"));
    let consumed = succeeded(&verb(
        &["consume", "secure", "-n", "3", "-g", "readers"],
        ca,
        "",
    ));
    let mut lines: Vec<&str> = consumed.lines().collect();
    lines.sort();
    assert_eq!(lines, ["one", "three", "two"]);
    let described = succeeded(&verb(&["group", "describe", "readers"], ca, ""));
    assert!(described.contains("secure"), "{described}");

    let mut untrusting = Command::new(sluice_binary());
    let untrusting = untrusting
        .args(["topic", "list", "--tls"])
        .env("SLUICE_BROKERS", broker.kafka.to_string())
        .env("SLUICE_USER", "app")
        .env("SLUICE_PASSWORD", CLIENT_PASSWORD)
        .env_remove("SLUICE_CA_FILE")
        .output()
        .unwrap();
    assert!(!untrusting.status.success());
    let stderr = String::from_utf8_lossy(&untrusting.stderr);
    assert!(
        stderr.contains("TLS handshake") && stderr.contains("--ca-file"),
        "{stderr}"
    );
    let plain = verb(&["topic", "list"], None, "");
    assert!(!plain.status.success(), "{plain:?}");
}
