//! DescribeCluster (key 60): the single node, which is also the controller.
//! Only the broker endpoints can be described (endpoint type 1); asking a
//! broker for controller endpoints is UNSUPPORTED_ENDPOINT_TYPE, as in Kafka.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::message;
use crate::acl::Caller;
use crate::server::{BrokerContext, NODE_ID};

pub(crate) const VERSIONS: (i16, i16) = (0, 1);

/// Kafka's endpoint type of brokers.
const ENDPOINT_BROKERS: i8 = 1;

/// Answers a DescribeCluster request.
pub(crate) fn handle(
    context: &Arc<BrokerContext>,
    _caller: &Caller,
    request: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    // The response's endpoint_type is 1 by default, which is also what v0
    // (without the field) means; the request's is 1 on v0 as well.
    let response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(context.cluster_id.clone()))
        .with_controller_id(BrokerId(NODE_ID));
    if request.endpoint_type != ENDPOINT_BROKERS {
        return response
            .with_endpoint_type(request.endpoint_type)
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(message(format!(
                "endpoint type {} is not served; a broker describes brokers (1)",
                request.endpoint_type
            )));
    }
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(NODE_ID))
        .with_host(StrBytes::from_string(context.advertised.ip().to_string()))
        .with_port(context.advertised.port() as i32);
    response.with_brokers(vec![broker])
}
