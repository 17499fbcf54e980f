//! Property test of the whole request path on hostile input: random and
//! mutated frames for every supported API and version go through frame
//! decoding and the real handlers against a real store. Nothing may panic
//! or hang; each frame is either answered with a well-formed response or
//! refused with an error, and unknown keys and versions are refused as
//! unsupported.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use proptest::prelude::*;

use super::{handle, SUPPORTED};
use crate::group::offsets::OffsetStore;
use crate::group::{GroupConfig, GroupCoordinator};
use crate::log::{LogStore, StdIo, StoreOptions, SystemClock};
use crate::protocol::{decode_frame, FrameError};
use crate::server::{BrokerContext, KafkaConfig};

fn context(dir: &std::path::Path) -> Arc<BrokerContext> {
    let store = LogStore::open(
        dir,
        StoreOptions::default(),
        Arc::new(StdIo),
        Arc::new(SystemClock),
    )
    .unwrap();
    let offsets = OffsetStore::open(Arc::new(StdIo), &dir.join("groups")).unwrap();
    let groups = GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    };
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let store = Arc::new(store);
    let groups = Arc::new(GroupCoordinator::new(
        groups,
        Arc::new(SystemClock),
        offsets,
    ));
    let transactions = crate::transaction::TransactionCoordinator::open(
        Default::default(),
        Arc::new(SystemClock),
        Arc::new(StdIo),
        dir,
        store.clone(),
        groups.clone(),
        Default::default(),
    )
    .unwrap();
    Arc::new(BrokerContext {
        store,
        config: KafkaConfig {
            fetch_wait_max_ms: FETCH_WAIT_MAX_MS,
            ..KafkaConfig::default()
        },
        advertised: "127.0.0.1:9092".parse().unwrap(),
        cluster_id: "fuzz".into(),
        transactions: Arc::new(transactions),
        groups,
        request_bytes: crate::server::RequestBudget::new(1 << 20),
        fetch_bytes: Arc::new(tokio::sync::Semaphore::new(1 << 20)),
        shutdown,
        sasl: Arc::new(
            crate::server::sasl::Sasl::new(
                Default::default(),
                &[],
                Arc::new(crate::server::sasl::Users::open(dir).unwrap()),
            )
            .unwrap(),
        ),
        // Enforced, with the fuzzer a super user: the ACL APIs are reached.
        authorizer: Arc::new(crate::acl::Authorizer::new(
            crate::acl::AclConfig {
                enabled: true,
                super_users: vec![crate::acl::ANONYMOUS.into()],
                ..Default::default()
            },
            Arc::new(crate::acl::Acls::open(dir, 1000).unwrap()),
        )),
    })
}

/// A frame: header for (key, version) with a flexible or plain header as
/// the version needs, then `body`.
fn frame(api_key: i16, version: i16, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(api_key);
    buf.put_i16(version);
    buf.put_i32(1);
    buf.put_i16(-1); // null client id
    let flexible = kafka_protocol::messages::ApiKey::try_from(api_key)
        .map(|key| key.request_header_version(version) >= 2)
        .unwrap_or(false);
    if flexible {
        buf.put_u8(0); // no tagged fields
    }
    buf.put_slice(body);
    buf.freeze()
}

/// How long one request may take. Nothing in a test context waits on
/// purpose: Fetch long polls are capped at [`FETCH_WAIT_MAX_MS`], and every
/// group is new, so a JoinGroup's lone member completes the rebalance at
/// once. Far longer than any answer takes; reaching it means a hang.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// The context's cap on Fetch long polls.
const FETCH_WAIT_MAX_MS: u64 = 10;

/// What one frame came to.
#[derive(Debug)]
enum Outcome {
    /// The frame's header was refused before any handler ran.
    NoHeader,
    /// A response, or none (Produce with acks=0).
    Answered(Option<Bytes>),
    /// A clean refusal.
    Refused(FrameError),
}

/// Runs one frame through decoding and the handlers, asserting that it
/// neither hangs nor panics, and that an answer is a well-formed response
/// frame for the request (length prefix, echoed correlation id).
fn run(context: &Arc<BrokerContext>, runtime: &tokio::runtime::Runtime, bytes: Bytes) -> Outcome {
    runtime.block_on(async {
        let Ok(request) = decode_frame(bytes) else {
            return Outcome::NoHeader;
        };
        let (api_key, correlation_id) = (request.api_key, request.correlation_id);
        let mut ordered = None;
        let result = tokio::time::timeout(
            ANSWER_TIMEOUT,
            handle(
                context,
                &crate::acl::Caller::anonymous(None),
                request,
                &mut ordered,
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{api_key:?} hung for {ANSWER_TIMEOUT:?}"));
        match result {
            Ok(Some(response)) => {
                assert!(
                    response.len() >= 8,
                    "{api_key:?}: response of {} bytes",
                    response.len()
                );
                let length = i32::from_be_bytes(response[..4].try_into().unwrap());
                assert_eq!(
                    length as usize,
                    response.len() - 4,
                    "{api_key:?}: length prefix"
                );
                let echoed = i32::from_be_bytes(response[4..8].try_into().unwrap());
                assert_eq!(echoed, correlation_id, "{api_key:?}: correlation id");
                Outcome::Answered(Some(response))
            }
            Ok(None) => {
                assert_eq!(
                    api_key,
                    ApiKey::Produce,
                    "only acks=0 Produce goes unanswered"
                );
                Outcome::Answered(None)
            }
            Err(FrameError::Encode {
                api_key,
                api_version,
                reason,
            }) => {
                panic!(
                    "{api_key:?} v{api_version}: a handler built an unencodable response: {reason}"
                )
            }
            Err(refused) => Outcome::Refused(refused),
        }
    })
}

/// Asserts that a frame of an unknown key, or of a version outside the
/// table, is refused as unsupported (ApiVersions alone answers any version).
fn assert_unsupported(outcome: Outcome, key: ApiKey) {
    match outcome {
        Outcome::NoHeader | Outcome::Refused(FrameError::Unsupported { .. }) => {}
        Outcome::Answered(Some(_)) if key == ApiKey::ApiVersions => {}
        other => panic!("{key:?}: expected a refusal as unsupported, got {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bodies_never_panic(
        entry in 0..SUPPORTED.len(),
        version_pick in 0i16..32,
        body in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let context = runtime.block_on(async { context(dir.path()) });
        let (key, min, max) = SUPPORTED[entry];
        let version = min + version_pick % (max - min + 1);
        run(&context, &runtime, frame(key as i16, version, &body));
        // Unknown keys and versions outside the range are refused, not crashed on.
        let outcome = run(&context, &runtime, frame(key as i16, max + 1 + version_pick, &body));
        assert_unsupported(outcome, key);
        let outcome = run(&context, &runtime, frame(0x4000 + version_pick, 0, &body));
        assert!(matches!(outcome, Outcome::NoHeader), "unknown key: {outcome:?}");
    }

    #[test]
    fn huge_array_counts_are_refused_before_allocating(entry in 0..SUPPORTED.len(), prefix in 0usize..8) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let context = runtime.block_on(async { context(dir.path()) });
        let (key, _, max) = SUPPORTED[entry];
        // Some leading bytes, then a length field claiming ~2^31 elements.
        let mut body = vec![0u8; prefix];
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        let outcome = run(&context, &runtime, frame(key as i16, max, &body));
        assert!(!matches!(outcome, Outcome::NoHeader), "{key:?}: the header is valid");
    }
}
