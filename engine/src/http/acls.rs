//! The Kafka listener's ACLs (JSON; errors are `{"error": "…"}`), behind
//! the admin API's access rules: the operator manages them here (`sluice
//! acl`), Kafka admin clients with CreateAcls/DescribeAcls/DeleteAcls.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /v1/acls?FILTER` | `{"enforced": bool, "acls": [ACL…]}` |
//! | `POST /v1/acls` | `{"acls": [ACL…]}`: add them, all or none (one invalid ACL is a 400 naming it; more than `[acl] acls_max` in all a 409) |
//! | `DELETE /v1/acls` | body `FILTER`: remove what it matches; `{"deleted": [ACL…]}` |
//!
//! An ACL: `{"resource_type": "TOPIC", "resource_name": "orders",
//! "pattern_type": "LITERAL", "principal": "User:alice", "host": "*",
//! "operation": "READ", "permission": "ALLOW"}`. A FILTER has the same
//! fields, each optional (absent: any), with `pattern_type` one of ANY,
//! MATCH (every ACL that applies to the named resource), LITERAL, PREFIXED.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::acl::{
    AclBinding, AclFilter, Authorizer, Operation, PatternFilter, Permission, ResourceType,
};

/// Largest request body: room for thousands of ACLs in one call.
const BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

pub(super) fn routes(authorizer: Arc<Authorizer>) -> Router {
    Router::new()
        .route("/v1/acls", get(list).post(create).delete(delete))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(authorizer)
}

/// A filter as JSON or a query string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    resource_type: Option<String>,
    resource_name: Option<String>,
    pattern_type: Option<String>,
    principal: Option<String>,
    host: Option<String>,
    operation: Option<String>,
    permission: Option<String>,
}

impl Filter {
    fn parse(self) -> Result<AclFilter, String> {
        fn field<T>(
            value: Option<String>,
            what: &str,
            parse: fn(&str) -> Option<T>,
            names: &[&str],
        ) -> Result<Option<T>, String> {
            match value.as_deref() {
                None | Some("ANY") | Some("any") => Ok(None),
                Some(text) => parse(text).map(Some).ok_or_else(|| {
                    format!("{what} {text:?} is not one of ANY, {}", names.join(", "))
                }),
            }
        }
        let pattern = match self.pattern_type.as_deref() {
            None => PatternFilter::Any,
            Some(text) => PatternFilter::parse(text).ok_or_else(|| {
                format!("pattern_type {text:?} is not one of ANY, MATCH, LITERAL, PREFIXED")
            })?,
        };
        Ok(AclFilter {
            resource_type: field(
                self.resource_type,
                "resource_type",
                ResourceType::parse,
                ResourceType::names(),
            )?,
            resource_name: self.resource_name,
            pattern,
            principal: self.principal,
            host: self.host,
            operation: field(
                self.operation,
                "operation",
                Operation::parse,
                Operation::names(),
            )?,
            permission: field(
                self.permission,
                "permission",
                Permission::parse,
                Permission::names(),
            )?,
        })
    }
}

async fn list(State(authorizer): State<Arc<Authorizer>>, Query(filter): Query<Filter>) -> Response {
    match filter.parse() {
        Ok(filter) => Json(json!({
            "enforced": authorizer.enabled(),
            "acls": authorizer.acls().describe(&filter),
        }))
        .into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    acls: Vec<AclBinding>,
}

async fn create(State(authorizer): State<Arc<Authorizer>>, Json(body): Json<Create>) -> Response {
    if let Some(message) = body.acls.iter().find_map(|acl| {
        acl.validate()
            .err()
            .map(|e| format!("{e}: {}", describe(acl)))
    }) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let count = body.acls.len();
    // Saving fsyncs: off the async workers.
    let acls = authorizer.acls().clone();
    match tokio::task::spawn_blocking(move || acls.create_all(body.acls)).await {
        Ok(Ok(added)) => {
            tracing::info!(count, added, "ACLs created through the admin API");
            let enforced = authorizer.enabled();
            Json(json!({ "created": count, "added": added, "enforced": enforced })).into_response()
        }
        Ok(Err(message)) => error(StatusCode::CONFLICT, message),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()),
    }
}

/// The filter is required: `{}` (delete every ACL) must be said.
async fn delete(State(authorizer): State<Arc<Authorizer>>, Json(filter): Json<Filter>) -> Response {
    let filter = match filter.parse() {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let acls = authorizer.acls().clone();
    let removed = tokio::task::spawn_blocking(move || acls.delete(&[filter])).await;
    match removed.unwrap_or_else(|join| Err(join.to_string())) {
        Ok(mut removed) => {
            let deleted = removed.pop().unwrap_or_default();
            tracing::info!(count = deleted.len(), "ACLs deleted through the admin API");
            Json(json!({ "deleted": deleted })).into_response()
        }
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

/// One line naming an ACL, for messages.
fn describe(acl: &AclBinding) -> String {
    format!(
        "{} {} on {} {} {:?} from {}",
        acl.permission,
        acl.operation,
        acl.pattern_type,
        acl.resource_type,
        acl.resource_name,
        acl.principal
    )
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
