//! The web console: one page and its script and style sheet, embedded in
//! the binary (no CDN, no build step), served at `/` and `/console/*`.
//!
//! Who may call what: these assets hold no data and change nothing, so
//! they are served to anyone, without the token, and even to a link
//! followed from another site (the guard lets them pass). Every figure
//! the page shows comes from `/v1`, which the page calls same-origin with
//! the token the operator gives it once (pasted, or in the URL fragment
//! `#token=…` that `sluice console` prints; a fragment never reaches the
//! server). It keeps the token in `sessionStorage`, so it goes with the
//! tab. The page must not be framed (clickjacking of its buttons), and
//! runs only its own script (CSP), so a record's text shown on it cannot
//! run as code.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("index.html");
const STYLE_CSS: &str = include_str!("style.css");
const CORE_JS: &str = include_str!("core.js");
const PAGES_JS: &str = include_str!("pages.js");
const PROCESSORS_JS: &str = include_str!("processors.js");

/// Whether `path` is one of the console's assets (served without the
/// token).
pub(super) fn is_asset(path: &str) -> bool {
    path == "/" || path.starts_with("/console/")
}

pub(super) fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/console/core.js", get(|| async { script(CORE_JS) }))
        .route("/console/pages.js", get(|| async { script(PAGES_JS) }))
        .route(
            "/console/processors.js",
            get(|| async { script(PROCESSORS_JS) }),
        )
}

fn script(body: &'static str) -> Response {
    asset("text/javascript; charset=utf-8", body)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_the_console_only() {
        assert!(is_asset("/"));
        assert!(is_asset("/console/core.js"));
        assert!(!is_asset("/v1/topics"));
        assert!(!is_asset("/consoles"));
        // The page loads only what is embedded.
        for src in [
            "/console/core.js",
            "/console/pages.js",
            "/console/processors.js",
        ] {
            assert!(INDEX_HTML.contains(src), "{src}");
        }
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
    }
}
