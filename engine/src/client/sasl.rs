//! How `sluice`'s own Kafka verbs secure a connection: TLS (rustls, the
//! system's roots and a `--ca-file`) around the TCP stream, then SASL.
//!
//! SASL: after ApiVersions, a connection
//! to a `SASL_PLAINTEXT` listener sends SaslHandshake (v1) and then
//! SaslAuthenticate with PLAIN's one message or SCRAM's two (the broker's
//! final message is checked, so a server that does not know the
//! credential is not trusted).

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};

use super::{error_text, text, Connection};
use crate::server::sasl::scram::{ClientExchange, Hash};

/// A connection's security: TLS (`SSL`, `SASL_SSL`) and SASL credentials.
#[derive(Clone, Default)]
pub(crate) struct Security {
    pub(crate) tls: Option<tokio_rustls::TlsConnector>,
    pub(crate) credentials: Option<Credentials>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// A TLS client configuration trusting the system's roots and the
/// certificates of `ca_file` (PEM).
pub(crate) fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    if let Some(path) = ca_file {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect())
            .map_err(|e| anyhow!("reading the --ca-file {}: {e}", path.display()))?;
        if certificates.is_empty() {
            bail!(
                "the --ca-file {} holds no PEM CERTIFICATE block",
                path.display()
            );
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| anyhow!("the --ca-file {}: {e}", path.display()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// Who a client authenticates as, and how.
#[derive(Clone)]
pub(crate) struct Credentials {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub(crate) mechanism: String,
    pub(crate) user: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Checks the mechanism's name.
    pub(crate) fn new(mechanism: &str, user: &str, password: &str) -> Result<Self> {
        let mechanism = mechanism.to_ascii_uppercase();
        if !matches!(
            mechanism.as_str(),
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
        ) {
            bail!("SASL mechanism {mechanism:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512");
        }
        Ok(Self {
            mechanism,
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

/// Authenticates `connection` (ApiVersions done) with `credentials`.
pub(crate) async fn authenticate(
    connection: &mut Connection,
    credentials: &Credentials,
) -> Result<()> {
    let address = connection.address().to_string();
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(text(credentials.mechanism.clone()));
    let answer = connection.call(handshake).await?;
    if answer.error_code != 0 {
        let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
        bail!(
            "the broker at {address} does not offer SASL {} (it offers: {}){}",
            credentials.mechanism,
            if offered.is_empty() {
                "none; is its listener PLAINTEXT?".to_string()
            } else {
                offered.join(", ")
            },
            error_text(answer.error_code, None)
                .map(|t| format!(" — {t}"))
                .unwrap_or_default()
        );
    }
    let failed = |reason: String| {
        anyhow!(
            "SASL authentication as {:?} at {address} failed: {reason}",
            credentials.user
        )
    };
    let hash = match credentials.mechanism.as_str() {
        "SCRAM-SHA-256" => Hash::Sha256,
        "SCRAM-SHA-512" => Hash::Sha512,
        _ => {
            let plain = format!("\0{}\0{}", credentials.user, credentials.password);
            exchange(connection, plain.into_bytes())
                .await
                .map_err(failed)?;
            return Ok(());
        }
    };
    let (mut scram, first) = ClientExchange::start(hash, &credentials.user, &credentials.password)?;
    let server_first = exchange(connection, first).await.map_err(&failed)?;
    let last = scram.respond(&server_first).map_err(&failed)?;
    let server_final = exchange(connection, last).await.map_err(&failed)?;
    scram.verify(&server_final).map_err(failed)
}

/// One SaslAuthenticate round: sends `bytes`, returns the broker's.
async fn exchange(connection: &mut Connection, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
    let answer = connection
        .call(request)
        .await
        .map_err(|e| format!("{e:#}"))?;
    if answer.error_code != 0 {
        return Err(error_text(answer.error_code, answer.error_message.as_ref())
            .unwrap_or_else(|| format!("error code {}", answer.error_code)));
    }
    Ok(answer.auth_bytes.to_vec())
}
