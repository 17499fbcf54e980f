//! A transaction its producer abandons: the coordinator aborts it once
//! `transaction.timeout.ms` has passed (checked every
//! `transactions.abort_check_interval_ms`), bumping the epoch so the
//! stalled producer is fenced if it wakes up. Its records are never
//! visible to read_committed; the partition's last stable offset moves past
//! them, so a later transaction there is read as soon as it commits.

use std::time::Duration;

use super::{
    code, describe, latest_offset, read_committed, watermarks, RawProducer, READ_COMMITTED,
    TXN_VERSION,
};
use crate::clients::wait_for;
use crate::harness::Broker;
use crate::kafka::KafkaClient;

/// The stalled producer's `transaction.timeout.ms`.
const STALLED_TIMEOUT_MS: i32 = 1000;

/// How long the abort may take to show; only a bound for a broken broker
/// (the abort is due after about `STALLED_TIMEOUT_MS` plus one check).
const ABORT_WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_stalled_transaction_is_aborted_at_its_timeout_and_its_producer_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_config(
        dir.path(),
        "[transactions]\nabort_check_interval_ms = 100\n",
    );
    let mut client = KafkaClient::connect(broker.kafka);
    assert_eq!(client.create_topic("t", 1, &[]).0, code::NONE);

    let stalled = RawProducer::init(&mut client, "stalled", STALLED_TIMEOUT_MS);
    assert_eq!(
        stalled.add_partitions(&mut client, &[("t", 0)], TXN_VERSION),
        [code::NONE]
    );
    let values = ["stalled-0", "stalled-1", "stalled-2"];
    assert_eq!(stalled.produce(&mut client, "t", 0, 0, &values), code::NONE);
    // The producer stalls here. Its transaction holds the last stable
    // offset at 0 until the coordinator aborts it; the abort marker goes
    // at offset 3, and the last stable offset moves after it.
    wait_for("the timed-out transaction's abort", ABORT_WAIT, || {
        latest_offset(&mut client, "t", 0, READ_COMMITTED) > values.len() as i64
    });
    assert_eq!(
        watermarks(&mut client, "t", 0),
        (4, 4),
        "three records and the abort marker"
    );
    assert_eq!(
        read_committed(&mut client, "t", 0),
        [],
        "the aborted records are never read_committed"
    );

    let state = describe(&mut client, "stalled");
    assert_eq!(state.error_code, code::NONE);
    assert_eq!(state.transaction_state.as_str(), "CompleteAbort");
    assert_eq!(state.producer_id.0, stalled.producer_id);
    assert_eq!(
        state.producer_epoch,
        stalled.epoch + 1,
        "the abort bumped the epoch"
    );

    // The stalled producer wakes up: fenced, and nothing more is written.
    assert_eq!(
        stalled.produce(&mut client, "t", 0, values.len() as i32, &["stalled-late"]),
        code::INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        stalled.end(&mut client, true, TXN_VERSION),
        code::PRODUCER_FENCED
    );
    assert_eq!(watermarks(&mut client, "t", 0), (4, 4));

    // Another transactional producer commits to the same partition.
    let later = RawProducer::init(&mut client, "later", 60_000);
    assert_eq!(
        later.add_partitions(&mut client, &[("t", 0)], TXN_VERSION),
        [code::NONE]
    );
    assert_eq!(
        later.produce(&mut client, "t", 0, 0, &["later-0", "later-1"]),
        code::NONE
    );
    assert_eq!(later.end(&mut client, true, TXN_VERSION), code::NONE);
    assert_eq!(
        read_committed(&mut client, "t", 0),
        [(4, "later-0".to_string()), (5, "later-1".to_string())]
    );
    assert_eq!(
        watermarks(&mut client, "t", 0),
        (7, 7),
        "two records and the commit marker"
    );
}
