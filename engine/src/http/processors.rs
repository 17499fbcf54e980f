//! The processor admin API (JSON; errors are `{"error": "…"}`):
//!
//! | method and path | what |
//! |---|---|
//! | `PUT /v1/processors/{name}` | deploy or redeploy: multipart parts `spec` (JSON) and `wasm` |
//! | `GET /v1/processors` | `{"processors": [status…], "compile_cache": {"hits", "misses"}}` |
//! | `GET /v1/processors/{name}` | status |
//! | `POST /v1/processors/{name}/pause` | pause; answers the status |
//! | `POST /v1/processors/{name}/resume` | resume (and restart failed partitions) |
//! | `DELETE /v1/processors/{name}` | remove, with its committed offsets (409 while a Kafka client is a member of its group) |

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;

use crate::processor::spec::DeployRequest;
use crate::processor::{AdminError, Processors};

/// The routes, with room in the body limit for the largest plugin.
pub(crate) fn routes(processors: Arc<Processors>) -> Router {
    let body_bytes_max = processors.wasm_bytes_max() as usize + (1 << 20);
    Router::new()
        .route("/v1/processors", get(list))
        .route(
            "/v1/processors/{name}",
            get(status).put(deploy).delete(remove),
        )
        .route("/v1/processors/{name}/pause", post(pause))
        .route("/v1/processors/{name}/resume", post(resume))
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .with_state(processors)
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = Json(json!({ "error": self.to_string() }));
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                (status, [(axum::http::header::RETRY_AFTER, "1")], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}

async fn list(State(processors): State<Arc<Processors>>) -> Response {
    let (hits, misses) = processors.runtime().cache_stats();
    let (state_bytes, staged_bytes, state_bytes_max) = processors.state_memory();
    Json(json!({
        "processors": processors.list(),
        "compile_cache": { "hits": hits, "misses": misses },
        "state": {
            "memory_bytes": state_bytes,
            "staged_bytes": staged_bytes,
            "memory_bytes_max": state_bytes_max,
        },
    }))
    .into_response()
}

async fn status(State(processors): State<Arc<Processors>>, Path(name): Path<String>) -> Response {
    match processors.status(&name) {
        Ok(status) => Json(status).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn deploy(
    State(processors): State<Arc<Processors>>,
    Path(name): Path<String>,
    multipart: Multipart,
) -> Response {
    let deployed = async {
        let (request, wasm) = read_deploy(multipart).await?;
        processors.deploy(&name, request, wasm).await
    };
    match deployed.await {
        Ok(status) => Json(status).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The `spec` and `wasm` parts of a deploy request.
async fn read_deploy(mut multipart: Multipart) -> Result<(DeployRequest, Bytes), AdminError> {
    let bad = |m: String| AdminError::BadRequest(m);
    let mut spec = None;
    let mut wasm = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(format!("reading the multipart body: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let data = field
            .bytes()
            .await
            .map_err(|e| bad(format!("reading part {name:?}: {e}")))?;
        match name.as_str() {
            "spec" => {
                spec = Some(
                    serde_json::from_slice::<DeployRequest>(&data)
                        .map_err(|e| bad(format!("bad spec: {e}")))?,
                )
            }
            "wasm" => wasm = Some(data),
            other => {
                return Err(bad(format!(
                    "unexpected part {other:?}; send spec and wasm"
                )))
            }
        }
    }
    match (spec, wasm) {
        (Some(spec), Some(wasm)) => Ok((spec, wasm)),
        (None, _) => Err(bad("missing the spec part (JSON)".into())),
        (_, None) => Err(bad("missing the wasm part (the plugin)".into())),
    }
}

async fn pause(State(processors): State<Arc<Processors>>, Path(name): Path<String>) -> Response {
    match processors.set_paused(&name, true).await {
        Ok(status) => Json(status).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn resume(State(processors): State<Arc<Processors>>, Path(name): Path<String>) -> Response {
    match processors.set_paused(&name, false).await {
        Ok(status) => Json(status).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn remove(State(processors): State<Arc<Processors>>, Path(name): Path<String>) -> Response {
    match processors.remove(&name).await {
        Ok(()) => Json(json!({ "removed": name })).into_response(),
        Err(error) => error.into_response(),
    }
}
