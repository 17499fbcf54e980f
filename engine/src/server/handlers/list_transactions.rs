//! ListTransactions (key 66, KIP-664): transactional ids with their
//! producer id and state, filtered by state, producer id and (v1) by how
//! long the transaction has been open. Unknown state names are echoed in
//! `unknown_state_filters`, as Kafka does.

use std::sync::Arc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::{blocking, transactional_id_allowed};
use crate::acl::{Caller, Operation};
use crate::server::BrokerContext;

pub(crate) const VERSIONS: (i16, i16) = (0, 1);

pub(crate) async fn handle(
    context: &Arc<BrokerContext>,
    caller: &Caller,
    request: ListTransactionsRequest,
    _version: i16,
) -> ListTransactionsResponse {
    let unknown: Vec<StrBytes> = request
        .state_filters
        .iter()
        .filter(|filter| {
            !crate::transaction::state::TransactionState::ALL
                .iter()
                .any(|state| state.kafka_name() == filter.as_str())
        })
        .cloned()
        .collect();
    let coordinator = context.transactions.clone();
    let listed = blocking(move || coordinator.list()).await;
    let now_ms = context.transactions.now_ms();
    let states = listed
        .into_iter()
        // Those the caller may DESCRIBE.
        .filter(|meta| {
            transactional_id_allowed(context, caller, Operation::Describe, &meta.transactional_id)
        })
        .filter(|meta| {
            let state = meta.state.kafka_name();
            (request.state_filters.is_empty()
                || request.state_filters.iter().any(|s| s.as_str() == state))
                && (request.producer_id_filters.is_empty()
                    || request.producer_id_filters.contains(&ProducerId(meta.producer_id)))
                && (request.duration_filter < 0
                    || (meta.start_ms >= 0 && now_ms - meta.start_ms >= request.duration_filter))
        })
        .map(|meta| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(
                    meta.transactional_id,
                )))
                .with_producer_id(ProducerId(meta.producer_id))
                .with_transaction_state(StrBytes::from_static_str(meta.state.kafka_name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}
