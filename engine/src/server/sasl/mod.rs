//! SASL authentication of Kafka connections (KIP-43, KIP-152): a client
//! sends SaslHandshake (v1) naming a mechanism, then SaslAuthenticate
//! requests carrying the mechanism's messages. Until it has succeeded, a
//! connection to a `SASL_PLAINTEXT` or `SASL_SSL` listener may send
//! ApiVersions and those two only; anything else closes it, as Kafka does.
//! (Under `SASL_SSL` the TLS handshake comes first, in `crate::tls`.) A failed
//! authentication is answered with SASL_AUTHENTICATION_FAILED and the
//! connection closed.
//!
//! Mechanisms: PLAIN (RFC 4616; the password checked against the user's
//! SCRAM-SHA-256 credential) and SCRAM-SHA-256/512 (`scram`). Users live
//! in `users` and are managed through the admin API.
//!
//! The state is per connection ([`Session`]) and its requests are handled
//! by the connection's reader in order, not by `handlers`: the table there
//! only advertises them.

pub(crate) mod scram;
pub(crate) mod users;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use serde::{Deserialize, Serialize};

use crate::protocol::{self, FrameError, RequestFrame};
use scram::{Exchange, Hash};
pub(crate) use users::Users;

/// The Kafka listener's security protocol (Kafka's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SecurityProtocol {
    /// No authentication.
    #[default]
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    /// SASL authentication, unencrypted.
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// TLS, no authentication.
    #[serde(rename = "SSL")]
    Ssl,
    /// SASL authentication over TLS.
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether clients must authenticate with SASL.
    pub(crate) fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    /// Whether connections are TLS.
    pub(crate) fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Kafka's name, as in the config.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslSsl => "SASL_SSL",
        }
    }
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Plain,
    Scram(Hash),
}

impl Mechanism {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(Self::Plain),
            "SCRAM-SHA-256" => Some(Self::Scram(Hash::Sha256)),
            "SCRAM-SHA-512" => Some(Self::Scram(Hash::Sha512)),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(hash) => hash.mechanism(),
        }
    }
}

/// The listener's SASL settings and its users.
#[derive(Debug)]
pub(crate) struct Sasl {
    /// Whether connections must authenticate.
    pub(crate) required: bool,
    pub(crate) mechanisms: Vec<Mechanism>,
    pub(crate) users: Arc<Users>,
}

impl Sasl {
    /// From `[kafka] security_protocol` and `sasl_mechanisms`.
    pub(crate) fn new(
        protocol: SecurityProtocol,
        mechanisms: &[String],
        users: Arc<Users>,
    ) -> anyhow::Result<Self> {
        let parsed = mechanisms
            .iter()
            .map(|name| {
                Mechanism::parse(name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "[kafka] sasl_mechanisms: {name:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let required = protocol.sasl();
        if required && parsed.is_empty() {
            anyhow::bail!(
                "[kafka] security_protocol = {:?} needs at least one of sasl_mechanisms",
                protocol.name()
            );
        }
        Ok(Self {
            required,
            mechanisms: if required { parsed } else { Vec::new() },
            users,
        })
    }
}

/// Where one connection is in authenticating.
#[derive(Debug, Default)]
pub(crate) struct Session {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Start,
    Handshaken(Mechanism),
    Scram(Box<Exchange>),
    Authenticated(String),
    Failed,
}

/// What the connection does with a request.
pub(crate) enum Verdict {
    /// Not a SASL matter: handle it as usual.
    Pass,
    /// Send this answer.
    Answer(Bytes),
    /// Send this answer, then close the connection.
    AnswerAndClose(Bytes),
    /// Close the connection at once (why, for the log).
    Close(String),
}

impl Session {
    /// The authenticated user, if any.
    pub(crate) fn principal(&self) -> Option<&str> {
        match &self.state {
            State::Authenticated(user) => Some(user),
            _ => None,
        }
    }

    /// Decides about `request`.
    pub(crate) fn handle(
        &mut self,
        sasl: &Sasl,
        request: &RequestFrame,
    ) -> Result<Verdict, FrameError> {
        match request.api_key {
            ApiKey::SaslHandshake => self.handshake(sasl, request),
            ApiKey::SaslAuthenticate => self.authenticate(sasl, request),
            ApiKey::ApiVersions => Ok(Verdict::Pass),
            _ if !sasl.required || self.principal().is_some() => Ok(Verdict::Pass),
            api_key => Ok(Verdict::Close(format!(
                "a {api_key:?} request before SASL authentication"
            ))),
        }
    }

    fn handshake(&mut self, sasl: &Sasl, request: &RequestFrame) -> Result<Verdict, FrameError> {
        let body: SaslHandshakeRequest = request.decode()?;
        let names = sasl
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(names);
        let wanted = sasl
            .mechanisms
            .iter()
            .find(|m| m.name() == body.mechanism.as_str());
        let code = match (&self.state, wanted) {
            (State::Start, Some(mechanism)) => {
                self.state = State::Handshaken(*mechanism);
                0
            }
            (State::Start, None) => ResponseError::UnsupportedSaslMechanism.code(),
            _ => ResponseError::IllegalSaslState.code(),
        };
        answer(
            request,
            &response.with_error_code(code),
            code != 0 && !matches!(self.state, State::Start),
        )
    }

    fn authenticate(&mut self, sasl: &Sasl, request: &RequestFrame) -> Result<Verdict, FrameError> {
        let body: SaslAuthenticateRequest = request.decode()?;
        let bytes = body.auth_bytes.as_ref();
        let state = std::mem::replace(&mut self.state, State::Failed);
        let outcome = match state {
            State::Handshaken(Mechanism::Plain) => {
                plain(sasl, bytes).map(|user| (Vec::new(), State::Authenticated(user)))
            }
            State::Handshaken(Mechanism::Scram(hash)) => scram::user_of(bytes).and_then(|user| {
                let credential = sasl.users.credential(&user, hash);
                Exchange::start(hash, bytes, credential)
                    .map(|(exchange, reply)| (reply, State::Scram(Box::new(exchange))))
            }),
            State::Scram(exchange) => exchange
                .finish(bytes)
                .map(|(reply, user)| (reply, State::Authenticated(user))),
            other => {
                self.state = other;
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate without a SaslHandshake, or after authentication",
                    )));
                return answer(request, &response, true);
            }
        };
        match outcome {
            Ok((reply, state)) => {
                if let State::Authenticated(user) = &state {
                    tracing::debug!(user, client = %request.client_host, "SASL authentication succeeded");
                }
                self.state = state;
                let response =
                    SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply));
                answer(request, &response, false)
            }
            Err(reason) => {
                tracing::info!(client = %request.client_host, %reason, "SASL authentication failed");
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "Authentication failed: invalid username or password",
                    )));
                answer(request, &response, true)
            }
        }
    }
}

/// PLAIN: `authzid NUL user NUL password`; an authzid other than the user
/// is refused (no impersonation).
fn plain(sasl: &Sasl, bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "PLAIN credentials that are not UTF-8")?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed PLAIN credentials".into());
    };
    if !authzid.is_empty() && authzid != user {
        return Err(format!("user {user:?} may not act as {authzid:?}"));
    }
    let credential = sasl
        .users
        .credential(user, Hash::Sha256)
        .ok_or_else(|| format!("unknown user {user:?}"))?;
    if !credential.verifies(Hash::Sha256, password) {
        return Err(format!("wrong password for user {user:?}"));
    }
    Ok(user.to_string())
}

fn answer<R: Encodable>(
    request: &RequestFrame,
    body: &R,
    close: bool,
) -> Result<Verdict, FrameError> {
    let bytes = protocol::encode_response(
        request.api_key,
        request.api_version,
        request.correlation_id,
        body,
    )
    .map_err(|error| FrameError::Encode {
        api_key: request.api_key,
        api_version: request.api_version,
        reason: error.to_string(),
    })?;
    Ok(if close {
        Verdict::AnswerAndClose(bytes)
    } else {
        Verdict::Answer(bytes)
    })
}
