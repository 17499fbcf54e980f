//! InitProducerId (key 22): a producer id and epoch for idempotent
//! producers. A producer that passes its current id and epoch (v3+, after
//! an error) gets the epoch bumped. Transactions are not supported: a
//! transactional id is refused.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::blocking;
use crate::log::StdIo;
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 5);

/// Handles an InitProducerId request.
pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let refused = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request.transactional_id.is_some() {
        return refused(ResponseError::InvalidRequest.code());
    }
    if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1
    {
        return InitProducerIdResponse::default()
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    let context = context.clone();
    match blocking(move || context.producer_ids.allocate(&StdIo)).await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => {
            tracing::error!(%error, "allocating a producer id failed");
            refused(ResponseError::KafkaStorageError.code())
        }
    }
}
