//! ApiVersions (key 18): the table of supported APIs. An unsupported
//! version gets a v0 response with UNSUPPORTED_VERSION and the table, so the
//! client can retry with a version both sides know (KIP-511).

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::{respond, SUPPORTED};
use crate::protocol::{FrameError, RequestFrame};

pub(crate) const VERSIONS: (i16, i16) = (0, 4);

/// Answers an ApiVersions request of any version.
pub(crate) fn handle(request: &RequestFrame) -> Result<Option<Bytes>, FrameError> {
    let api_keys = SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    let response = ApiVersionsResponse::default().with_api_keys(api_keys);
    if !(VERSIONS.0..=VERSIONS.1).contains(&request.api_version) {
        let mut fallback = request.clone();
        fallback.api_version = 0;
        let response = response.with_error_code(ResponseError::UnsupportedVersion.code());
        return respond(&fallback, &response);
    }
    // The body is decoded only to reject garbage; nothing in it changes the
    // answer (client software name and version are for metrics).
    let _: ApiVersionsRequest = request.decode()?;
    respond(request, &response)
}
