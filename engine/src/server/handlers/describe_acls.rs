//! DescribeAcls (key 29): the ACLs a filter matches, grouped by resource
//! pattern. Needs DESCRIBE on the cluster; answers SECURITY_DISABLED when
//! ACLs are not enforced (`[acl] enabled = false`), as Kafka does without
//! an authorizer.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{acl_api_refusal, message};
use crate::acl::{AclFilter, Caller, Operation};
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (1, 3);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: DescribeAclsRequest,
    _version: i16,
) -> DescribeAclsResponse {
    if let Some((code, text)) = acl_api_refusal(context, caller, Operation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(message(text));
    }
    let filter = AclFilter::from_wire(
        request.resource_type_filter,
        request.resource_name_filter.as_deref(),
        request.pattern_type_filter,
        request.principal_filter.as_deref(),
        request.host_filter.as_deref(),
        request.operation,
        request.permission_type,
    );
    let filter = match filter {
        Ok(filter) => filter,
        Err(text) => {
            return DescribeAclsResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(message(text))
        }
    };
    let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in context.authorizer.acls().describe(&filter) {
        let key = (
            acl.resource_type.code(),
            acl.resource_name,
            acl.pattern_type.code(),
        );
        resources.entry(key).or_default().push(
            AclDescription::default()
                .with_principal(StrBytes::from_string(acl.principal))
                .with_host(StrBytes::from_string(acl.host))
                .with_operation(acl.operation.code())
                .with_permission_type(acl.permission.code()),
        );
    }
    let resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name))
                .with_pattern_type(pattern_type)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}
