//! FindCoordinator (key 10): this node coordinates every group and every
//! transactional id, whatever the key type. v4 batches keys.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::server::{BrokerContext, NODE_ID};

pub(crate) const VERSIONS: (i16, i16) = (0, 4);

pub(crate) fn handle(
    context: &Arc<BrokerContext>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let host = StrBytes::from_string(context.advertised.ip().to_string());
    let port = context.advertised.port() as i32;
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(NODE_ID))
                    .with_host(host.clone())
                    .with_port(port)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(host)
        .with_port(port)
}
