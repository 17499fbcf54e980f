//! The transaction coordinator's admin calls for `sluice transactions`:
//! ListTransactions and DescribeTransactions (KIP-664), and taking over a
//! transactional id with InitProducerId, which is how Kafka lets anyone
//! abort a transaction whose producer hangs: the coordinator aborts the
//! id's open transaction and bumps its producer epoch, fencing the old
//! producer (as a restarted producer with the same id would).
//!
//! Each broker lists and describes only the ids it coordinates, so `list`
//! asks every broker and describes each id at the broker that listed it;
//! `describe` and `take_over` find the id's coordinator first
//! (FindCoordinator, key type 1).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, InitProducerIdRequest, ListTransactionsRequest, TransactionalId,
};

use super::{check, error_text, text, Client, Connection, CoordinatorType};

/// How many times a take-over is retried while the coordinator is busy
/// (CONCURRENT_TRANSACTIONS while Kafka writes the abort markers, a
/// coordinator loading or moving), and the pause between tries.
const TAKE_OVER_ATTEMPTS_MAX: u32 = 40;
const TAKE_OVER_BACKOFF: Duration = Duration::from_millis(250);

/// One transactional id as DescribeTransactions shows it.
#[derive(Debug, Clone)]
pub(crate) struct TransactionDescription {
    pub(crate) transactional_id: String,
    /// Kafka's state name: Empty, Ongoing, PrepareCommit, PrepareAbort,
    /// CompleteCommit, CompleteAbort (or PrepareEpochFence, Dead on Kafka).
    pub(crate) state: String,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) timeout_ms: i32,
    /// When the open transaction started, ms since the epoch (broker
    /// clock); -1 when none is open.
    pub(crate) start_time_ms: i64,
    /// The partitions of the open (or last) transaction, sorted.
    pub(crate) partitions: Vec<(String, i32)>,
}

impl TransactionDescription {
    /// Whether a transaction is open, or being ended by the coordinator.
    pub(crate) fn is_open(&self) -> bool {
        matches!(
            self.state.as_str(),
            "Ongoing" | "PrepareCommit" | "PrepareAbort"
        )
    }

    fn from_response(state: TransactionState) -> Self {
        let mut partitions: Vec<(String, i32)> = state
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
            .collect();
        partitions.sort();
        Self {
            transactional_id: state.transactional_id.to_string(),
            state: state.transaction_state.to_string(),
            producer_id: state.producer_id.0,
            producer_epoch: state.producer_epoch,
            timeout_ms: state.transaction_timeout_ms,
            start_time_ms: state.transaction_start_time_ms,
            partitions,
        }
    }
}

/// What `list` asks the brokers for.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter {
    /// Kafka state names; empty for every state.
    pub(crate) states: Vec<String>,
    /// Only transactions open at least this long (ListTransactions v1).
    pub(crate) min_age_ms: Option<i64>,
}

/// Every transactional id the cluster knows that passes `filter`,
/// described, sorted by id. `Err` when a broker cannot filter by age
/// (ListTransactions v0) or refuses.
pub(crate) async fn list(
    client: &mut Client,
    filter: &ListFilter,
) -> Result<Vec<TransactionDescription>> {
    let metadata = client.metadata(Some(&[])).await?;
    let mut nodes: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
    nodes.sort_unstable();
    let mut described = BTreeMap::new();
    for node in nodes {
        let connection = client.node(node).await?;
        let ids = list_on(connection, node, filter).await?;
        if ids.is_empty() {
            continue;
        }
        // An id that expired between the two calls is simply gone.
        for description in describe_on(connection, &ids).await?.into_iter().flatten() {
            described.insert(description.transactional_id.clone(), description);
        }
    }
    Ok(described.into_values().collect())
}

/// ListTransactions on one broker: the ids it coordinates.
async fn list_on(
    connection: &mut Connection,
    node: i32,
    filter: &ListFilter,
) -> Result<Vec<String>> {
    let version = connection.version::<ListTransactionsRequest>()?;
    let mut request = ListTransactionsRequest::default()
        .with_state_filters(filter.states.iter().map(text).collect());
    if let Some(min_age_ms) = filter.min_age_ms {
        if version < 1 {
            bail!(
                "the broker at {} cannot filter transactions by age (needs ListTransactions v1+)",
                connection.address()
            );
        }
        request = request.with_duration_filter(min_age_ms);
    }
    let response = connection.call(request).await?;
    check(response.error_code, None, || {
        format!("ListTransactions on broker {node}")
    })?;
    if let Some(unknown) = response.unknown_state_filters.first() {
        bail!("broker {node} does not know the transaction state '{unknown}'");
    }
    Ok(response
        .transaction_states
        .into_iter()
        .map(|t| t.transactional_id.to_string())
        .collect())
}

/// DescribeTransactions of `ids` on one broker, one result per id in
/// order; an unknown id is an `Err` naming it.
async fn describe_on(
    connection: &mut Connection,
    ids: &[String],
) -> Result<Vec<Result<TransactionDescription>>> {
    let request = DescribeTransactionsRequest::default()
        .with_transactional_ids(ids.iter().map(|id| TransactionalId(text(id))).collect());
    let response = connection.call(request).await?;
    let mut by_id: BTreeMap<String, TransactionState> = response
        .transaction_states
        .into_iter()
        .map(|state| (state.transactional_id.to_string(), state))
        .collect();
    Ok(ids
        .iter()
        .map(|id| {
            let state = by_id
                .remove(id)
                .ok_or_else(|| anyhow!("DescribeTransactions did not answer for '{id}'"))?;
            if state.error_code == ResponseError::TransactionalIdNotFound.code() {
                bail!("transactional id '{id}' not found (TRANSACTIONAL_ID_NOT_FOUND)");
            }
            check(state.error_code, None, || {
                format!("DescribeTransactions for transactional id '{id}'")
            })?;
            Ok(TransactionDescription::from_response(state))
        })
        .collect())
}

/// DescribeTransactions of one id at its coordinator.
pub(crate) async fn describe(client: &mut Client, id: &str) -> Result<TransactionDescription> {
    let coordinator = client
        .find_coordinator(id, CoordinatorType::Transaction)
        .await?;
    let connection = client.at(&coordinator.address).await?;
    let mut results = describe_on(connection, &[id.to_string()]).await?;
    results
        .pop()
        .context("DescribeTransactions answered with nothing")?
}

/// InitProducerId for `id` with `timeout_ms` at its coordinator: fences
/// the id's producer and aborts its open transaction. Returns the id's
/// new producer id and epoch.
pub(crate) async fn take_over(
    client: &mut Client,
    id: &str,
    timeout_ms: i32,
) -> Result<(i64, i16)> {
    let mut attempt = 1;
    loop {
        let coordinator = client
            .find_coordinator(id, CoordinatorType::Transaction)
            .await?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(text(id))))
            .with_transaction_timeout_ms(timeout_ms);
        let response = client.at(&coordinator.address).await?.call(request).await?;
        let code = response.error_code;
        let busy = matches!(
            ResponseError::try_from_code(code),
            Some(
                ResponseError::ConcurrentTransactions
                    | ResponseError::CoordinatorLoadInProgress
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::NotCoordinator
            )
        );
        if busy && attempt < TAKE_OVER_ATTEMPTS_MAX {
            attempt += 1;
            tokio::time::sleep(TAKE_OVER_BACKOFF).await;
            continue;
        }
        if let Some(error) = error_text(code, None) {
            bail!("InitProducerId for transactional id '{id}': {error}");
        }
        return Ok((response.producer_id.0, response.producer_epoch));
    }
}
