//! The shutdown signal every long-lived task watches.
//!
//! A leaf module (as in tokio-rs/mini-redis): the broker owns the sender and
//! flips it once; the listeners, the processor runtime and the HTTP server
//! hold receivers. Keeping the type here, not in `broker`, means none of
//! them imports the module that starts them.

use tokio::sync::watch;

/// A signal every task watches; it flips to `true` once, at shutdown.
pub(crate) type Shutdown = watch::Receiver<bool>;
