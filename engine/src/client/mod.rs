//! A small async Kafka client for the CLI verbs (and the benchmarks): one
//! TCP connection per broker address, ApiVersions negotiation, typed
//! request/response calls; the classic consumer protocol and range
//! assignor (`consumer`), committed offsets and start positions
//! (`offsets`), group membership (`member`), the records of a fetch
//! answer at either isolation level (`fetched`), and the transaction
//! coordinator's admin calls (`transactions`).
//!
//! It is a library for the CLI, not part of the broker: nothing under
//! `log/`, `group/`, `processor/` or `server/` uses it.
//!
//! It speaks only the Kafka protocol through the `kafka-protocol` codecs, so
//! the verbs work against any Kafka-compatible broker, not just Sluice.
//!
//! Frames on the wire: `length i32 | header | body`. The request header
//! version follows from the API key and version
//! (`ApiKey::request_header_version`), the response header likewise
//! (`ApiKey::response_header_version`).
//!
//! Routing: the first broker of `--brokers` that answers is the bootstrap
//! connection; partition leaders are reached at the address Metadata gives
//! for them and group coordinators at the one FindCoordinator gives, so a
//! multi-node cluster works as long as those addresses are reachable.

pub(crate) mod consumer;
pub(crate) mod fetched;
pub(crate) mod member;
pub(crate) mod offsets;
pub(crate) mod sasl;
pub(crate) mod transactions;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, ListOffsetsRequest, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long opening a TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a broker may take to answer an ordinary request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest response frame accepted; a bigger length prefix means a confused
/// peer (or not a Kafka broker at all), not a response worth allocating.
const RESPONSE_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Client id sent in every request header (brokers log and show it).
const CLIENT_ID: &str = "sluice-cli";

/// Appended to connection errors: the usual cause and the knob to turn.
const CONNECT_HINT: &str = "is `sluice serve` running? (--brokers / SLUICE_BROKERS)";

/// `ListOffsets` timestamp for the log start offset.
pub(crate) const EARLIEST_TIMESTAMP: i64 = -2;
/// `ListOffsets` timestamp for the end of the log: the high watermark
/// read uncommitted, the last stable offset read committed.
pub(crate) const LATEST_TIMESTAMP: i64 = -1;

/// What a reader sees of transactions (Fetch and ListOffsets
/// `isolation_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum IsolationLevel {
    /// Every record, including those of open and aborted transactions;
    /// the end of the log is the high watermark.
    #[value(name = "read_uncommitted")]
    ReadUncommitted,
    /// Only committed records: reading stops at the last stable offset
    /// (the first offset of the oldest open transaction) and records of
    /// aborted transactions are dropped.
    #[value(name = "read_committed")]
    ReadCommitted,
}

impl IsolationLevel {
    /// The wire value: 0 read_uncommitted, 1 read_committed.
    pub(crate) fn code(self) -> i8 {
        match self {
            Self::ReadUncommitted => 0,
            Self::ReadCommitted => 1,
        }
    }
}

/// FindCoordinator `key_type`: what the key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoordinatorType {
    Group,
    Transaction,
}

impl CoordinatorType {
    fn code(self) -> i8 {
        match self {
            Self::Group => 0,
            Self::Transaction => 1,
        }
    }

    fn describe(self, key: &str) -> String {
        match self {
            Self::Group => format!("group '{key}'"),
            Self::Transaction => format!("transactional id '{key}'"),
        }
    }
}

/// The APIs this client implements, each with the oldest and newest version
/// it can build and read. A connection uses, per API, the newest version
/// both sides support. The newest versions are capped where a later one
/// changes the message's shape (topic ids instead of names in Fetch v13,
/// batched groups in OffsetFetch v8 and FindCoordinator v4, topic-id
/// deletion in DeleteTopics v6) and no feature of it is needed here.
const IMPLEMENTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 1, 3),
    (ApiKey::JoinGroup, 2, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    // The transactional producer of `sluice-bench transactions`. Capped
    // before EndTxn v5 (an epoch bump per transaction, KIP-890), which it
    // does not speak; AddPartitionsToTxn v4+ is the broker-to-broker form.
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The API key of request type `R`.
fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("the codec knows its own API key")
}

/// A Kafka error code as Kafka spells it (`UNKNOWN_TOPIC_OR_PARTITION`),
/// followed by the broker's message when it sent one.
pub(crate) fn error_text(code: i16, message: Option<&StrBytes>) -> Option<String> {
    let error = ResponseError::try_from_code(code)?;
    let name = match error {
        ResponseError::Unknown(code) => format!("error code {code}"),
        known => screaming_snake(&known.to_string()),
    };
    Some(
        match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
            Some(message) => format!("{name}: {message}"),
            None => name,
        },
    )
}

/// `Err` naming `what` when `code` is a Kafka error.
pub(crate) fn check(
    code: i16,
    message: Option<&StrBytes>,
    what: impl FnOnce() -> String,
) -> Result<()> {
    match error_text(code, message) {
        Some(text) => bail!("{}: {text}", what()),
        None => Ok(()),
    }
}

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (index, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// `host:port`, with brackets around an IPv6 host.
pub(crate) fn address(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `StrBytes` from an owned or borrowed string.
pub(crate) fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// A topic name for a request.
pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(text(name))
}

/// One connection to one broker, with the API versions agreed on it.
///
/// `pub` (with [`Connection::open`] and [`Connection::call`]) for the
/// `sluice-bench` crate's Kafka load generator.
pub struct Connection {
    /// `host:port` as dialled; every error names it.
    address: String,
    /// TCP, or TLS over it.
    stream: Box<dyn Stream>,
    next_correlation_id: i32,
    /// Negotiated version per API key.
    versions: HashMap<i16, i16>,
    /// What the broker offered per API key, for error messages.
    offered: HashMap<i16, (i16, i16)>,
    /// Set while a request is on the wire and its response unread. A call
    /// that was cancelled or failed half-way leaves it set, and the
    /// connection is then no longer usable (the next response on it would
    /// belong to the abandoned request).
    in_flight: bool,
    /// Whether it authenticated (SASL), for a closed connection's hint.
    authenticated: bool,
}

impl Connection {
    /// Connects to `address` and negotiates API versions.
    pub async fn open(address: &str) -> Result<Self> {
        Self::open_as(address, &sasl::Security::default()).await
    }

    /// [`open`](Self::open) with `security`: TLS around the stream, then
    /// SASL authentication.
    pub(crate) async fn open_as(address: &str, security: &sasl::Security) -> Result<Self> {
        let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Err(_) => bail!(
                "cannot connect to {address}: timed out after {} s — {CONNECT_HINT}",
                CONNECT_TIMEOUT.as_secs()
            ),
            Ok(Err(error)) => bail!(
                "cannot connect to {address}: {} — {CONNECT_HINT}",
                io_reason(&error)
            ),
            Ok(Ok(stream)) => stream,
        };
        stream.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match &security.tls {
            None => Box::new(stream),
            Some(connector) => Box::new(tls_handshake(connector, address, stream).await?),
        };
        let mut connection = Self {
            address: address.to_string(),
            stream,
            next_correlation_id: 1,
            versions: HashMap::new(),
            offered: HashMap::new(),
            in_flight: false,
            authenticated: false,
        };
        connection.negotiate().await?;
        if let Some(credentials) = &security.credentials {
            sasl::authenticate(&mut connection, credentials).await?;
            connection.authenticated = true;
        }
        Ok(connection)
    }

    /// The address this connection dialled.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Whether an earlier call was abandoned half-way.
    fn is_broken(&self) -> bool {
        self.in_flight
    }

    /// ApiVersions v0 (every broker answers it) and the newest common
    /// version of every API in [`IMPLEMENTED`].
    async fn negotiate(&mut self) -> Result<()> {
        let response = self
            .call_version(ApiVersionsRequest::default(), 0, REQUEST_TIMEOUT)
            .await?;
        let address = self.address.clone();
        check(response.error_code, None, || {
            format!("ApiVersions on {address}")
        })?;
        for api in &response.api_keys {
            self.offered
                .insert(api.api_key, (api.min_version, api.max_version));
        }
        for (key, min, max) in IMPLEMENTED {
            if let Some((broker_min, broker_max)) = self.offered.get(&(*key as i16)) {
                let version = (*max).min(*broker_max);
                if version >= (*min).max(*broker_min) {
                    self.versions.insert(*key as i16, version);
                }
            }
        }
        Ok(())
    }

    /// The version of `R` this connection uses, or why there is none.
    pub(crate) fn version<R: Request>(&self) -> Result<i16> {
        if let Some(version) = self.versions.get(&R::KEY) {
            return Ok(*version);
        }
        let api = api_key::<R>();
        let (min, max) = IMPLEMENTED
            .iter()
            .find(|(key, _, _)| *key == api)
            .map(|(_, min, max)| (*min, *max))
            .unwrap_or((R::VERSIONS.min, R::VERSIONS.max));
        match self.offered.get(&R::KEY) {
            Some((broker_min, broker_max)) => bail!(
                "the broker at {} supports {api:?} v{broker_min}–v{broker_max}, \
                 this client v{min}–v{max}: no version in common",
                self.address
            ),
            None => bail!("the broker at {} does not implement {api:?}", self.address),
        }
    }

    /// Sends `request` in the negotiated version and waits for its response.
    pub async fn call<R: Request>(&mut self, request: R) -> Result<R::Response> {
        self.call_within(request, REQUEST_TIMEOUT).await
    }

    /// [`call`](Self::call) with its own response deadline, for requests the
    /// broker may hold (JoinGroup waits for the whole group).
    pub(crate) async fn call_within<R: Request>(
        &mut self,
        request: R,
        deadline: Duration,
    ) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.call_version(request, version, deadline).await
    }

    /// Sends `request` and does not wait: for Produce with acks=0, which
    /// the broker never answers.
    pub(crate) async fn send_only<R: Request>(&mut self, request: R) -> Result<()> {
        let version = self.version::<R>()?;
        self.send(&request, version).await?;
        self.in_flight = false;
        Ok(())
    }

    async fn call_version<R: Request>(
        &mut self,
        request: R,
        version: i16,
        deadline: Duration,
    ) -> Result<R::Response> {
        let api = api_key::<R>();
        let address = self.address.clone();
        let correlation_id = self.send(&request, version).await?;
        let frame = match timeout(deadline, self.read_frame()).await {
            Err(_) => bail!(
                "{api:?} to {address}: no response within {} s",
                deadline.as_secs()
            ),
            Ok(frame) => frame.with_context(|| format!("{api:?} to {address}"))?,
        };
        let response = decode::<R::Response>(frame, api, version, correlation_id)
            .with_context(|| format!("{api:?} v{version} from {address}"))?;
        self.in_flight = false;
        Ok(response)
    }

    /// Encodes and writes one request frame; returns its correlation id.
    async fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<i32> {
        let api = api_key::<R>();
        if self.in_flight {
            bail!(
                "connection to {} is out of step with its responses",
                self.address
            );
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = BytesMut::with_capacity(64);
        frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut frame, api.request_header_version(version))
            .and_then(|()| request.encode(&mut frame, version))
            .with_context(|| format!("encoding {api:?} v{version}"))?;
        let length = i32::try_from(frame.len() - 4).context("request frame too large")?;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        self.in_flight = true;
        let written = timeout(REQUEST_TIMEOUT, self.stream.write_all(&frame)).await;
        match written {
            Err(_) => bail!("{api:?} to {}: write timed out", self.address),
            Ok(Err(error)) => bail!("{api:?} to {}: {}", self.address, io_reason(&error)),
            Ok(Ok(())) => Ok(correlation_id),
        }
    }

    /// One response frame without its length prefix.
    async fn read_frame(&mut self) -> Result<Bytes> {
        let length = match self.stream.read_i32().await {
            Ok(length) => length,
            // A SASL listener closes a connection that has not
            // authenticated at its first request past ApiVersions.
            Err(error)
                if !self.authenticated && error.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                bail!(
                    "{} (if its Kafka listener wants SASL authentication, give --user and \
                     SLUICE_PASSWORD)",
                    io_reason(&error)
                )
            }
            Err(error) => bail!("{}", io_reason(&error)),
        };
        let length = usize::try_from(length)
            .ok()
            .filter(|length| *length <= RESPONSE_BYTES_MAX)
            .ok_or_else(|| anyhow!("response frame of {length} bytes (limit {RESPONSE_BYTES_MAX}); is this a Kafka broker?"))?;
        let mut frame = BytesMut::zeroed(length);
        if let Err(error) = self.stream.read_exact(&mut frame).await {
            bail!("{}", io_reason(&error));
        }
        Ok(frame.freeze())
    }
}

/// Decodes a response frame: header, correlation id check, body.
fn decode<T: Decodable>(
    mut frame: Bytes,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Result<T> {
    let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))?;
    if header.correlation_id != correlation_id {
        bail!(
            "response has correlation id {}, expected {correlation_id}",
            header.correlation_id
        );
    }
    let response = T::decode(&mut frame, version)?;
    if frame.has_remaining() {
        bail!("{} unread bytes after the response", frame.remaining());
    }
    Ok(response)
}

/// What a connection reads and writes: TCP or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// TLS over `stream` to `address`, checking the broker's certificate
/// against the host part of the address.
async fn tls_handshake(
    connector: &tokio_rustls::TlsConnector,
    address: &str,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| anyhow!("{address}: {host:?} is not a host name for TLS: {e}"))?;
    match timeout(CONNECT_TIMEOUT, connector.connect(name, stream)).await {
        Err(_) => bail!(
            "TLS handshake with {address}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        ),
        Ok(Err(error)) => bail!(
            "TLS handshake with {address} failed: {error} (is its Kafka listener SSL or SASL_SSL? \
             for a private CA give --ca-file)"
        ),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// An I/O error as a short lower-case reason.
fn io_reason(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset => "connection reset by the broker".into(),
        ErrorKind::UnexpectedEof => "connection closed by the broker".into(),
        ErrorKind::BrokenPipe => "connection closed by the broker (broken pipe)".into(),
        _ => error.to_string(),
    }
}

/// A topic as Metadata describes it.
#[derive(Debug, Clone)]
pub(crate) struct TopicInfo {
    pub(crate) name: String,
    /// By partition index, ascending.
    pub(crate) partitions: Vec<PartitionInfo>,
}

/// One partition of a [`TopicInfo`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionInfo {
    pub(crate) partition: i32,
    /// Node id of the leader, -1 when there is none.
    pub(crate) leader: i32,
}

impl TopicInfo {
    /// The partition with index `partition`, or an error naming the range.
    pub(crate) fn partition(&self, partition: i32) -> Result<PartitionInfo> {
        self.partitions
            .iter()
            .find(|p| p.partition == partition)
            .copied()
            .ok_or_else(|| {
                anyhow!(
                    "topic '{}' has no partition {partition} (it has {})",
                    self.name,
                    self.partitions.len()
                )
            })
    }

    /// `partitions` grouped by the node that leads them.
    pub(crate) fn by_leader(
        &self,
        partitions: impl IntoIterator<Item = i32>,
    ) -> Result<BTreeMap<i32, Vec<i32>>> {
        let mut grouped: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for partition in partitions {
            let info = self.partition(partition)?;
            if info.leader < 0 {
                bail!(
                    "partition {partition} of '{}' has no leader (LEADER_NOT_AVAILABLE); try again shortly",
                    self.name
                );
            }
            grouped.entry(info.leader).or_default().push(partition);
        }
        Ok(grouped)
    }
}

/// A group coordinator as FindCoordinator names it.
#[derive(Debug, Clone)]
pub(crate) struct Coordinator {
    pub(crate) node_id: i32,
    pub(crate) address: String,
}

/// Connections to a cluster, opened as needed.
pub(crate) struct Client {
    /// Address of the bootstrap broker that answered.
    bootstrap: String,
    connections: HashMap<String, Connection>,
    /// Broker addresses by node id, from the last Metadata response.
    brokers: HashMap<i32, String>,
    /// TLS and SASL credentials of every connection.
    security: sasl::Security,
}

impl Client {
    /// Connects to the first of `brokers` (comma-separated `host:port`)
    /// that answers.
    /// Each connection is secured as `security` says.
    pub(crate) async fn connect(brokers: &str, security: sasl::Security) -> Result<Self> {
        let mut last_error = None;
        for address in brokers.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match Connection::open_as(address, &security).await {
                Ok(connection) => {
                    let mut connections = HashMap::new();
                    connections.insert(address.to_string(), connection);
                    return Ok(Self {
                        bootstrap: address.to_string(),
                        connections,
                        brokers: HashMap::new(),
                        security,
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow!("--brokers is empty; give host:port[,host:port...]")))
    }

    /// How its connections are secured.
    pub(crate) fn security(&self) -> &sasl::Security {
        &self.security
    }

    pub(crate) async fn bootstrap(&mut self) -> Result<&mut Connection> {
        let address = self.bootstrap.clone();
        self.at(&address).await
    }

    /// The connection to `address`, opened (or reopened after a broken
    /// call) as needed.
    pub(crate) async fn at(&mut self, address: &str) -> Result<&mut Connection> {
        let usable = self
            .connections
            .get(address)
            .is_some_and(|c| !c.is_broken());
        if !usable {
            let connection = Connection::open_as(address, &self.security).await?;
            self.connections.insert(address.to_string(), connection);
        }
        Ok(self.connections.get_mut(address).expect("inserted above"))
    }

    /// The connection to broker `node_id`, whose address the last Metadata
    /// response gave.
    pub(crate) async fn node(&mut self, node_id: i32) -> Result<&mut Connection> {
        let address = match self.brokers.get(&node_id) {
            Some(address) => address.clone(),
            None => bail!("broker {node_id} is not in the cluster metadata"),
        };
        self.at(&address).await
    }

    /// Metadata for `topics` (all topics when `None`), remembering the
    /// broker addresses it lists.
    pub(crate) async fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let connection = self.bootstrap().await?;
        let version = connection.version::<MetadataRequest>()?;
        let topics = topics.map(|names| {
            names
                .iter()
                .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
                .collect()
        });
        let mut request = MetadataRequest::default().with_topics(topics);
        if version >= 4 {
            request = request.with_allow_auto_topic_creation(false);
        }
        let response = connection.call(request).await?;
        for broker in &response.brokers {
            self.brokers
                .insert(broker.node_id.0, address(&broker.host, broker.port));
        }
        Ok(response)
    }

    /// One topic's partitions and leaders; an error if it does not exist.
    pub(crate) async fn topic(&mut self, name: &str) -> Result<TopicInfo> {
        let response = self.metadata(Some(&[name.to_string()])).await?;
        let topic = response
            .topics
            .into_iter()
            .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(name))
            .ok_or_else(|| anyhow!("Metadata did not mention topic '{name}'"))?;
        if topic.error_code == ResponseError::UnknownTopicOrPartition.code() {
            bail!("topic '{name}' does not exist (create it with `sluice topic create {name}`)");
        }
        check(topic.error_code, None, || {
            format!("Metadata for topic '{name}'")
        })?;
        let mut partitions: Vec<PartitionInfo> = topic
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                partition: p.partition_index,
                leader: p.leader_id.0,
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        Ok(TopicInfo {
            name: name.to_string(),
            partitions,
        })
    }

    /// The coordinator of `group` (FindCoordinator, key type 0).
    pub(crate) async fn coordinator(&mut self, group: &str) -> Result<Coordinator> {
        self.find_coordinator(group, CoordinatorType::Group).await
    }

    /// The coordinator of the transactional id `key` or of the group
    /// `key`, remembered as a broker for [`Client::node`].
    pub(crate) async fn find_coordinator(
        &mut self,
        key: &str,
        key_type: CoordinatorType,
    ) -> Result<Coordinator> {
        let request = FindCoordinatorRequest::default()
            .with_key(text(key))
            .with_key_type(key_type.code());
        let response = self.bootstrap().await?.call(request).await?;
        check(response.error_code, response.error_message.as_ref(), || {
            format!("FindCoordinator for {}", key_type.describe(key))
        })?;
        let coordinator = Coordinator {
            node_id: response.node_id.0,
            address: address(&response.host, response.port),
        };
        self.brokers
            .insert(coordinator.node_id, coordinator.address.clone());
        Ok(coordinator)
    }

    /// ListOffsets for `(partition, timestamp)` pairs of `topic`, sent to
    /// each partition's leader. Returns the offset per partition (-1 when
    /// no record has a timestamp at or after the one asked for).
    /// [`LATEST_TIMESTAMP`] answers the end of the log at `isolation`: the
    /// high watermark, or the last stable offset read committed.
    pub(crate) async fn list_offsets(
        &mut self,
        topic: &TopicInfo,
        queries: &[(i32, i64)],
        isolation: IsolationLevel,
    ) -> Result<BTreeMap<i32, i64>> {
        let timestamps: BTreeMap<i32, i64> = queries.iter().copied().collect();
        let mut offsets = BTreeMap::new();
        for (leader, partitions) in topic.by_leader(timestamps.keys().copied())? {
            let request_partitions = partitions
                .iter()
                .map(|p| {
                    ListOffsetsPartition::default()
                        .with_partition_index(*p)
                        .with_timestamp(timestamps[p])
                })
                .collect();
            let connection = self.node(leader).await?;
            if isolation == IsolationLevel::ReadCommitted
                && connection.version::<ListOffsetsRequest>()? < 2
            {
                bail!(
                    "the broker at {} cannot list offsets read_committed (needs ListOffsets v2+)",
                    connection.address()
                );
            }
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(isolation.code())
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(&topic.name))
                    .with_partitions(request_partitions)]);
            let response = connection.call(request).await?;
            for answered in response.topics.iter().flat_map(|t| &t.partitions) {
                check(answered.error_code, None, || {
                    format!(
                        "ListOffsets for partition {} of '{}'",
                        answered.partition_index, topic.name
                    )
                })?;
                offsets.insert(answered.partition_index, answered.offset);
            }
        }
        if let Some(missing) = timestamps.keys().find(|p| !offsets.contains_key(p)) {
            bail!(
                "ListOffsets did not answer for partition {missing} of '{}'",
                topic.name
            );
        }
        Ok(offsets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(
            error_text(3, None).as_deref(),
            Some("UNKNOWN_TOPIC_OR_PARTITION")
        );
        assert_eq!(
            error_text(36, Some(&StrBytes::from_static_str("Topic 't' exists"))).as_deref(),
            Some("TOPIC_ALREADY_EXISTS: Topic 't' exists")
        );
        assert_eq!(error_text(0, None), None);
        assert_eq!(error_text(-2000, None).as_deref(), Some("error code -2000"));
    }

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(address("127.0.0.1", 9092), "127.0.0.1:9092");
        assert_eq!(address("::1", 9092), "[::1]:9092");
    }

    #[tokio::test]
    async fn refused_connection_names_the_address() {
        // Bind then drop a listener so the port is (almost surely) closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let error = match Client::connect(&address, Default::default()).await {
            Ok(_) => panic!("connected to a closed port"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(&address), "{error}");
        assert!(error.contains("connection refused"), "{error}");
        assert!(error.contains("SLUICE_BROKERS"), "{error}");
    }
}
