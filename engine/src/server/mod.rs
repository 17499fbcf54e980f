//! The Kafka listener: accepts connections under a connection limit and
//! reads length-prefixed request frames, refusing oversized ones before
//! allocating. Request decoding and the API handlers arrive with the Kafka
//! protocol work; until then a connection's first frame is logged and the
//! connection closed.

use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::broker::Shutdown;
use crate::config::KafkaConfig;
use crate::log::LogStore;

/// Accepts connections until shutdown, then waits for them to finish.
pub async fn serve(
    listener: TcpListener,
    config: KafkaConfig,
    store: Arc<LogStore>,
    mut shutdown: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(config.connections_max));
    let mut connections = JoinSet::new();
    loop {
        // A permit is taken before accepting, so at most connections_max
        // clients are served and the rest wait in the kernel's queue.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let frame_bytes_max = config.frame_bytes_max;
        let store = store.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            if let Err(error) = connection(stream, frame_bytes_max, store, shutdown).await {
                tracing::debug!(%peer, %error, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn connection(
    mut stream: TcpStream,
    frame_bytes_max: u32,
    _store: Arc<LogStore>,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut size = [0u8; 4];
    tokio::select! {
        read = stream.read_exact(&mut size) => { read?; }
        _ = shutdown.changed() => return Ok(()),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 || size as u32 > frame_bytes_max {
        anyhow::bail!("request frame of {size} bytes is outside 0..={frame_bytes_max}; closing");
    }
    anyhow::bail!("Kafka request handling is not available in this build; closing")
}
