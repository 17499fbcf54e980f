//! AddOffsetsToTxn (key 25): the transaction will commit consumer offsets
//! of a group (sent next with TxnOffsetCommit).

use std::sync::Arc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use kafka_protocol::error::ResponseError;

use super::{blocking, counted, group_refusal, transactional_id_allowed};
use kafka_protocol::messages::ApiKey;
use crate::acl::{Caller, Operation};
use crate::protocol::errors::transaction_error_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 3);

/// First version that knows PRODUCER_FENCED (KIP-588).
const FENCED_CODE_VERSION: i16 = 2;

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    // WRITE on the transactional id, READ on the group.
    if !transactional_id_allowed(context, caller, Operation::Write, &request.transactional_id) {
        let code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return AddOffsetsToTxnResponse::default().with_error_code(counted(ApiKey::AddOffsetsToTxn, code));
    }
    if let Some(code) = group_refusal(context, caller, Operation::Read, &request.group_id) {
        return AddOffsetsToTxnResponse::default().with_error_code(counted(ApiKey::AddOffsetsToTxn, code));
    }
    let coordinator = context.transactions.clone();
    let result = blocking(move || {
        coordinator.add_offsets(
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            &request.group_id,
        )
    })
    .await;
    let code = match &result {
        Ok(()) => 0,
        Err(error) => {
            tracing::debug!(%error, "AddOffsetsToTxn refused");
            transaction_error_code(error, version >= FENCED_CODE_VERSION)
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(counted(ApiKey::AddOffsetsToTxn, code))
}
