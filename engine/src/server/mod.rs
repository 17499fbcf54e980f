//! The Kafka listener: accepts connections under a connection limit, runs
//! the TLS handshake under `SSL` and `SASL_SSL` (`crate::tls`, bounded by
//! `kafka.tls_handshake_timeout_ms`), reads length-prefixed frames
//! (refusing oversized ones before allocating), handles requests
//! concurrently and writes responses in request order.

mod config;
mod connection;
pub mod handlers;
pub(crate) mod open_files;
mod request_budget;
pub(crate) mod sasl;
pub(crate) use request_budget::RequestBudget;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::log::LogStore;
use crate::shutdown::Shutdown;
pub(crate) use config::KafkaConfig;

/// The single node's id in every response.
pub(crate) const NODE_ID: i32 = 0;

/// What request handlers share.
pub(crate) struct BrokerContext {
    pub(crate) store: Arc<LogStore>,
    /// Listener settings.
    pub(crate) config: KafkaConfig,
    /// host:port clients are told to connect to.
    pub(crate) advertised: SocketAddr,
    /// Stable id of this cluster (persisted in the data directory).
    pub(crate) cluster_id: String,
    /// The transaction coordinator, which also hands out producer ids.
    pub(crate) transactions: Arc<crate::transaction::TransactionCoordinator>,
    /// Consumer groups and committed offsets.
    pub(crate) groups: Arc<crate::group::GroupCoordinator>,
    /// Budget of request bytes held in memory across all connections
    /// (`kafka.queued_request_bytes_max`); reading a frame waits for room.
    pub(crate) request_bytes: request_budget::RequestBudget,
    /// Budget of fetched record bytes held in memory until written, across
    /// all connections (`kafka.queued_fetch_bytes_max`).
    pub(crate) fetch_bytes: Arc<Semaphore>,
    /// Fires at shutdown, so long polls end early.
    pub(crate) shutdown: Shutdown,
    /// Who may connect: SASL settings and users.
    pub(crate) sasl: Arc<sasl::Sasl>,
    /// Who may do what (`[acl]`), asked by every handler before it acts.
    pub(crate) authorizer: Arc<crate::acl::Authorizer>,
}

/// Accepts connections until shutdown, then waits for them to finish;
/// with `tls`, each connection is a TLS one.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<crate::tls::Tls>,
    context: Arc<BrokerContext>,
    mut shutdown: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(context.config.connections_max));
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    // A permit is taken before accepting, so at most connections_max
    // clients are served and the rest wait in the kernel's queue.
    while let Some((stream, peer, permit)) =
        accept_with_permit(&listener, &permits, &mut backoff, &mut shutdown).await
    {
        let _ = stream.set_nodelay(true);
        let (context, tls) = (context.clone(), tls.clone());
        connections.spawn(async move {
            let _open = crate::metrics::OpenConnection::new();
            tracing::debug!(%peer, "connection opened");
            match run_connection(stream, peer, tls, context).await {
                Ok(()) => tracing::debug!(%peer, "connection closed"),
                // The client went away (e.g. while its long poll waited):
                // routine, not worth a warning.
                Err(error) if client_left(&error) => {
                    tracing::debug!(%peer, %error, "client disconnected")
                }
                Err(error) => tracing::warn!(%peer, %error, "closing connection"),
            }
            drop(permit);
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Waits for one of `permits`, then accepts a connection; `None` at
/// shutdown. A failed accept (out of descriptors or memory, which repeats
/// at once) is retried after a backoff rather than in a spin.
pub(crate) async fn accept_with_permit(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    backoff: &mut AcceptBackoff,
    shutdown: &mut Shutdown,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            _ = shutdown.changed() => return None,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return None,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.succeeded();
                return Some((stream, peer, permit));
            }
            Err(error) => tokio::select! {
                _ = backoff.failed(&error) => {}
                _ = shutdown.changed() => return None,
            },
        }
    }
}

/// Serves one accepted connection, after the TLS handshake with `tls`.
/// The handshake holds the connection's permit, so it is bounded in time
/// and ends at shutdown.
async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<crate::tls::Tls>,
    context: Arc<BrokerContext>,
) -> anyhow::Result<()> {
    let Some(tls) = tls else {
        return connection::run(stream.into_split(), peer, context).await;
    };
    let mut shutdown = context.shutdown.clone();
    let stream = tokio::select! {
        stream = tls.handshake(stream) => stream?,
        _ = shutdown.changed() => return Ok(()),
    };
    connection::run(tokio::io::split(stream), peer, context).await
}

/// Exponential backoff between failed accepts, [`ACCEPT_BACKOFF_MIN`] up to
/// [`ACCEPT_BACKOFF_MAX`] (as tokio-rs/mini-redis does), logged once per
/// streak of failures.
#[derive(Default)]
pub(crate) struct AcceptBackoff {
    /// Failures in a row.
    failures: u32,
}

/// First wait after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(1);
/// Longest wait between failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl AcceptBackoff {
    async fn failed(&mut self, error: &std::io::Error) {
        if self.failures == 0 {
            tracing::warn!(%error, "accept failed; retrying with backoff up to 1 s \
                (raise the open-file limit, ulimit -n, or lower kafka.connections_max)");
        }
        self.failures = self.failures.saturating_add(1);
        let wait = ACCEPT_BACKOFF_MIN
            .saturating_mul(1 << (self.failures - 1).min(10))
            .min(ACCEPT_BACKOFF_MAX);
        tokio::time::sleep(wait).await;
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

/// Whether `error` is the peer hanging up rather than something wrong.
pub(crate) fn client_left(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::UnexpectedEof
            )
        })
    })
}
