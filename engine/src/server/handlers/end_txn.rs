//! EndTxn (key 26): commit or abort the producer's transaction. Answered
//! once the markers are durable in every partition and, on commit, the
//! transaction's offsets are committed.

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use kafka_protocol::error::ResponseError;

use super::{blocking, counted, transactional_id_allowed};
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
    request: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
    if !transactional_id_allowed(context, caller, Operation::Write, &request.transactional_id) {
        let code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return EndTxnResponse::default().with_error_code(counted(ApiKey::EndTxn, code));
    }
    let coordinator = context.transactions.clone();
    let result = blocking(move || {
        coordinator.end(
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
    })
    .await;
    let code = match &result {
        Ok(()) => 0,
        Err(error) => {
            tracing::debug!(%error, "EndTxn refused");
            transaction_error_code(error, version >= FENCED_CODE_VERSION)
        }
    };
    EndTxnResponse::default().with_error_code(counted(ApiKey::EndTxn, code))
}
