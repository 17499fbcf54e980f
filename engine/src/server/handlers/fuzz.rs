//! Property test of the whole request path on hostile input: random and
//! mutated frames for every supported API and version go through frame
//! decoding and the real handlers against a real store. Nothing may panic
//! or hang; each frame is either answered or refused with an error.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::{handle, SUPPORTED};
use crate::group::offsets::OffsetStore;
use crate::group::{GroupConfig, GroupCoordinator};
use crate::log::{LogStore, StdIo, StoreOptions, SystemClock};
use crate::protocol::decode_frame;
use crate::server::producer_ids::ProducerIds;
use crate::server::BrokerContext;

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
    Arc::new(BrokerContext {
        store: Arc::new(store),
        config: Default::default(),
        advertised: "127.0.0.1:9092".parse().unwrap(),
        cluster_id: "fuzz".into(),
        producer_ids: ProducerIds::open(&StdIo, dir).unwrap(),
        groups: Arc::new(GroupCoordinator::new(
            groups,
            Arc::new(SystemClock),
            offsets,
        )),
        request_bytes: Arc::new(tokio::sync::Semaphore::new(1 << 20)),
        shutdown,
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

fn run(context: &Arc<BrokerContext>, runtime: &tokio::runtime::Runtime, bytes: Bytes) {
    runtime.block_on(async {
        let Ok(request) = decode_frame(bytes) else {
            return;
        };
        let mut ordered = None;
        // A random but valid JoinGroup may wait for a rebalance; bounding
        // the wait keeps the test finite without hiding a panic.
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            handle(context, request, &mut ordered),
        )
        .await;
    });
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
        run(&context, &runtime, frame(key as i16, max + 1 + version_pick, &body));
        run(&context, &runtime, frame(0x4000 + version_pick, 0, &body));
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
        run(&context, &runtime, frame(key as i16, max, &body));
    }
}
