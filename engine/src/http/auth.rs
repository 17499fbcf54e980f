//! Who may use the admin API. It deploys and runs code, so every request
//! but `GET /health`, `GET /metrics` (unless
//! `admin.metrics_token_required`) and the web console's static page and
//! scripts (they hold no data: see `console`) must carry the broker's token
//! (`Authorization: Bearer …`), and every request but `/health` and the
//! console's assets must pass two checks a browser cannot get around,
//! because on loopback the attacker is any web page the operator opens:
//! - `Host` must name this broker (loopback, the listener's address, or
//!   `admin.allowed_hosts`): a DNS-rebinding page reaches 127.0.0.1 under
//!   its own host name.
//! - A cross-site request (`Sec-Fetch-Site: cross-site` or `same-site`,
//!   or an `Origin` whose host is not allowed) is refused, token or not.
//!
//! The token is `admin.token` from the config, else the one in
//! `<data-dir>/admin.token`, generated at first start (32 random bytes,
//! hex; the file readable by the broker's user only). The CLI on the same
//! machine reads that file (see `cli::processor::admin`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The token file in the data directory.
pub(crate) const TOKEN_FILE: &str = "admin.token";

/// `[admin]`: the admin API's access rules and TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AdminConfig {
    /// The bearer token; empty: the generated one in the data directory.
    pub(crate) token: String,
    /// Host names (without port) requests may name besides loopback and
    /// the listener's own address, e.g. the name a proxy forwards.
    pub(crate) allowed_hosts: Vec<String>,
    /// Serve HTTPS with this certificate (PEM, the server's own first,
    /// then any intermediates), together with `tls_key_file`. No default:
    /// plain HTTP, for loopback only unless `--insecure`.
    pub(crate) tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1),
    /// unencrypted. No default.
    pub(crate) tls_key_file: Option<PathBuf>,
    /// Longest wait for a client's TLS handshake once it has connected; a
    /// slower or silent peer is disconnected. Default 10 000 ms.
    pub(crate) tls_handshake_timeout_ms: u64,
    /// `GET /metrics` needs the token too (default false: Prometheus
    /// scrapes it as it scrapes any exporter; it shows names and figures,
    /// never records or credentials, and changes nothing).
    pub(crate) metrics_token_required: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token: String::new(),
            allowed_hosts: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_handshake_timeout_ms: 10_000,
            metrics_token_required: false,
        }
    }
}

/// The rules, resolved at start.
#[derive(Debug)]
pub(crate) struct AdminAuth {
    token: String,
    /// Lower-case host names, IPv6 addresses without brackets.
    allowed_hosts: Vec<String>,
    metrics_token_required: bool,
}

impl AdminAuth {
    /// The rules for a listener on `listen`: the configured token, or the
    /// data directory's (created when missing).
    pub(crate) fn open(
        config: &AdminConfig,
        data_dir: &Path,
        listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        let token = if config.token.is_empty() {
            data_dir_token(data_dir)?
        } else {
            config.token.clone()
        };
        let mut allowed_hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|h| h.to_string())
            .collect();
        allowed_hosts.push(listen.ip().to_string());
        allowed_hosts.extend(config.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
        Ok(Self {
            token,
            allowed_hosts,
            metrics_token_required: config.metrics_token_required,
        })
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host_name(host).to_ascii_lowercase();
        self.allowed_hosts.contains(&host)
    }

    /// Why `headers` may not reach the API, if they may not.
    fn refusal(&self, headers: &HeaderMap) -> Option<(StatusCode, String)> {
        self.site_refusal(headers)
            .or_else(|| self.token_refusal(headers))
    }

    /// The checks a browser cannot get around: a foreign `Host` (DNS
    /// rebinding) or a cross-site request.
    fn site_refusal(&self, headers: &HeaderMap) -> Option<(StatusCode, String)> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(host) = text("host") {
            if !self.host_allowed(host) {
                return Some((
                    StatusCode::FORBIDDEN,
                    format!(
                        "Host {host:?} is not this broker's (a guard against DNS rebinding); \
                         add it to [admin] allowed_hosts if a proxy forwards it"
                    ),
                ));
            }
        }
        let site = text("sec-fetch-site");
        let origin = text("origin").filter(|origin| *origin != "null");
        let cross_origin = origin.is_some_and(|origin| {
            let host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            !self.host_allowed(host)
        });
        if matches!(site, Some("cross-site" | "same-site")) || cross_origin {
            return Some((
                StatusCode::FORBIDDEN,
                "cross-site requests to the admin API are refused".to_string(),
            ));
        }
        None
    }

    fn token_refusal(&self, headers: &HeaderMap) -> Option<(StatusCode, String)> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let presented = text("authorization").and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(token)
                if crate::random::constant_time_eq(
                    token.trim().as_bytes(),
                    self.token.as_bytes(),
                ) =>
            {
                None
            }
            Some(_) => Some((
                StatusCode::UNAUTHORIZED,
                "the admin token is wrong".to_string(),
            )),
            None => Some((
                StatusCode::UNAUTHORIZED,
                format!(
                    "the admin API needs the broker's token: Authorization: Bearer <token> \
                     (in <data-dir>/{TOKEN_FILE}; the CLI reads it from there, or from \
                     --token / SLUICE_TOKEN)"
                ),
            )),
        }
    }
}

/// The middleware: `/health`, the console's assets (and `/metrics` unless
/// configured otherwise) pass; everything else is checked.
pub(crate) async fn guard(
    State(auth): State<Arc<AdminAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let refusal = match path {
        "/health" => None,
        // The console's page and scripts hold no data (see `console`).
        _ if super::console::is_asset(path) => None,
        // No token (a Prometheus scrape carries none), but still only for
        // this broker's own host names and never cross-site: a web page
        // must not read it by DNS rebinding.
        "/metrics" if !auth.metrics_token_required => auth.site_refusal(request.headers()),
        _ => auth.refusal(request.headers()),
    };
    match refusal {
        None => next.run(request).await,
        Some((status, message)) => {
            tracing::debug!(path = request.uri().path(), %status, %message, "admin request refused");
            let mut response = (status, Json(json!({ "error": message }))).into_response();
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}

/// `host[:port]` or `[v6]:port` without the port and brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The data directory's token, created when missing.
fn data_dir_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let bytes = crate::random::bytes::<32>()?;
    let token = crate::random::hex(&bytes);
    crate::random::write_private(&path, token.as_bytes())?;
    tracing::info!(path = %path.display(), "generated the admin API token");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AdminAuth {
        AdminAuth {
            token: "secret".into(),
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            metrics_token_required: false,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn host_origin_and_token_are_each_checked() {
        let auth = auth();
        let ok = [
            ("host", "127.0.0.1:9644"),
            ("authorization", "Bearer secret"),
        ];
        assert!(auth.refusal(&headers(&ok)).is_none());
        assert!(auth
            .refusal(&headers(&[
                ("host", "[::1]:9644"),
                ("authorization", "Bearer secret")
            ]))
            .is_none());
        let refused = |pairs: &[(&'static str, &str)]| auth.refusal(&headers(pairs)).unwrap().0;
        assert_eq!(
            refused(&[
                ("host", "evil.example:9644"),
                ("authorization", "Bearer secret")
            ]),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            refused(&[
                ("host", "localhost:9644"),
                ("origin", "http://evil.example"),
                ("authorization", "Bearer secret")
            ]),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            refused(&[
                ("host", "localhost"),
                ("sec-fetch-site", "cross-site"),
                ("authorization", "Bearer secret")
            ]),
            StatusCode::FORBIDDEN
        );
        assert_eq!(refused(&[("host", "localhost")]), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused(&[("host", "localhost"), ("authorization", "Bearer wrong")]),
            StatusCode::UNAUTHORIZED
        );
        // A same-origin page of the broker itself (the web console).
        assert!(auth
            .refusal(&headers(&[
                ("host", "localhost:9644"),
                ("origin", "http://localhost:9644"),
                ("sec-fetch-site", "same-origin"),
                ("authorization", "Bearer secret")
            ]))
            .is_none());
    }

    #[test]
    fn the_generated_token_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = data_dir_token(dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(data_dir_token(dir.path()).unwrap(), first);
    }
}
