//! CreateAcls (key 30): adds ACLs, each with its own result (an invalid
//! one is INVALID_REQUEST naming why; the others are still added). Needs
//! ALTER on the cluster; SECURITY_DISABLED when ACLs are not enforced.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

use super::{acl_api_refusal, blocking, message};
use crate::acl::{AclBinding, Caller, Operation, PatternType, Permission, ResourceType};
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (1, 3);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: CreateAclsRequest,
    _version: i16,
) -> CreateAclsResponse {
    if let Some((code, text)) = acl_api_refusal(context, caller, Operation::Alter) {
        let results = request
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(message(text.clone()))
            })
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let parsed: Vec<Result<AclBinding, String>> = request.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let acls = context.authorizer.acls().clone();
    let mut stored = blocking(move || acls.create(valid)).await.into_iter();
    let results = parsed
        .into_iter()
        .map(|parsed| {
            let outcome = parsed
                .map_err(|text| (ResponseError::InvalidRequest, text))
                .and_then(|_| {
                    let stored = stored.next().unwrap_or(Ok(()));
                    stored.map_err(|text| (ResponseError::UnknownServerError, text))
                });
            match outcome {
                Ok(()) => AclCreationResult::default(),
                Err((error, text)) => AclCreationResult::default()
                    .with_error_code(error.code())
                    .with_error_message(message(text)),
            }
        })
        .collect();
    tracing::info!(principal = %caller.principal, "ACLs created (CreateAcls)");
    CreateAclsResponse::default().with_results(results)
}

/// The ACL a creation asks for, checked.
fn binding(creation: &AclCreation) -> Result<AclBinding, String> {
    fn known<T>(value: Option<T>, what: &str, code: i8) -> Result<T, String> {
        value.ok_or_else(|| format!("{what} code {code} is not one an ACL may hold"))
    }
    let acl = AclBinding {
        resource_type: known(
            ResourceType::from_code(creation.resource_type),
            "resource type",
            creation.resource_type,
        )?,
        resource_name: creation.resource_name.to_string(),
        pattern_type: known(
            PatternType::from_code(creation.resource_pattern_type),
            "pattern type",
            creation.resource_pattern_type,
        )?,
        principal: creation.principal.to_string(),
        host: creation.host.to_string(),
        operation: known(
            Operation::from_code(creation.operation),
            "operation",
            creation.operation,
        )?,
        permission: known(
            Permission::from_code(creation.permission_type),
            "permission type",
            creation.permission_type,
        )?,
    };
    acl.validate()?;
    Ok(acl)
}
