//! SaslAuthenticate (key 36): answered by the connection, which keeps the
//! authentication state (`server::sasl`); listed here to be advertised.

pub(crate) const VERSIONS: (i16, i16) = (0, 2);
