//! A tiny test-only Kafka client over a blocking `TcpStream`: requests are
//! encoded and responses decoded by the `kafka-protocol` crate, so the
//! broker is checked against an independent codec, byte for byte.
//!
//! Frames on the wire: `length i32 | header | body`, where the header
//! version follows from the API key and version (`ApiKey::
//! request_header_version`, `ApiKey::response_header_version`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// How long a response may take before the test fails.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest response frame this client accepts.
const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// One connection to a broker.
pub(crate) struct KafkaClient {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl KafkaClient {
    /// CreateTopics (v7) of `name` with `partitions` and topic `configs`
    /// (Kafka names); returns the topic's error code and message.
    pub(crate) fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> (i16, Option<String>) {
        use kafka_protocol::messages::create_topics_request::{
            CreatableTopic, CreatableTopicConfig,
        };
        use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;
        let text = |value: &str| StrBytes::from_string(value.to_string());
        let configs = configs
            .iter()
            .map(|(name, value)| {
                CreatableTopicConfig::default()
                    .with_name(text(name))
                    .with_value(Some(text(value)))
            })
            .collect();
        let topic = CreatableTopic::default()
            .with_name(TopicName(text(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(configs);
        let response = self.call(
            CreateTopicsRequest::default()
                .with_topics(vec![topic])
                .with_timeout_ms(5_000),
            7,
        );
        let created = &response.topics[0];
        (
            created.error_code,
            created.error_message.as_ref().map(|m| m.to_string()),
        )
    }

    /// Produce (v9, acks=all) of `records` to `partition` of `topic`;
    /// returns the partition's error code.
    pub(crate) fn produce(&mut self, topic: &str, partition: i32, records: Bytes) -> i16 {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{ProduceRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        let response = self.call(request, 9);
        response.responses[0].partition_responses[0].error_code
    }

    /// Connects to `addr`.
    pub(crate) fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to the Kafka listener");
        stream
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .expect("set read timeout");
        stream.set_nodelay(true).expect("set nodelay");
        Self {
            stream,
            // Not 0, so an echo of an unset field would not pass for it.
            next_correlation_id: 1,
        }
    }

    /// Fails a later read after `timeout` instead of [`RESPONSE_TIMEOUT`].
    pub(crate) fn set_response_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set read timeout");
    }

    /// Sends `request` as `version` and returns the decoded response.
    pub(crate) fn call<R: Request>(&mut self, request: R, version: i16) -> R::Response {
        let correlation_id = self.send(&request, version);
        self.receive::<R::Response>(api_key::<R>(), version, correlation_id)
    }

    /// Sends `request` as `version` without waiting; returns the
    /// correlation id to pass to [`receive`](Self::receive).
    pub(crate) fn send<R: Request>(&mut self, request: &R, version: i16) -> i32 {
        let api_key = api_key::<R>();
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let mut frame = header(api_key, version, correlation_id);
        request
            .encode(&mut frame, version)
            .unwrap_or_else(|error| panic!("encoding {api_key:?} v{version}: {error}"));
        self.send_frame(&frame);
        correlation_id
    }

    /// Reads one response frame and decodes it as `response_version` of
    /// `api_key`'s response, checking the correlation id and that nothing
    /// is left over.
    pub(crate) fn receive<T: Decodable>(
        &mut self,
        api_key: ApiKey,
        response_version: i16,
        correlation_id: i32,
    ) -> T {
        let mut frame = self
            .read_frame()
            .unwrap_or_else(|| panic!("connection closed awaiting {api_key:?} response"));
        let header = ResponseHeader::decode(
            &mut frame,
            api_key.response_header_version(response_version),
        )
        .expect("decode response header");
        assert_eq!(header.correlation_id, correlation_id, "correlation id");
        let response = T::decode(&mut frame, response_version).unwrap_or_else(|error| {
            panic!("decoding {api_key:?} v{response_version} response: {error}")
        });
        assert_eq!(frame.remaining(), 0, "bytes after the response body");
        response
    }

    /// Writes `frame` with its length prefix.
    pub(crate) fn send_frame(&mut self, frame: &[u8]) {
        let length = i32::try_from(frame.len()).expect("frame fits an i32");
        self.send_raw(&length.to_be_bytes());
        self.send_raw(frame);
    }

    /// Writes `bytes` as they are: no length prefix, no checks.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to broker");
    }

    /// One response frame without its length prefix; `None` once the broker
    /// has closed the connection.
    pub(crate) fn read_frame(&mut self) -> Option<Bytes> {
        let mut length = [0u8; 4];
        match self.stream.read_exact(&mut length) {
            Ok(()) => {}
            Err(error) if closed(&error) => return None,
            Err(error) => panic!("reading a response: {error}"),
        }
        let length = i32::from_be_bytes(length);
        let length = usize::try_from(length)
            .ok()
            .filter(|length| *length <= FRAME_BYTES_MAX)
            .unwrap_or_else(|| panic!("response frame length {length}"));
        let mut frame = BytesMut::zeroed(length);
        self.stream
            .read_exact(&mut frame)
            .expect("read a response body");
        Some(frame.freeze())
    }

    /// Whether bytes (a response) are waiting to be read, without reading
    /// them or waiting.
    pub(crate) fn has_data(&self) -> bool {
        self.stream.set_nonblocking(true).expect("set nonblocking");
        let mut byte = [0u8; 1];
        let waiting = matches!(self.stream.peek(&mut byte), Ok(n) if n > 0);
        self.stream.set_nonblocking(false).expect("set blocking");
        waiting
    }

    /// Whether the broker closed the connection without answering anything
    /// more (waits up to [`RESPONSE_TIMEOUT`]).
    pub(crate) fn is_closed(&mut self) -> bool {
        self.read_frame().is_none()
    }
}

/// A request header for `api_key` v`version`, encoded in the header version
/// that goes with it (clamped to 0 for made-up negative versions).
pub(crate) fn header(api_key: ApiKey, version: i16, correlation_id: i32) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sluice-blackbox")));
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, api_key.request_header_version(version.max(0)))
        .expect("encode request header");
    frame
}

fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("the codec knows its own API key")
}

fn closed(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}
