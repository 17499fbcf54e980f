//! SaslHandshake (key 17): answered by the connection, which keeps the
//! authentication state (`server::sasl`); listed here to be advertised.
//! Version 1 only: after a v0 handshake the client would send bare SASL
//! tokens instead of SaslAuthenticate requests.

pub(crate) const VERSIONS: (i16, i16) = (1, 1);
