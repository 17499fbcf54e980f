//! Transaction coordinator settings (`[transactions]`).

use serde::{Deserialize, Serialize};

/// Transaction settings, each a bound with Kafka's default where Kafka has
/// one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TransactionConfig {
    /// Largest `transaction.timeout.ms` a producer may ask for
    /// (`transaction.max.timeout.ms`); a larger one is refused
    /// INVALID_TRANSACTION_TIMEOUT. Default 900 000 (15 minutes).
    pub(crate) timeout_max_ms: i32,
    /// Transactional ids remembered; InitProducerId for a new one beyond it
    /// is refused COORDINATOR_NOT_AVAILABLE (retriable) until ids expire.
    /// Default 100 000.
    pub(crate) transactional_ids_max: usize,
    /// Partitions one transaction may write to; AddPartitionsToTxn beyond it
    /// is refused POLICY_VIOLATION. Default 1000.
    pub(crate) partitions_max: usize,
    /// A transactional id without a transaction for this long is forgotten
    /// (`transactional.id.expiration.ms`). Default 7 days.
    pub(crate) transactional_id_expiration_ms: i64,
    /// How often open transactions are checked against their timeout
    /// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    /// Default 1000.
    pub(crate) abort_check_interval_ms: u64,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        Self {
            timeout_max_ms: 900_000,
            transactional_ids_max: 100_000,
            partitions_max: 1000,
            transactional_id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            abort_check_interval_ms: 1000,
        }
    }
}
