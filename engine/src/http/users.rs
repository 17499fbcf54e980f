//! The Kafka listener's SASL users (JSON; errors are `{"error": "…"}`),
//! behind the admin API's access rules: only the operator adds users.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /v1/users` | `{"users": [{"name", "mechanisms"}…]}` (never credentials) |
//! | `PUT /v1/users/{name}` | `{"password": "…"}`: create the user or change its password (SCRAM-SHA-256 and -512 credentials; PLAIN checks against them) |
//! | `DELETE /v1/users/{name}` | delete (404 if unknown); its open connections stay until they close |

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::server::sasl::Users;

/// Largest request body: a password is at most 1 KiB.
const BODY_BYTES_MAX: usize = 16 * 1024;

pub(crate) fn routes(users: Arc<Users>) -> Router {
    Router::new()
        .route("/v1/users", get(list))
        .route("/v1/users/{name}", axum::routing::put(set).delete(delete))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(users)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetUser {
    password: String,
}

async fn list(State(users): State<Arc<Users>>) -> Response {
    Json(json!({ "users": users.list() })).into_response()
}

async fn set(
    State(users): State<Arc<Users>>,
    Path(name): Path<String>,
    Json(body): Json<SetUser>,
) -> Response {
    // PBKDF2 takes milliseconds: off the async workers.
    let stored = tokio::task::spawn_blocking(move || {
        users.set(&name, &body.password).map(|()| {
            tracing::info!(user = %name, "SASL user created or its password changed");
            users.list().into_iter().find(|u| u.name == name)
        })
    })
    .await;
    match stored {
        Ok(Ok(user)) => Json(json!(user)).into_response(),
        Ok(Err(message)) => error(StatusCode::BAD_REQUEST, message),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()),
    }
}

async fn delete(State(users): State<Arc<Users>>, Path(name): Path<String>) -> Response {
    match users.delete(&name) {
        Ok(true) => {
            tracing::info!(user = %name, "SASL user deleted");
            Json(json!({ "deleted": name })).into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no user {name:?}")),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
