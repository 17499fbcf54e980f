//! One client connection: a reader that decodes frames and spawns a task per
//! request, and a writer that sends the responses strictly in request order.
//!
//! Requests with side effects that clients expect in order (produce, offset
//! commits, admin changes) pass a per-connection baton: each waits for the
//! previous one of its kind to finish before it starts. Reads and long polls
//! (fetch, metadata, group joins) run freely. At most
//! `in_flight_requests_max` requests are pending; then reading pauses.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use super::handlers;
use super::BrokerContext;
use crate::protocol::{self, FrameError};

/// Bytes asked of the socket at a time when a frame is smaller.
const READ_CHUNK_BYTES: usize = 64 * 1024;

type Pending = JoinHandle<Result<Option<Bytes>, FrameError>>;

/// Serves one connection until the client leaves, shutdown, or a protocol
/// error (which is returned, for the log line).
pub(crate) async fn run(stream: TcpStream, context: Arc<BrokerContext>) -> anyhow::Result<()> {
    let client_host = stream
        .peer_addr()
        .map(|peer| format!("/{}", peer.ip()))
        .unwrap_or_default();
    let (reader, writer) = stream.into_split();
    let (pending_tx, pending_rx) =
        mpsc::channel::<Pending>(context.config.in_flight_requests_max.max(1));
    let (failed_tx, failed_rx) = oneshot::channel::<anyhow::Error>();
    let writer = tokio::spawn(write_responses(writer, pending_rx, failed_tx));
    let read_result = read_requests(reader, &context, &client_host, pending_tx, failed_rx).await;
    let write_result = writer.await?;
    read_result.and(write_result)
}

async fn read_requests(
    mut reader: OwnedReadHalf,
    context: &Arc<BrokerContext>,
    client_host: &str,
    pending: mpsc::Sender<Pending>,
    mut failed: oneshot::Receiver<anyhow::Error>,
) -> anyhow::Result<()> {
    let mut shutdown = context.shutdown.clone();
    let mut baton: Option<oneshot::Receiver<()>> = None;
    let mut buffer = BytesMut::new();
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, &mut buffer, context) => frame?,
            _ = shutdown.changed() => return Ok(()),
            // The writer hit a bad request or a dead socket; stop reading.
            _ = &mut failed => return Ok(()),
        };
        let Some((frame, permit)) = frame else {
            return Ok(());
        };
        let mut request = protocol::decode_frame(frame)?;
        request.client_host = client_host.to_string();
        tracing::debug!(api = ?request.api_key, version = request.api_version,
            correlation_id = request.correlation_id, client_id = ?request.client_id, "request");
        let (previous, done) = if handlers::is_ordered(request.api_key) {
            let (done, next) = oneshot::channel();
            (baton.replace(next), Some(done))
        } else {
            (None, None)
        };
        let context = context.clone();
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                // An error means the previous request's task ended early; its
                // own failure closes the connection.
                let _ = previous.await;
            }
            let mut done = done;
            let response = handlers::handle(&context, request, &mut done).await;
            if let Some(done) = done {
                let _ = done.send(());
            }
            drop(permit);
            response
        });
        if pending.send(task).await.is_err() {
            return Ok(());
        }
    }
}

/// Reads one frame; `None` at a clean end of stream. Frames are read into
/// `buffer`, whose allocation is reused once earlier frames are dropped, and
/// never zero-filled first.
///
/// Before the body is read, the frame's bytes are reserved from the
/// broker-wide budget of request bytes in memory (`kafka.queued_request_bytes_max`);
/// the permit travels with the request and is returned when it is answered.
async fn read_frame(
    reader: &mut OwnedReadHalf,
    buffer: &mut BytesMut,
    context: &BrokerContext,
) -> anyhow::Result<Option<(Bytes, OwnedSemaphorePermit)>> {
    let frame_bytes_max = context.config.frame_bytes_max;
    if !fill(reader, buffer, 4).await? {
        return Ok(None);
    }
    let size = i32::from_be_bytes(buffer[..4].try_into().expect("4 bytes"));
    if size < 0 || size as u32 > frame_bytes_max {
        anyhow::bail!("request frame of {size} bytes is outside 0..={frame_bytes_max} (kafka.frame_bytes_max)");
    }
    let permit = context
        .request_bytes
        .clone()
        .acquire_many_owned(size.max(1) as u32)
        .await
        .expect("the request byte budget is never closed");
    let _ = buffer.split_to(4);
    if !fill(reader, buffer, size as usize).await? {
        anyhow::bail!("connection closed in the middle of a {size}-byte request frame");
    }
    Ok(Some((buffer.split_to(size as usize).freeze(), permit)))
}

/// Reads until `buffer` holds at least `wanted` bytes; `false` if the peer
/// closed first (cleanly, when nothing of the next frame had arrived).
async fn fill(
    reader: &mut OwnedReadHalf,
    buffer: &mut BytesMut,
    wanted: usize,
) -> anyhow::Result<bool> {
    if buffer.len() < wanted {
        buffer.reserve(wanted.max(READ_CHUNK_BYTES) - buffer.len());
    }
    while buffer.len() < wanted {
        if reader.read_buf(buffer).await? == 0 {
            if buffer.is_empty() {
                return Ok(false);
            }
            anyhow::bail!(
                "connection closed after {} bytes of a {wanted}-byte read",
                buffer.len()
            );
        }
    }
    Ok(true)
}

async fn write_responses(
    mut writer: OwnedWriteHalf,
    mut pending: mpsc::Receiver<Pending>,
    failed: oneshot::Sender<anyhow::Error>,
) -> anyhow::Result<()> {
    let result = async {
        while let Some(task) = pending.recv().await {
            if let Some(response) = task.await?? {
                writer.write_all(&response).await?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = &result {
        let _ = failed.send(anyhow::anyhow!("{error}"));
    }
    let _ = writer.shutdown().await;
    result
}
