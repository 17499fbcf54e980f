//! InitProducerId (key 22): a producer id and epoch. Without a
//! transactional id, a fresh id for an idempotent producer (also when it
//! sends its current id and epoch, v3+: Kafka, too, answers with a new
//! id). With one, the transaction
//! coordinator's: the id's producer with its epoch bumped, which fences
//! the previous producer and aborts its open transaction.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use kafka_protocol::error::ResponseError;

use super::{blocking, cluster_allowed, counted, transactional_id_allowed};
use kafka_protocol::messages::ApiKey;
use crate::acl::{Caller, Operation, ResourceType};
use crate::protocol::errors::transaction_error_code;
use crate::server::BrokerContext;
use crate::transaction::TransactionError;

pub(crate) const VERSIONS: (i16, i16) = (0, 5);

/// First version that knows PRODUCER_FENCED (KIP-588).
const FENCED_CODE_VERSION: i16 = 4;

/// Why `caller` may not have a producer id, if it may not: a transactional
/// one needs WRITE on its transactional id; an idempotent one
/// IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679).
fn refusal(
    context: &BrokerContext,
    caller: &Caller,
    request: &InitProducerIdRequest,
) -> Option<ResponseError> {
    match &request.transactional_id {
        Some(id) if !transactional_id_allowed(context, caller, Operation::Write, id) => {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        }
        Some(_) => None,
        None if cluster_allowed(context, caller, Operation::IdempotentWrite)
            || (context.authorizer).allows_any(caller, Operation::Write, ResourceType::Topic) =>
        {
            None
        }
        None => Some(ResponseError::ClusterAuthorizationFailed),
    }
}

/// Handles an InitProducerId request.
pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    if let Some(code) = refusal(context, caller, &request) {
        return InitProducerIdResponse::default()
            .with_error_code(counted(ApiKey::InitProducerId, code.code()))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let current = (request.producer_id.0 >= 0 && request.producer_epoch >= 0)
        .then_some((request.producer_id.0, request.producer_epoch));
    let coordinator = context.transactions.clone();
    let result = match request.transactional_id {
        Some(id) => {
            let timeout_ms = request.transaction_timeout_ms;
            blocking(move || coordinator.init_producer_id(&id, timeout_ms, current)).await
        }
        // Always a new id, whatever id and epoch the producer sends (as
        // Kafka does): bumping an epoch on request would let any client
        // raise another producer's epoch, fencing it, or a transactional
        // producer's above its coordinator's.
        None => blocking(move || coordinator.allocate_producer_id())
            .await
            .map(|id| (id, 0))
            .map_err(|error| {
                tracing::error!(%error, "allocating a producer id failed");
                TransactionError::storage(error)
            }),
    };
    match result {
        Ok((producer_id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
        Err(error) => {
            tracing::debug!(%error, "InitProducerId refused");
            InitProducerIdResponse::default()
                .with_error_code(counted(
                    ApiKey::InitProducerId,
                    transaction_error_code(&error, version >= FENCED_CODE_VERSION),
                ))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
