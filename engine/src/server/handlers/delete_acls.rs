//! DeleteAcls (key 31): removes the ACLs each filter matches and answers
//! with them. Needs ALTER on the cluster; SECURITY_DISABLED when ACLs are
//! not enforced.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{acl_api_refusal, blocking, message};
use crate::acl::{AclFilter, Caller, Operation};
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (1, 3);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: DeleteAclsRequest,
    _version: i16,
) -> DeleteAclsResponse {
    let refused = |code: i16, text: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(message(text))
    };
    if let Some((code, text)) = acl_api_refusal(context, caller, Operation::Alter) {
        let results = request.filters.iter().map(|_| refused(code, text.clone())).collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let parsed: Vec<Result<AclFilter, String>> = request
        .filters
        .iter()
        .map(|f| {
            AclFilter::from_wire(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let filters: Vec<AclFilter> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let acls = context.authorizer.acls().clone();
    let deleted = blocking(move || acls.delete(&filters)).await;
    let mut deleted = match deleted {
        Ok(deleted) => deleted.into_iter(),
        Err(text) => {
            let code = ResponseError::UnknownServerError.code();
            let results = parsed.iter().map(|_| refused(code, text.clone())).collect();
            return DeleteAclsResponse::default().with_filter_results(results);
        }
    };
    let results = parsed
        .into_iter()
        .map(|parsed| match parsed {
            Err(text) => refused(ResponseError::InvalidRequest.code(), text),
            Ok(_) => {
                let matching = deleted.next().unwrap_or_default().into_iter().map(|acl| {
                    DeleteAclsMatchingAcl::default()
                        .with_resource_type(acl.resource_type.code())
                        .with_resource_name(StrBytes::from_string(acl.resource_name))
                        .with_pattern_type(acl.pattern_type.code())
                        .with_principal(StrBytes::from_string(acl.principal))
                        .with_host(StrBytes::from_string(acl.host))
                        .with_operation(acl.operation.code())
                        .with_permission_type(acl.permission.code())
                });
                DeleteAclsFilterResult::default().with_matching_acls(matching.collect())
            }
        })
        .collect();
    tracing::info!(principal = %caller.principal, "ACLs deleted (DeleteAcls)");
    DeleteAclsResponse::default().with_filter_results(results)
}
