//! The client of the broker's HTTP admin API that `sluice processor` uses:
//! base URL handling, timeouts, a bound on what an answer may make us
//! allocate, and error messages that say what went wrong in the user's
//! terms (the broker's own `{"error": …}` message, or that the broker is
//! not reachable and how to point at it), and the admin token: `--token`
//! or `SLUICE_TOKEN`, else the broker's own `<data-dir>/admin.token` when
//! this machine can read it (the broker's `/health` says where its data
//! directory is), so the commands work as they are on the broker's host.
//! Over HTTPS (`--admin https://…`) the broker's certificate must chain to
//! a root this machine trusts or to the CA of `--ca-file`.

use std::error::Error as StdError;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

/// Largest admin API answer read (a status of thousands of partitions is
/// well under a megabyte).
const RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// How long to wait for the TCP connection to the admin API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one admin request may take: a deploy includes the broker's
/// compilation of the component, which takes seconds for a large plugin.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the admin verbs (`processor`, `user`) find the broker's admin API.
#[derive(Debug, Clone, Args)]
pub(crate) struct AdminArgs {
    /// The broker's admin API (`sluice serve --http`): `http://…`, or
    /// `https://…` when it has a certificate; `http://` may be left out.
    #[arg(
        long,
        env = "SLUICE_ADMIN",
        default_value = "http://127.0.0.1:9644",
        value_name = "URL"
    )]
    pub(crate) admin: String,
    /// The admin API's token [default: the broker's `<data-dir>/admin.token`
    /// when readable from this machine].
    #[arg(
        long,
        env = "SLUICE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// A PEM file of CA certificates to trust for an `https://` admin API
    /// besides the system's (e.g. the CA of a self-signed certificate).
    #[arg(long, env = "SLUICE_CA_FILE", value_name = "PATH")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
}

/// How much of a non-JSON error body is quoted in the error message.
const ERROR_BODY_CHARS_MAX: usize = 500;

/// A client of one broker's admin API.
pub(crate) struct Admin {
    /// `http[s]://host:port[/prefix]`, without a trailing slash.
    base: String,
    http: reqwest::Client,
    /// The bearer token: given, or found once on first use.
    token: tokio::sync::OnceCell<Option<String>>,
}

impl Admin {
    /// A client of the admin API at `url`; `http://` is added when no
    /// scheme is given. Over HTTPS, the CA certificates of `ca_file` are
    /// trusted besides the system's.
    pub(crate) fn new(url: &str, ca_file: Option<&std::path::Path>) -> Result<Self> {
        let url = url.trim();
        let base = match url.contains("://") {
            true => url.to_string(),
            false => format!("http://{url}"),
        };
        let parsed =
            reqwest::Url::parse(&base).with_context(|| format!("--admin {url:?} is not a URL"))?;
        let https = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => bail!("--admin {url:?}: {other}:// is not http:// or https://"),
        };
        let base = base.trim_end_matches('/').to_string();
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // The system's roots are read only when they may be needed.
            .tls_built_in_root_certs(https);
        if let Some(path) = ca_file {
            for certificate in read_ca_file(path)? {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http.build()?;
        Ok(Self {
            base,
            http,
            token: tokio::sync::OnceCell::new(),
        })
    }

    /// A client as the processor verbs' flags say.
    pub(crate) fn from_args(args: &AdminArgs) -> Result<Self> {
        let admin = Self::new(&args.admin, args.ca_file.as_deref())?;
        if let Some(token) = args.token.clone().filter(|t| !t.is_empty()) {
            admin
                .token
                .set(Some(token))
                .expect("a fresh client has no token");
        }
        Ok(admin)
    }

    /// `http[s]://host:port[/prefix]`, without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// The token to present: given, else the broker's token file when this
    /// machine can read it.
    pub(crate) async fn token(&self) -> Option<&str> {
        self.token
            .get_or_init(|| async {
                let health: Value = self
                    .http
                    .get(format!("{}/health", self.base))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let data_dir = health["data_dir"].as_str()?;
                let path = std::path::Path::new(data_dir).join(crate::http::TOKEN_FILE);
                let token = std::fs::read_to_string(path).ok()?;
                Some(token.trim().to_string())
            })
            .await
            .as_deref()
    }

    /// Sends `request` and reads its JSON answer; a non-2xx answer becomes
    /// an error carrying the broker's `{"error": …}` message.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Value> {
        let request = match self.token().await {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let mut response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
                bail!("the admin API answered with more than {RESPONSE_BYTES_MAX} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(answer_error(status, &body));
        }
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "the admin API at {} answered {status} with something other than JSON: {}",
                self.base,
                quote(&body)
            )
        })
    }

    fn transport_error(&self, error: reqwest::Error) -> anyhow::Error {
        let cause = root_cause(&error);
        if cause.contains("CaUsedAsEndEntity") {
            return anyhow!(
                "the broker's admin API at {} presented a CA certificate as its own ({cause}): \
                 `openssl req -x509` makes one by default; give the broker a certificate signed \
                 by that CA, or a self-signed one made with -addext \
                 basicConstraints=critical,CA:FALSE",
                self.base
            );
        }
        if self.base.starts_with("https://") && cause.contains("certificate") {
            return anyhow!(
                "the broker's admin API at {} presented a certificate this machine does not \
                 trust ({cause}); pass the CA that signed it with --ca-file (or SLUICE_CA_FILE)",
                self.base
            );
        }
        if self.base.starts_with("http://") && cause.contains("invalid HTTP version") {
            return anyhow!(
                "the broker's admin API at {} did not answer in HTTP ({cause}); if it serves \
                 HTTPS ([admin] tls_cert_file), point --admin at https://",
                self.base
            );
        }
        if error.is_connect() {
            return anyhow!(
                "the broker's admin API at {} is not reachable ({cause}); is the broker \
                 running? Point --admin (or SLUICE_ADMIN) at its HTTP listener",
                self.base
            );
        }
        if error.is_timeout() {
            return anyhow!(
                "the broker's admin API at {} did not answer in time ({cause})",
                self.base
            );
        }
        anyhow!("request to the admin API at {} failed: {cause}", self.base)
    }
}

/// The CA certificates of a PEM file.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let pem =
        std::fs::read(path).with_context(|| format!("reading the --ca-file {}", path.display()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("parsing the --ca-file {}", path.display()))?;
    if certificates.is_empty() {
        bail!(
            "the --ca-file {} holds no PEM CERTIFICATE block",
            path.display()
        );
    }
    Ok(certificates)
}

/// The error of a non-2xx answer: the broker's message when the body is
/// `{"error": "…"}`, else the HTTP status and (the start of) the body.
fn answer_error(status: reqwest::StatusCode, body: &[u8]) -> anyhow::Error {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string));
    match message {
        Some(message) => anyhow!("{message}"),
        None if body.is_empty() => anyhow!("the admin API answered {status}"),
        None => anyhow!("the admin API answered {status}: {}", quote(body)),
    }
}

/// `body` as text for an error message, cut short when long.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(ERROR_BODY_CHARS_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The innermost error of a chain ("Connection refused (os error 111)"),
/// which says more than reqwest's own "error sending request".
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// Percent-encodes everything but unreserved characters (RFC 3986): a
/// name as one URL path segment.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;

    #[test]
    fn error_answers_become_messages() {
        let json = br#"{"error": "no processor named x"}"#;
        let error = answer_error(StatusCode::NOT_FOUND, json);
        assert_eq!(error.to_string(), "no processor named x");
        let other_json = answer_error(StatusCode::BAD_REQUEST, br#"{"message": "m"}"#);
        assert_eq!(
            other_json.to_string(),
            r#"the admin API answered 400 Bad Request: {"message": "m"}"#
        );
        let empty = answer_error(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(
            empty.to_string(),
            "the admin API answered 503 Service Unavailable"
        );
    }

    #[test]
    fn long_bodies_are_cut() {
        let long = "é".repeat(ERROR_BODY_CHARS_MAX + 10);
        let quoted = quote(long.as_bytes());
        assert_eq!(quoted.chars().count(), ERROR_BODY_CHARS_MAX + 1);
        assert!(quoted.ends_with('…'));
        assert_eq!(quote(b"  short\n"), "short");
        assert_eq!(quote(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn admin_urls() {
        assert!(Admin::new("127.0.0.1:9644", None).is_ok());
        assert!(Admin::new("http://localhost:9644/", None).is_ok());
        assert!(Admin::new("https://broker:9644", None).is_ok());
        let ftp = format!("{:#}", Admin::new("ftp://broker:9644", None).err().unwrap());
        assert!(ftp.contains("not http:// or https://"), "{ftp}");
        assert!(Admin::new("http://", None).is_err());
        let missing = std::path::Path::new("/nonexistent/ca.pem");
        let error = Admin::new("https://broker:9644", Some(missing))
            .err()
            .unwrap();
        let error = format!("{error:#}");
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
