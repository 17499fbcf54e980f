//! EndTxn (key 26): commit or abort the producer's transaction. Answered
//! once the markers are durable in every partition and, on commit, the
//! transaction's offsets are committed.

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::blocking;
use crate::protocol::errors::transaction_error_code;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 3);

/// First version that knows PRODUCER_FENCED (KIP-588).
const FENCED_CODE_VERSION: i16 = 2;

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    request: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
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
    EndTxnResponse::default().with_error_code(code)
}
