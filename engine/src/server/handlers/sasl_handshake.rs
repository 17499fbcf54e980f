//! SaslHandshake (key 17): answered by the connection, which keeps the
//! authentication state (`server::sasl`); listed here to be advertised.
//! Version 0 is advertised because librdkafka looks for it before it will
//! authenticate at all, but clients that also see version 1 (and
//! SaslAuthenticate) use those; a v0-only client, which would follow its
//! handshake with bare SASL tokens instead of SaslAuthenticate requests,
//! is not supported (its tokens do not parse as a request: the connection
//! closes).

pub(crate) const VERSIONS: (i16, i16) = (0, 1);
