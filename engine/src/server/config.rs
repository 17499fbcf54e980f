//! The Kafka listener's settings (`[kafka]` of the broker's configuration):
//! frame and in-flight bounds, Fetch long polls, topic auto-creation, the
//! advertised address and security (SASL, TLS).

use serde::{Deserialize, Serialize};

/// Kafka listener settings (`[kafka]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct KafkaConfig {
    /// Largest request frame accepted; a larger length prefix closes the
    /// connection before anything is allocated. Default 100 MiB.
    pub(crate) frame_bytes_max: u32,
    /// Concurrent client connections; further ones wait in the accept
    /// queue. Default 10 000.
    pub(crate) connections_max: usize,
    /// Requests of one connection being handled at once; the connection is
    /// not read further until one completes. Default 128.
    pub(crate) in_flight_requests_max: usize,
    /// Request bytes held in memory at once across all connections; a
    /// frame's body is read only once its size fits. At least
    /// `frame_bytes_max`. Default 512 MiB.
    pub(crate) queued_request_bytes_max: u32,
    /// Longest wait for the rest of a request frame once its length has
    /// arrived; a slower peer is disconnected, releasing the request bytes
    /// it held. Default 30 000 ms.
    pub(crate) request_body_timeout_ms: u64,
    /// A connection with no request in flight that sends nothing for this
    /// long is closed (Kafka's `connections.max.idle.ms`). Default 600 000 ms.
    pub(crate) connections_max_idle_ms: u64,
    /// Longest Fetch long poll, whatever the client asks. Default 30 000 ms.
    pub(crate) fetch_wait_max_ms: u64,
    /// Largest Fetch response, whatever the client asks (`max_bytes <= 0`
    /// included); Kafka's `fetch.max.bytes`. As in Kafka, the first batch
    /// of the first partition with data may exceed it so consumers make
    /// progress. Default 55 MiB.
    pub(crate) fetch_bytes_max: u32,
    /// Fetched record bytes held in memory at once across all connections,
    /// from the read until the response is written (a connection may have
    /// `in_flight_requests_max` fetches waiting to be written in order); a
    /// fetch finding it full answers with fewer records. At least
    /// `fetch_bytes_max` and the topics' default `max_message_bytes`, so a
    /// batch never outgrows it. Default 1 GiB.
    pub(crate) queued_fetch_bytes_max: u32,
    /// Create unknown topics on Metadata (when the client allows it) and
    /// Produce (`auto.create.topics.enable`). Default true.
    pub(crate) auto_create_topics_enable: bool,
    /// Partitions of auto-created topics (`num.partitions`). Default 1.
    pub(crate) num_partitions: i32,
    /// Address given to clients in Metadata; default: the bound listener.
    pub(crate) advertised_listener: Option<std::net::SocketAddr>,
    /// Kafka's names: `PLAINTEXT` (no authentication, no encryption),
    /// `SSL` (TLS, no authentication), `SASL_PLAINTEXT` (clients
    /// authenticate with one of `sasl_mechanisms`) or `SASL_SSL` (both).
    /// Default PLAINTEXT.
    pub(crate) security_protocol: super::sasl::SecurityProtocol,
    /// Under `SSL` and `SASL_SSL`: the listener's certificate, PEM, the
    /// server's own first and then any intermediates. Required there,
    /// refused otherwise. No default.
    pub(crate) tls_cert_file: Option<std::path::PathBuf>,
    /// Under `SSL` and `SASL_SSL`: the certificate's private key, PEM
    /// (PKCS#8, PKCS#1 or SEC1), unencrypted. No default.
    pub(crate) tls_key_file: Option<std::path::PathBuf>,
    /// Longest wait for a client's TLS handshake to finish once it has
    /// connected; a slower or silent peer is disconnected, releasing its
    /// connection permit. Default 10 000 ms.
    pub(crate) tls_handshake_timeout_ms: u64,
    /// Mechanisms offered under SASL: PLAIN, SCRAM-SHA-256,
    /// SCRAM-SHA-512. Default all three.
    pub(crate) sasl_mechanisms: Vec<String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            frame_bytes_max: 100 * 1024 * 1024,
            connections_max: 10_000,
            in_flight_requests_max: 128,
            queued_request_bytes_max: 512 * 1024 * 1024,
            request_body_timeout_ms: 30_000,
            connections_max_idle_ms: 600_000,
            fetch_wait_max_ms: 30_000,
            fetch_bytes_max: 55 * 1024 * 1024,
            queued_fetch_bytes_max: 1024 * 1024 * 1024,
            auto_create_topics_enable: true,
            num_partitions: 1,
            advertised_listener: None,
            security_protocol: super::sasl::SecurityProtocol::default(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_handshake_timeout_ms: 10_000,
            sasl_mechanisms: ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
                .map(String::from)
                .to_vec(),
        }
    }
}
