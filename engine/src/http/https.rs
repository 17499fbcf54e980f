//! HTTPS for the admin API: a listener that axum serves like a TCP one,
//! handing it connections whose TLS handshake has finished.
//!
//! Handshakes run in tasks of their own, at most [`HANDSHAKES_MAX`] at a
//! time and each within `admin.tls_handshake_timeout_ms`, so a silent peer
//! delays nobody else; a failed one is logged with the peer and dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use crate::server::{accept_with_permit, client_left, AcceptBackoff};
use crate::shutdown::Shutdown;
use crate::tls::Tls;

/// TLS handshakes in progress at once; further connections wait in the
/// kernel's accept queue.
const HANDSHAKES_MAX: usize = 64;

/// Connections that finished their handshake, for axum.
pub(super) struct HttpsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            // The accepting task stopped: shutdown, which ends axum's
            // loop too; until then there is nothing more to hand out.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The listener axum serves, and the task that accepts on `listener` and
/// runs the handshakes until shutdown (the caller runs it).
pub(super) fn listen(
    listener: TcpListener,
    tls: Tls,
    shutdown: Shutdown,
) -> std::io::Result<(HttpsListener, impl std::future::Future<Output = ()>)> {
    let local = listener.local_addr()?;
    let (sender, handshaken) = mpsc::channel(HANDSHAKES_MAX);
    let accepting = accept(listener, tls, sender, shutdown);
    Ok((HttpsListener { handshaken, local }, accepting))
}

async fn accept(
    listener: TcpListener,
    tls: Tls,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    mut shutdown: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    let mut backoff = AcceptBackoff::default();
    // Dropped at the end, which aborts handshakes still in progress.
    let mut handshakes = JoinSet::new();
    while let Some((stream, peer, permit)) =
        accept_with_permit(&listener, &permits, &mut backoff, &mut shutdown).await
    {
        let (tls, sender) = (tls.clone(), sender.clone());
        handshakes.spawn(async move {
            match tls.handshake(stream).await {
                Ok(stream) => {
                    let _ = sender.send((stream, peer)).await;
                }
                // A TCP health check connects and hangs up: routine.
                Err(error) if client_left(&error) => {
                    tracing::debug!(%peer, %error, "admin API: client disconnected")
                }
                Err(error) => tracing::warn!(%peer, %error, "admin API: closing connection"),
            }
            drop(permit);
        });
        // Reap finished handshakes so the set does not grow without bound.
        while handshakes.try_join_next().is_some() {}
    }
}
