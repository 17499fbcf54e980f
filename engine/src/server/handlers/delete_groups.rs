//! DeleteGroups (key 42): only groups without members; their committed
//! offsets go too.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{blocking, group_refusal};
use crate::acl::{Caller, Operation};
use crate::protocol::errors::group_result_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 2);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    // DELETE on each group, asked before the blocking work.
    let refusals: Vec<Option<i16>> = (request.groups_names.iter())
        .map(|group| group_refusal(context, caller, Operation::Delete, group))
        .collect();
    let context = context.clone();
    let results = blocking(move || {
        request
            .groups_names
            .into_iter()
            .zip(refusals)
            .map(|(group, refused)| {
                let code = refused
                    .unwrap_or_else(|| group_result_code(&context.groups.delete(&group)));
                DeletableGroupResult::default()
                    .with_group_id(group)
                    .with_error_code(code)
            })
            .collect()
    })
    .await;
    DeleteGroupsResponse::default().with_results(results)
}
