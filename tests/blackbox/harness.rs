//! Starting and stopping a real `sluice serve`, and tiny clients for it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a broker may take to report ready or to stop.
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`Broker::wait_exit`] looks whether the broker has exited.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The binary under test.
/// Runs `command` with `input` on its stdin (then closed); its output.
pub(crate) fn output_with_input(command: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning the command");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("writing stdin");
    child.wait_with_output().expect("waiting for the command")
}

pub(crate) fn sluice_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

/// A running `sluice serve`.
pub(crate) struct Broker {
    child: Option<Child>,
    /// Kafka listener.
    pub kafka: SocketAddr,
    /// HTTP listener.
    pub http: SocketAddr,
    stderr: mpsc::Receiver<String>,
    /// The thread forwarding stderr lines; it ends at EOF, after exit.
    stderr_reader: std::sync::Mutex<Option<thread::JoinHandle<()>>>,
    /// The admin API's token, read (as the CLI reads it) from the data
    /// directory `/health` names; every HTTP request here presents it.
    pub(crate) token: String,
}

fn parse_addr(line: &str, key: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in ready line {line:?}"))
        .parse()
        .expect("address in ready line")
}

impl Broker {
    /// Starts a broker on `data_dir` with ephemeral ports and waits for its
    /// ready line.
    pub(crate) fn start(data_dir: &Path, extra_args: &[&str]) -> Self {
        let mut command = Command::new(sluice_binary());
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra_args);
        Self::spawn(command)
    }

    /// Runs `command` (a `sluice serve …`) and waits for its ready line.
    pub(crate) fn spawn(mut command: Command) -> Self {
        let mut child = command
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning sluice serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = ready_tx.send(line);
        });
        let (err_tx, err_rx) = mpsc::channel();
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let line = ready_rx
            .recv_timeout(STARTUP_TIMEOUT)
            .expect("sluice serve reports ready");
        assert!(line.contains(" ready "), "unexpected ready line {line:?}");
        let mut broker = Self {
            child: Some(child),
            kafka: parse_addr(&line, "kafka="),
            http: parse_addr(&line, "http="),
            stderr: err_rx,
            stderr_reader: std::sync::Mutex::new(Some(stderr_reader)),
            token: String::new(),
        };
        // Over plain HTTP: an HTTPS admin API answers nothing here, and
        // its tests find the token through the CLI.
        let health = broker.try_http_exchange("GET", "/health", &["Host: localhost"], "", &[]);
        if let Some(data_dir) = health
            .and_then(|(_, health)| serde_json::from_str::<serde_json::Value>(&health).ok())
            .and_then(|h| h["data_dir"].as_str().map(PathBuf::from))
        {
            broker.token = std::fs::read_to_string(data_dir.join("admin.token"))
                .unwrap_or_default()
                .trim()
                .to_string();
        }
        broker
    }

    /// Starts a broker on `<dir>/data` with `toml` written to
    /// `<dir>/sluice.toml` as its config file.
    pub(crate) fn start_with_config(dir: &Path, toml: &str) -> Self {
        let config = dir.join("sluice.toml");
        std::fs::write(&config, toml).expect("writing the config file");
        let config = config.to_str().expect("a UTF-8 path").to_string();
        Self::start(&dir.join("data"), &["--config", &config])
    }

    /// The broker's peak resident memory (`VmHWM`), in bytes.
    pub(crate) fn peak_rss_bytes(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// The broker's resident memory now (`VmRSS`), in bytes.
    pub(crate) fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// A `kB` figure of `/proc/PID/status`, in bytes.
    pub(crate) fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the broker is running");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
        kib * 1024
    }

    /// Process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` and waits for exit (at most `timeout`).
    pub(crate) fn stop_with(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        assert!(status.expect("kill runs").success());
        self.wait_exit(timeout)
    }

    /// The broker's exit status if it has exited (without waiting).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("running");
        let status = child.try_wait().expect("try_wait")?;
        self.child = None;
        Some(status)
    }

    /// Waits for the broker to exit (at most `timeout`; past it the test
    /// fails, and the broker is killed when dropped).
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not exit within {timeout:?}"
            );
            thread::sleep(EXIT_POLL_INTERVAL);
        }
    }

    /// Everything the broker wrote to stderr so far (and not returned by an
    /// earlier call). Once the broker has been stopped, this reads to EOF,
    /// so the last lines before exit are never missed.
    pub(crate) fn stderr_lines(&self) -> Vec<String> {
        if self.child.is_none() {
            let reader = self.stderr_reader.lock().expect("stderr reader").take();
            if let Some(reader) = reader {
                reader.join().expect("the stderr reader thread");
            }
        }
        self.stderr.try_iter().collect()
    }

    /// `GET path` on the HTTP listener; returns (status, body).
    pub(crate) fn http_get(&self, path: &str) -> (u16, String) {
        self.http_request("GET", path)
    }

    /// `METHOD path` (no body) on the HTTP listener; returns (status, body).
    pub(crate) fn http_request(&self, method: &str, path: &str) -> (u16, String) {
        self.http_send(method, path, "", &[])
    }

    /// `METHOD path` with these header lines (`Name: value`) and no
    /// token unless they carry one; returns (status, body).
    pub(crate) fn http_request_as(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
    ) -> (u16, String) {
        self.try_http_exchange(method, path, headers, "", &[])
            .expect("an HTTP response")
    }

    /// `PUT path` with a `multipart/form-data` body of `parts` (name,
    /// bytes), as `sluice processor deploy` sends; returns (status, body).
    pub(crate) fn http_put_multipart(&self, path: &str, parts: &[(&str, &[u8])]) -> (u16, String) {
        const BOUNDARY: &str = "sluice-test-boundary-7e3f";
        let mut body = Vec::new();
        for (name, bytes) in parts {
            write!(
                body,
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
            )
            .unwrap();
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        write!(body, "--{BOUNDARY}--\r\n").unwrap();
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        self.http_send("PUT", path, &content_type, &body)
    }

    /// `METHOD path` with a JSON body and the token; (status, body).
    pub(crate) fn http_json(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.http_send(method, path, "application/json", body.as_bytes())
    }

    fn http_send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        let authorization = format!("Authorization: Bearer {}", self.token);
        let headers = ["Host: localhost", authorization.as_str()];
        self.try_http_exchange(method, path, &headers, content_type, body)
            .expect("an HTTP response")
    }

    /// A plain HTTP exchange; `None` when no HTTP response came back (the
    /// connection failed or closed, or the answer was not HTTP).
    pub(crate) fn try_http_exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        content_type: &str,
        body: &[u8],
    ) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(self.http).ok()?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        for header in headers {
            head += &format!("{header}\r\n");
        }
        if !body.is_empty() {
            head += &format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        head += "\r\n";
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let response = String::from_utf8(response).ok()?;
        if !response.starts_with("HTTP/") {
            return None;
        }
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        Some((status, body))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The directory of `topic` in the broker data directory `data_dir`
/// (`topics/<topic>-<id>/`): the one whose `topic.json` names it.
pub(crate) fn topic_dir(data_dir: &Path, topic: &str) -> Option<PathBuf> {
    std::fs::read_dir(data_dir.join("topics"))
        .ok()?
        .map(|entry| entry.expect("directory entry").path())
        .find(|dir| {
            let meta = std::fs::read(dir.join("topic.json")).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&meta)
                .is_ok_and(|meta| meta["name"] == topic)
        })
}
