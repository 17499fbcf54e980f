//! Kafka codec glue, no I/O: request frames in, response frames out. Every
//! message codec is the `kafka-protocol` crate's; this module only splits a
//! frame into header and body, knows which header version goes with which
//! API version, and maps store errors to Kafka error codes.
//!
//! A request frame (after the 4-byte length the connection strips):
//! ```text
//! api_key i16 | api_version i16 | correlation_id i32 | client_id nullable string
//! | tagged fields (flexible versions only) | body
//! ```
//! A response frame: `length i32 | correlation_id i32 | tagged fields
//! (flexible versions, except ApiVersions) | body`.

pub(crate) mod errors;
pub(crate) mod partitioner;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

/// A request whose header has been decoded; the body is still raw.
#[derive(Debug, Clone)]
pub(crate) struct RequestFrame {
    /// Which API.
    pub(crate) api_key: ApiKey,
    /// Which version of it.
    pub(crate) api_version: i16,
    /// Echoed in the response.
    pub(crate) correlation_id: i32,
    /// The client's self-declared name, for logs.
    pub(crate) client_id: Option<String>,
    /// The peer's address, filled in by the connection (DescribeGroups).
    pub(crate) client_host: String,
    pub(crate) body: Bytes,
}

/// Why a frame could not be understood. Each closes the connection (after
/// logging), as Kafka does, except where a handler can answer.
#[derive(Debug, Error)]
pub(crate) enum FrameError {
    /// Shorter than the fixed header.
    #[error("request frame of {0} bytes is too short for a header")]
    TooShort(usize),
    /// An API key this broker does not know.
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey {
        api_key: i16,
        /// The request's correlation id.
        correlation_id: i32,
    },
    /// An API or version this broker does not implement.
    #[error(
        "unsupported request {api_key:?} v{api_version} (see ApiVersions for what is supported)"
    )]
    Unsupported { api_key: ApiKey, api_version: i16 },
    /// A response that could not be encoded (a bug, not the client's fault).
    #[error("encoding the {api_key:?} v{api_version} response failed: {reason}")]
    Encode {
        api_key: ApiKey,
        api_version: i16,
        /// The encoder's complaint.
        reason: String,
    },
    /// A header or body that does not decode.
    #[error("malformed {api_key:?} v{api_version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        api_version: i16,
        /// The decoder's complaint.
        reason: String,
    },
}

/// Splits a frame into its header and raw body.
pub(crate) fn decode_frame(mut frame: Bytes) -> Result<RequestFrame, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    // ApiVersions requests of versions we do not know still carry a v1/v2
    // header; KIP-511 asks us to parse what we can and answer with v0.
    let header_version = api_key.request_header_version(api_version.clamp(0, i16::MAX));
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|error| {
        FrameError::Malformed {
            api_key,
            api_version,
            reason: error.to_string(),
        }
    })?;
    Ok(RequestFrame {
        api_key,
        api_version,
        correlation_id,
        client_id: header.client_id.map(|id| id.to_string()),
        client_host: String::new(),
        body: frame,
    })
}

impl RequestFrame {
    /// Decodes the body as `R`.
    pub(crate) fn decode<R: Decodable>(&self) -> Result<R, FrameError> {
        let mut body = self.body.clone();
        R::decode(&mut body, self.api_version).map_err(|error| FrameError::Malformed {
            api_key: self.api_key,
            api_version: self.api_version,
            reason: error.to_string(),
        })
    }
}

/// Encodes a whole response frame, length prefix included, for `version`.
pub(crate) fn encode_response<R: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> anyhow::Result<Bytes> {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    fn frame<R: Encodable>(api_key: ApiKey, version: i16, body: &R) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_headers_of_flexible_and_old_versions() {
        for version in [0, 3, 4] {
            let bytes = frame(ApiKey::ApiVersions, version, &ApiVersionsRequest::default());
            let request = decode_frame(bytes).unwrap();
            assert_eq!(request.api_key, ApiKey::ApiVersions);
            assert_eq!(request.correlation_id, 7);
            assert_eq!(request.client_id.as_deref(), Some("test"));
            request.decode::<ApiVersionsRequest>().unwrap();
        }
    }

    #[test]
    fn rejects_unknown_keys_short_frames_and_garbage_bodies() {
        assert!(matches!(
            decode_frame(Bytes::from_static(&[0, 1])),
            Err(FrameError::TooShort(2))
        ));
        let unknown = Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 9, 0, 0]);
        assert!(matches!(
            decode_frame(unknown),
            Err(FrameError::UnknownApiKey {
                api_key: 0x7f00,
                correlation_id: 9
            })
        ));
        // A Metadata v1 body claiming 2^31-1 topics in a few bytes must fail
        // to decode, not allocate.
        let mut bytes =
            BytesMut::from(&frame(ApiKey::Metadata, 1, &MetadataRequest::default())[..]);
        let body_at = bytes.len() - 4;
        bytes[body_at..].copy_from_slice(&i32::MAX.to_be_bytes());
        let request = decode_frame(bytes.freeze()).unwrap();
        assert!(request.decode::<MetadataRequest>().is_err());
    }
}
