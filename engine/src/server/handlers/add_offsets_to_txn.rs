//! AddOffsetsToTxn (key 25): the transaction will commit consumer offsets
//! of a group (sent next with TxnOffsetCommit).

use std::sync::Arc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::blocking;
use crate::protocol::errors::transaction_error_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 3);

/// First version that knows PRODUCER_FENCED (KIP-588).
const FENCED_CODE_VERSION: i16 = 2;

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
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
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
