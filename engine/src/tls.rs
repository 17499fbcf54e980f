//! TLS for the Kafka listener (`SSL`, `SASL_SSL`) and the admin API
//! (HTTPS): a rustls server configuration made from a PEM certificate
//! chain and private key, and a handshake bounded in time.
//!
//! rustls runs on the `ring` provider (aws-lc-rs would add a cmake and C
//! build). The handshake has a deadline because a peer that connects and
//! says nothing would otherwise hold its connection permit for as long as
//! it likes; a failed or late handshake closes that connection only.
//!
//! Clients are not asked for a certificate (no mutual TLS): on the Kafka
//! listener, SASL authenticates them; under `SSL` alone nobody is
//! authenticated.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The certificate and key of one listener, and how long its handshakes
/// may take.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    /// The setting that bounds the handshake, for the error message.
    timeout_setting: &'static str,
}

impl Tls {
    /// Reads `cert_file` (PEM, the server's certificate first, then any
    /// intermediates) and `key_file` (PEM, PKCS#8, PKCS#1 or SEC1) and
    /// checks that they belong together. `alpn` is what the listener
    /// offers in ALPN (empty: nothing). Errors name the file at fault.
    pub(crate) fn open(
        cert_file: &Path,
        key_file: &Path,
        alpn: &[&[u8]],
        handshake_timeout_ms: u64,
        timeout_setting: &'static str,
    ) -> anyhow::Result<Self> {
        if handshake_timeout_ms == 0 {
            anyhow::bail!(
                "{timeout_setting} = 0 would fail every handshake; give milliseconds, e.g. 10000"
            );
        }
        let certificates = read_certificates(cert_file)?;
        let key = read_key(key_file)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("the TLS provider supports no protocol version")?
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .with_context(|| {
                format!(
                    "the TLS key {} does not go with the certificate {}",
                    key_file.display(),
                    cert_file.display()
                )
            })?;
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            handshake_timeout: Duration::from_millis(handshake_timeout_ms),
            timeout_setting,
        })
    }

    /// Runs the server side of the handshake on `stream`, within the
    /// handshake timeout.
    pub(crate) async fn handshake(
        &self,
        stream: TcpStream,
    ) -> anyhow::Result<TlsStream<TcpStream>> {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await {
            // The message repeats the cause, for log lines that show the
            // outermost context only; the chain keeps the I/O error, so a
            // peer that hung up is still recognised as one.
            Ok(result) => result.map_err(|error| {
                let message = format!("TLS handshake failed: {error}");
                anyhow::Error::new(error).context(message)
            }),
            Err(_) => anyhow::bail!(
                "the TLS handshake did not finish within {} ms ({})",
                self.handshake_timeout.as_millis(),
                self.timeout_setting
            ),
        }
    }
}

fn read_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the TLS {what} {}", path.display()))
}

/// The certificates of a PEM file, in order.
fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path, "certificate")?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the TLS certificate {}", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!(
            "the TLS certificate {} holds no PEM CERTIFICATE block",
            path.display()
        );
    }
    Ok(certificates)
}

/// The first private key of a PEM file.
fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_file(path, "key")?;
    PrivateKeyDer::from_pem_slice(&pem).with_context(|| {
        format!(
            "the TLS key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    fn open(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        Tls::open(cert, key, &[], 1000, "test.timeout")
    }

    #[test]
    fn a_matching_pair_opens_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        open(&cert, &key).unwrap();

        let error = format!("{:#}", open(&cert, &other_key).err().unwrap());
        assert!(error.contains("does not go with"), "{error}");
        assert!(error.contains("b.key"), "{error}");

        let missing = dir.path().join("missing.crt");
        let error = format!("{:#}", open(&missing, &key).err().unwrap());
        assert!(error.contains("missing.crt"), "{error}");

        // A key where the certificate belongs, and the reverse.
        let error = format!("{:#}", open(&key, &key).err().unwrap());
        assert!(
            error.contains("no PEM CERTIFICATE") && error.contains("a.key"),
            "{error}"
        );
        let error = format!("{:#}", open(&cert, &cert).err().unwrap());
        assert!(
            error.contains("no PEM private key") && error.contains("a.crt"),
            "{error}"
        );

        // A zero handshake timeout would refuse every client.
        let zero = Tls::open(&cert, &key, &[], 0, "kafka.tls_handshake_timeout_ms");
        let error = format!("{:#}", zero.err().unwrap());
        assert!(
            error.contains("kafka.tls_handshake_timeout_ms = 0"),
            "{error}"
        );
    }
}
