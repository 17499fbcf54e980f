//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the server side
//! and (for `sluice`'s own Kafka verbs, [`ClientExchange`]) the client's,
//! as Kafka speaks them (KIP-84): no channel binding, the user name
//! `=2C`/`=3D`-escaped, extensions in the client's first message ignored
//! except `tokenauth` (delegation tokens, not supported here).
//!
//! What a user's credential holds is what RFC 5802 keeps on the server:
//! the salt, the iteration count, `StoredKey = H(HMAC(SaltedPassword,
//! "Client Key"))` and `ServerKey = HMAC(SaltedPassword, "Server Key")`;
//! never the password.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::random::constant_time_eq;

/// PBKDF2 iterations of new credentials (Kafka's minimum is 4096).
pub(crate) const ITERATIONS: u32 = 4096;

/// Longest SCRAM message accepted from a client.
const MESSAGE_BYTES_MAX: usize = 4096;

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    pub(crate) fn mechanism(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("any key length");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(bytes).to_vec(),
            Self::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Self::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What the server keeps of one user's password for one hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Credential {
    /// Base64.
    pub(crate) salt: String,
    pub(crate) iterations: u32,
    /// Base64 of `H(ClientKey)`.
    pub(crate) stored_key: String,
    /// Base64 of `ServerKey`.
    pub(crate) server_key: String,
}

impl Credential {
    /// The credential of `password` with a fresh random salt.
    pub(crate) fn new(hash: Hash, password: &str) -> std::io::Result<Self> {
        let salt = crate::random::bytes::<24>()?;
        Ok(Self::derive(hash, password, &salt, ITERATIONS))
    }

    fn derive(hash: Hash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        Self {
            salt: BASE64.encode(salt),
            iterations,
            stored_key: BASE64.encode(hash.digest(&client_key)),
            server_key: BASE64.encode(hash.hmac(&salted, b"Server Key")),
        }
    }

    /// Whether `password` is the one this credential was made from (for
    /// SASL/PLAIN).
    pub(crate) fn verifies(&self, hash: Hash, password: &str) -> bool {
        let Ok(salt) = BASE64.decode(&self.salt) else {
            return false;
        };
        let derived = Self::derive(hash, password, &salt, self.iterations);
        constant_time_eq(derived.stored_key.as_bytes(), self.stored_key.as_bytes())
    }
}

/// A SCRAM exchange in progress: after the client's first message.
#[derive(Debug)]
pub(crate) struct Exchange {
    hash: Hash,
    user: String,
    credential: Option<Credential>,
    client_first_bare: String,
    server_first: String,
    /// The client's nonce, and the whole (client's then ours).
    client_nonce: String,
    nonce: String,
}

/// Why an exchange failed (the client sees only "authentication failed").
pub(crate) type Failure = String;

/// The user name in a client-first message, before its credential is
/// looked up.
pub(crate) fn user_of(client_first: &[u8]) -> Result<String, Failure> {
    let (_, bare) = split_first(client_first)?;
    let attributes = attributes(bare);
    let name = attributes
        .iter()
        .find(|(key, _)| *key == "n")
        .map(|(_, value)| *value)
        .ok_or("the client's first SCRAM message names no user")?;
    Ok(name.replace("=2C", ",").replace("=3D", "="))
}

impl Exchange {
    /// Answers the client's first message; `credential` is the user's
    /// (`None`: unknown user, which fails at the end, as a wrong password
    /// does, so the answer does not tell who exists).
    pub(crate) fn start(
        hash: Hash,
        client_first: &[u8],
        credential: Option<Credential>,
    ) -> Result<(Self, Vec<u8>), Failure> {
        let (gs2, bare) = split_first(client_first)?;
        if gs2.starts_with('p') {
            return Err("SCRAM channel binding is not supported".into());
        }
        let attributes = attributes(bare);
        let value = |key: &str| attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        if value("tokenauth").is_some() {
            return Err("delegation tokens are not supported".into());
        }
        let client_nonce = value("r").ok_or("the client's first SCRAM message has no nonce")?;
        let user = user_of(client_first)?;
        let server_nonce = crate::random::bytes::<18>()
            .map(|bytes| crate::random::hex(&bytes))
            .map_err(|e| format!("no randomness: {e}"))?;
        let nonce = format!("{client_nonce}{server_nonce}");
        // An unknown user gets a made-up salt, so the answer looks alike.
        let (salt, iterations) = match &credential {
            Some(credential) => (credential.salt.clone(), credential.iterations),
            None => (BASE64.encode(hash.digest(user.as_bytes())), ITERATIONS),
        };
        let server_first = format!("r={nonce},s={salt},i={iterations}");
        let answer = server_first.clone().into_bytes();
        Ok((
            Self {
                hash,
                user,
                credential,
                client_first_bare: bare.to_string(),
                server_first,
                client_nonce: client_nonce.to_string(),
                nonce,
            },
            answer,
        ))
    }

    /// Checks the client's final message; the server's final message and
    /// the authenticated user on success.
    pub(crate) fn finish(self, client_final: &[u8]) -> Result<(Vec<u8>, String), Failure> {
        let text = message_text(client_final)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or("the client's final SCRAM message has no proof")?;
        let attributes = attributes(without_proof);
        let value = |key: &str| attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        // RFC 5802 wants the server's nonce back; librdkafka sends its own
        // nonce in front of it again (its client-final-message-without-
        // proof, which the proof signs, says so): both are bound to this
        // exchange.
        let echoed = value("r").unwrap_or_default();
        let doubled = echoed
            .strip_prefix(self.client_nonce.as_str())
            .is_some_and(|rest| rest == self.nonce);
        if echoed != self.nonce && !doubled {
            return Err("the client's final SCRAM message has the wrong nonce".into());
        }
        if !matches!(value("c"), Some("biws" | "eSws")) {
            return Err("unexpected SCRAM channel binding".into());
        }
        let credential = self
            .credential
            .ok_or_else(|| format!("unknown user {:?}", self.user))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let decode = |text: &str| BASE64.decode(text).map_err(|_| "bad base64".to_string());
        let stored_key = decode(&credential.stored_key)?;
        let server_key = decode(&credential.server_key)?;
        let proof = decode(proof)?;
        let signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err("the SCRAM proof has the wrong length".into());
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&self.hash.digest(&client_key), &stored_key) {
            return Err(format!("wrong password for user {:?}", self.user));
        }
        let server_signature = self.hash.hmac(&server_key, auth_message.as_bytes());
        let answer = format!("v={}", BASE64.encode(server_signature)).into_bytes();
        Ok((answer, self.user))
    }
}

/// Most PBKDF2 iterations a client does for a server (Kafka's clients'
/// bound): a server asking for more is refused, not obeyed for minutes.
const CLIENT_ITERATIONS_MAX: u32 = 16_384;

/// A SCRAM exchange from the client's side.
pub(crate) struct ClientExchange {
    hash: Hash,
    password: String,
    client_first_bare: String,
    client_nonce: String,
    /// The signature the server must answer with, once known.
    server_signature: Option<Vec<u8>>,
}

impl ClientExchange {
    /// The exchange and the client's first message.
    pub(crate) fn start(
        hash: Hash,
        user: &str,
        password: &str,
    ) -> std::io::Result<(Self, Vec<u8>)> {
        let client_nonce = crate::random::hex(&crate::random::bytes::<18>()?);
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={user},r={client_nonce}");
        let first = format!("n,,{client_first_bare}").into_bytes();
        let exchange = Self {
            hash,
            password: password.to_string(),
            client_first_bare,
            client_nonce,
            server_signature: None,
        };
        Ok((exchange, first))
    }

    /// The client's final message, answering the server's first.
    pub(crate) fn respond(&mut self, server_first: &[u8]) -> Result<Vec<u8>, Failure> {
        let text = message_text(server_first)?;
        let attributes = attributes(text);
        let value = |key: &str| attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let nonce = value("r").ok_or("the server's first SCRAM message has no nonce")?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err("the server's SCRAM nonce does not extend ours".into());
        }
        let salt = BASE64
            .decode(value("s").ok_or("the server's first SCRAM message has no salt")?)
            .map_err(|_| "bad base64 salt")?;
        let iterations: u32 = value("i")
            .and_then(|i| i.parse().ok())
            .filter(|i| (1..=CLIENT_ITERATIONS_MAX).contains(i))
            .ok_or_else(|| {
                format!("the server's SCRAM iteration count is not 1 to {CLIENT_ITERATIONS_MAX}")
            })?;
        let salted = self
            .hash
            .salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = self.hash.hmac(&salted, b"Client Key");
        let stored_key = self.hash.digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = self.hash.hmac(&salted, b"Server Key");
        self.server_signature = Some(self.hash.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message: it proves the server knew the
    /// credential.
    pub(crate) fn verify(&self, server_final: &[u8]) -> Result<(), Failure> {
        let text = message_text(server_final)?;
        let signature = text
            .strip_prefix("v=")
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or_else(|| format!("the server's final SCRAM message is {text:?}"))?;
        match &self.server_signature {
            Some(expected) if constant_time_eq(expected, &signature) => Ok(()),
            _ => Err(
                "the server's SCRAM signature is wrong: it does not know this user's credential"
                    .into(),
            ),
        }
    }
}

fn message_text(message: &[u8]) -> Result<&str, Failure> {
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(format!("a SCRAM message over {MESSAGE_BYTES_MAX} bytes"));
    }
    std::str::from_utf8(message).map_err(|_| "a SCRAM message that is not UTF-8".into())
}

/// `gs2-header` and `client-first-message-bare`.
fn split_first(message: &[u8]) -> Result<(&str, &str), Failure> {
    let text = message_text(message)?;
    let mut commas = text.match_indices(',').map(|(at, _)| at);
    let (_, second) = (commas.next(), commas.next());
    let second = second.ok_or("the client's first SCRAM message has no GS2 header")?;
    Ok((&text[..second + 1], &text[second + 1..]))
}

/// `key=value` pairs separated by commas.
fn attributes(text: &str) -> Vec<(&str, &str)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange (SCRAM-SHA-256, user "user", password
    /// "pencil"), with the server nonce the RFC used.
    #[test]
    fn rfc_7677_proof_and_server_signature() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = Credential::derive(Hash::Sha256, "pencil", &salt, 4096);
        let client_first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let (mut exchange, _) =
            Exchange::start(Hash::Sha256, client_first, Some(credential.clone())).unwrap();
        // Replace our random nonce with the RFC's.
        exchange.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        exchange.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", exchange.nonce);
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let (server_final, user) = exchange.finish(client_final).unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            String::from_utf8(server_final).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(credential.verifies(Hash::Sha256, "pencil"));
        assert!(!credential.verifies(Hash::Sha256, "pencil2"));
    }

    #[test]
    fn the_client_side_authenticates_against_the_server_side() {
        for hash in [Hash::Sha256, Hash::Sha512] {
            let credential = Credential::new(hash, "pencil").unwrap();
            let (mut client, first) = ClientExchange::start(hash, "us,er", "pencil").unwrap();
            assert_eq!(user_of(&first).unwrap(), "us,er");
            let (server, server_first) =
                Exchange::start(hash, &first, Some(credential.clone())).unwrap();
            let last = client.respond(&server_first).unwrap();
            let (server_final, user) = server.finish(&last).unwrap();
            assert_eq!(user, "us,er");
            client.verify(&server_final).unwrap();
            // A server that does not know the credential cannot fake its answer.
            assert!(client.verify(b"v=AAAA").is_err());
            // A wrong password fails at the server.
            let (mut client, first) = ClientExchange::start(hash, "user", "crayon").unwrap();
            let (server, server_first) = Exchange::start(hash, &first, Some(credential)).unwrap();
            let last = client.respond(&server_first).unwrap();
            assert!(server.finish(&last).is_err());
        }
        let (mut client, _) = ClientExchange::start(Hash::Sha256, "u", "p").unwrap();
        let greedy = format!("r={}x,s=AAAA,i=100000000", client.client_nonce);
        assert!(client
            .respond(greedy.as_bytes())
            .unwrap_err()
            .contains("iteration"));
    }

    #[test]
    fn a_wrong_proof_an_unknown_user_and_channel_binding_fail() {
        let credential = Credential::new(Hash::Sha512, "secret").unwrap();
        let (exchange, _) =
            Exchange::start(Hash::Sha512, b"n,,n=alice,r=abc", Some(credential)).unwrap();
        let client_final = format!("c=biws,r={},p=AAAA", exchange.nonce);
        assert!(exchange.finish(client_final.as_bytes()).is_err());
        let (exchange, answer) = Exchange::start(Hash::Sha512, b"n,,n=bob,r=abc", None).unwrap();
        assert!(String::from_utf8(answer).unwrap().contains(",i=4096"));
        let client_final = format!("c=biws,r={},p=AAAA", exchange.nonce);
        assert!(exchange
            .finish(client_final.as_bytes())
            .unwrap_err()
            .contains("unknown user"));
        assert!(Exchange::start(Hash::Sha256, b"p=tls-unique,,n=a,r=b", None).is_err());
        assert_eq!(user_of(b"n,,n=a=2Cb=3Dc,r=x").unwrap(), "a,b=c");
    }
}
