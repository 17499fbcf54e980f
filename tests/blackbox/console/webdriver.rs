//! A small W3C WebDriver client: Debian's `chromium` driven headless by
//! `chromedriver`, over plain HTTP and JSON, so the console's test needs
//! no client library. Only what the test uses: navigate, run a script,
//! click, type (a file input's path too), accept a `confirm`, screenshot.
//!
//! `scripts/test` installs `chromium` and `chromium-driver`; the paths are
//! Debian's (`/usr/bin/chromium`, `/usr/bin/chromedriver`) unless
//! `SLUICE_CHROMIUM` / `SLUICE_CHROMEDRIVER` name others. A missing browser
//! fails the test (it never passes by skipping).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(30);
/// The element reference key of the W3C protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn tool(variable: &str, debian_path: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(debian_path), PathBuf::from);
    assert!(
        path.exists(),
        "{} is not installed: run scripts/test, which installs chromium and chromium-driver \
         (or set {variable})",
        path.display()
    );
    path
}

/// A headless Chromium session.
pub(crate) struct Browser {
    driver: Child,
    address: SocketAddr,
    session: String,
    /// Chromium's profile, removed with the browser.
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) fn start() -> Self {
        let chromium = tool("SLUICE_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("SLUICE_CHROMEDRIVER", "/usr/bin/chromedriver");
        // A free port for chromedriver (it cannot report one it chose).
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Self {
            driver,
            address,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + WAIT;
        while browser.request("GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1300,1000",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created = browser
            .request("POST", "/session", Some(capabilities))
            .unwrap_or_else(|e| panic!("starting chromium: {e}"));
        browser.session = created["value"]["sessionId"].as_str().unwrap().to_string();
        browser
    }

    /// One WebDriver command; `Err` carries the driver's error.
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut stream = TcpStream::connect(self.address).map_err(|e| e.to_string())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.address,
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .and_then(|_| stream.write_all(body.as_bytes()))
            .map_err(|e| e.to_string())?;
        let body = read_response(&mut stream)?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&body)))?;
        match answer["value"].get("error") {
            Some(error) => Err(format!("{error}: {}", answer["value"]["message"])),
            None => Ok(answer),
        }
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.request(method, &path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))["value"]
            .take()
    }

    pub(crate) fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns what it returns.
    pub(crate) fn script(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Waits until `expression` (JavaScript) is truthy; returns its value.
    pub(crate) fn wait(&self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        let script = format!("try {{ return ({expression}); }} catch (e) {{ return null; }}");
        loop {
            let value = self.script(&script, json!([]));
            if !(value.is_null() || value == false || value == "" || value == 0) {
                return value;
            }
            let banner = self.script(
                "const b = document.getElementById('banner'); return b && !b.hidden ? b.textContent : '';",
                json!([]),
            );
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; banner: {banner}; page: {}",
                self.text("main")
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The text of the first element matching `css`.
    pub(crate) fn text(&self, css: &str) -> String {
        let text = self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            json!([css]),
        );
        text.as_str().unwrap_or_default().to_string()
    }

    fn element(&self, css: &str) -> String {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        match found[ELEMENT].as_str() {
            Some(element) => element.to_string(),
            None => panic!("no element {css}: {found}"),
        }
    }

    /// Clicks the element matching `css` as a user would.
    /// A page that redraws itself (the console polls its API) may replace
    /// the element between finding and clicking it: it is found again.
    pub(crate) fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let path = format!(
                "/session/{}/element/{}/click",
                self.session,
                self.element(css)
            );
            match self.request("POST", &path, Some(json!({}))) {
                Ok(_) => return,
                Err(error) if error.contains("stale element") && Instant::now() < deadline => {}
                Err(error) => panic!("POST {path}: {error}"),
            }
        }
    }

    /// Types `text` into the element matching `css` after clearing it; for
    /// a file input, `text` is the file's path.
    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        if self.script(
            "return arguments[0].type !== 'file';",
            json!([{ ELEMENT: element }]),
        ) == true
        {
            self.command(
                "POST",
                &format!("/element/{element}/clear"),
                Some(json!({})),
            );
        }
        let keys = json!({ "text": text });
        self.command("POST", &format!("/element/{element}/value"), Some(keys));
    }

    /// Fills the inputs of the form `form` (name, text) and submits it.
    pub(crate) fn submit(&self, form: &str, fields: &[(&str, &str)]) {
        for (name, text) in fields {
            self.type_into(&format!("{form} [name={name}]"), text);
        }
        self.click(&format!("{form} button[type=submit]"));
    }

    /// Accepts the open `confirm` dialog.
    pub(crate) fn accept_dialog(&self) {
        let deadline = Instant::now() + WAIT;
        while self
            .request(
                "POST",
                &format!("/session/{}/alert/accept", self.session),
                Some(json!({})),
            )
            .is_err()
        {
            assert!(Instant::now() < deadline, "no dialog opened");
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the window to `path`.
    pub(crate) fn screenshot(&self, path: &Path) {
        let encoded = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

/// An HTTP response's body: chromedriver keeps the connection open, so
/// read the head, then `Content-Length` bytes.
fn read_response(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    let mut data = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the connection closed before the response's head".into());
        }
        data.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no Content-Length")?;
    while data.len() < head_end + length {
        let read = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the connection closed mid-body".into());
        }
        data.extend_from_slice(&chunk[..read]);
    }
    Ok(data[head_end..head_end + length].to_vec())
}

impl Drop for Browser {
    /// Ends the session (Chromium quits), then asks chromedriver to exit so
    /// it removes its temporary folders; kills it if it does not.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.request("GET", "/shutdown", None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.driver.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
