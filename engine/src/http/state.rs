//! Interactive queries of processors' committed state (JSON; errors are
//! `{"error": "…"}`). Read-only; served beside the admin API and behind
//! the same access rules.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /v1/processors/{name}/stores/{store}/keys/{key}?partition=&stale=` | the key's value, its partition and that partition's committed position |
//! | `GET /v1/processors/{name}/stores/{store}/keys?prefix=&from=&to=&limit=&partition=&cursor=&stale=` | a page of entries in key order, partition after partition, and a `cursor` for the next |
//! | `GET /v1/processors/{name}/stores/{store}/windows/{key}?from=&to=&partition=&stale=` | the key's windows starting in `[from, to]` (milliseconds) |
//!
//! Values are shown as JSON when they are JSON (the SDK's typed values and
//! counters), else as text or hex (`encoding` says which). A partition
//! restoring its state from its changelog answers 503 with `Retry-After`
//! (as does one rebuilding lost state from its input, unless `stale=true`):
//! a key not found elsewhere may be there.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::processor::registry::query::{Among, ScanRequest};
use crate::processor::{AdminError, Processors};

pub(crate) fn routes(processors: Arc<Processors>) -> Router {
    Router::new()
        .route("/v1/processors/{name}/stores/{store}/keys", get(scan))
        .route("/v1/processors/{name}/stores/{store}/keys/{key}", get(key))
        .route(
            "/v1/processors/{name}/stores/{store}/windows/{key}",
            get(windows),
        )
        .with_state(processors)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyParams {
    partition: Option<i32>,
    #[serde(default)]
    stale: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanParams {
    prefix: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    partition: Option<i32>,
    cursor: Option<String>,
    #[serde(default)]
    stale: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowParams {
    from: Option<i64>,
    to: Option<i64>,
    partition: Option<i32>,
    #[serde(default)]
    stale: bool,
}

/// Runs a read of RocksDB off the async workers.
async fn blocking<T: serde::Serialize + Send + 'static>(
    read: impl FnOnce() -> Result<T, AdminError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(error)) => error.into_response(),
        Err(error) => AdminError::Internal(error.to_string()).into_response(),
    }
}

async fn key(
    State(processors): State<Arc<Processors>>,
    Path((name, store, key)): Path<(String, String, String)>,
    Query(params): Query<KeyParams>,
) -> Response {
    let among = Among {
        partition: params.partition,
        stale: params.stale,
    };
    blocking(move || processors.query_key(&name, &store, key.as_bytes(), among)).await
}

async fn scan(
    State(processors): State<Arc<Processors>>,
    Path((name, store)): Path<(String, String)>,
    Query(params): Query<ScanParams>,
) -> Response {
    if params.prefix.is_some() && (params.from.is_some() || params.to.is_some()) {
        return AdminError::BadRequest("give prefix, or from/to, not both".into()).into_response();
    }
    let request = ScanRequest {
        prefix: params.prefix.map(String::into_bytes),
        from: params.from.map(String::into_bytes),
        to: params.to.map(String::into_bytes),
        limit: params.limit.unwrap_or(100),
        cursor: params.cursor,
        among: Among {
            partition: params.partition,
            stale: params.stale,
        },
    };
    blocking(move || processors.query_scan(&name, &store, &request)).await
}

async fn windows(
    State(processors): State<Arc<Processors>>,
    Path((name, store, key)): Path<(String, String, String)>,
    Query(params): Query<WindowParams>,
) -> Response {
    let range = (
        params.from.unwrap_or(i64::MIN),
        params.to.unwrap_or(i64::MAX - 1),
    );
    let among = Among {
        partition: params.partition,
        stale: params.stale,
    };
    blocking(move || processors.query_windows(&name, &store, key.as_bytes(), range, among)).await
}
