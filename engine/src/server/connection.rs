//! One client connection: a reader that decodes frames and spawns a task per
//! request, and a writer that sends the responses strictly in request order.
//!
//! Requests with side effects that clients expect in order (produce, offset
//! commits, admin changes) pass a per-connection baton: each waits for the
//! previous one of its kind to finish before it starts. Reads and long polls
//! (fetch, metadata, group joins) run freely. At most
//! `in_flight_requests_max` requests are pending; then reading pauses.
//!
//! A slow or silent peer must not hold resources others need: a frame's
//! reservation of request bytes (`request_budget.rs`) never makes smaller
//! ones wait behind it, its body must arrive within
//! `request_body_timeout_ms`, the buffer grows only as bytes arrive, and a
//! connection with nothing in flight that stays silent for
//! `connections_max_idle_ms` is closed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::handlers;
use super::request_budget::Reservation;
use super::sasl;
use super::BrokerContext;
use crate::acl::Caller;
use crate::protocol::{self, FrameError};

/// Bytes asked of the socket at a time when a frame is smaller.
const READ_CHUNK_BYTES: usize = 64 * 1024;

type Pending = JoinHandle<Result<Option<Bytes>, FrameError>>;

/// Serves one connection from `peer`, read from `reader` and answered on
/// `writer` (the two halves of a TCP or TLS stream), until the client
/// leaves, shutdown, or a protocol error (which is returned, for the log
/// line).
pub(crate) async fn run(
    (reader, writer): (
        impl AsyncRead + Unpin + Send,
        impl AsyncWrite + Unpin + Send + 'static,
    ),
    peer: std::net::SocketAddr,
    context: Arc<BrokerContext>,
) -> anyhow::Result<()> {
    let client_host = format!("/{}", peer.ip());
    let peer = Some(peer.ip());
    let (pending_tx, pending_rx) =
        mpsc::channel::<Pending>(context.config.in_flight_requests_max.max(1));
    let (failed_tx, failed_rx) = oneshot::channel::<anyhow::Error>();
    // Requests read and not yet answered (for the idle timeout).
    let in_flight = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(write_responses(
        writer,
        pending_rx,
        failed_tx,
        in_flight.clone(),
    ));
    let connection = Connection {
        context: &context,
        client_host: &client_host,
        peer,
        in_flight: &in_flight,
    };
    let read_result = read_requests(reader, connection, pending_tx, failed_rx).await;
    let write_result = writer.await?;
    read_result.and(write_result)
}

/// What the reader of one connection works with.
struct Connection<'a> {
    context: &'a Arc<BrokerContext>,
    client_host: &'a str,
    /// The client's address, for ACLs naming hosts.
    peer: Option<std::net::IpAddr>,
    in_flight: &'a AtomicUsize,
}

async fn read_requests(
    mut reader: impl AsyncRead + Unpin,
    connection: Connection<'_>,
    pending: mpsc::Sender<Pending>,
    mut failed: oneshot::Receiver<anyhow::Error>,
) -> anyhow::Result<()> {
    let Connection {
        context,
        client_host,
        peer,
        in_flight,
    } = connection;
    // Who the requests come from: anonymous until SASL succeeds.
    let mut caller = Arc::new(Caller::anonymous(peer));
    let mut shutdown = context.shutdown.clone();
    let mut baton: Option<oneshot::Receiver<()>> = None;
    let mut session = sasl::Session::default();
    let mut buffer = BytesMut::new();
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, &mut buffer, context, in_flight) => frame?,
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
        // Authentication first: its answers go out in order with the rest.
        let (answer, close) = match session.handle(&context.sasl, &request)? {
            sasl::Verdict::Pass => (None, false),
            sasl::Verdict::Answer(bytes) => (Some(bytes), false),
            sasl::Verdict::AnswerAndClose(bytes) => (Some(bytes), true),
            sasl::Verdict::Close(reason) => anyhow::bail!("closing the connection: {reason}"),
        };
        if let Some(user) = session.principal() {
            if caller.principal.as_ref() == crate::acl::ANONYMOUS {
                caller = Arc::new(Caller::user(user, peer));
            }
        }
        if let Some(bytes) = answer {
            drop(permit);
            in_flight.fetch_add(1, Ordering::AcqRel);
            let task = tokio::spawn(async move { Ok(Some(bytes)) });
            if pending.send(task).await.is_err() || close {
                return Ok(());
            }
            continue;
        }
        let (previous, done) = if handlers::is_ordered(request.api_key) {
            let (done, next) = oneshot::channel();
            (baton.replace(next), Some(done))
        } else {
            (None, None)
        };
        let context = context.clone();
        let caller = caller.clone();
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                // An error means the previous request's task ended early; its
                // own failure closes the connection.
                let _ = previous.await;
            }
            let mut done = done;
            let response = handlers::handle(&context, &caller, request, &mut done).await;
            if let Some(done) = done {
                let _ = done.send(());
            }
            drop(permit);
            response
        });
        in_flight.fetch_add(1, Ordering::AcqRel);
        if pending.send(task).await.is_err() {
            return Ok(());
        }
    }
}

/// Reads one frame; `None` at a clean end of stream or once the connection
/// has been idle for `kafka.connections_max_idle_ms`. Frames are read into
/// `buffer`, which grows as bytes arrive (an announced length allocates
/// nothing), and is never zero-filled first.
async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
    context: &BrokerContext,
    in_flight: &AtomicUsize,
) -> anyhow::Result<Option<(Bytes, Reservation)>> {
    let frame_bytes_max = context.config.frame_bytes_max;
    if !read_length(reader, buffer, context, in_flight).await? {
        return Ok(None);
    }
    let size = i32::from_be_bytes(buffer[..4].try_into().expect("4 bytes"));
    if size < 0 || size as u32 > frame_bytes_max {
        anyhow::bail!("request frame of {size} bytes is outside 0..={frame_bytes_max} (kafka.frame_bytes_max)");
    }
    let _ = buffer.split_to(4);
    // The reservation travels with the request and is returned when it has
    // been answered. Waiting for it does not count against the peer.
    let reservation = context.request_bytes.reserve(size as u32).await;
    let timeout_ms = context.config.request_body_timeout_ms;
    let body = fill(reader, buffer, size as usize);
    match tokio::time::timeout(Duration::from_millis(timeout_ms), body).await {
        Ok(Ok(true)) => Ok(Some((buffer.split_to(size as usize).freeze(), reservation))),
        Ok(Ok(false)) => {
            anyhow::bail!("connection closed in the middle of a {size}-byte request frame")
        }
        Ok(Err(error)) => Err(error),
        Err(_) => anyhow::bail!(
            "the body of a {size}-byte request frame did not arrive within {timeout_ms} ms \
             (kafka.request_body_timeout_ms)"
        ),
    }
}

/// Waits for the next frame's 4-byte length; `false` at a clean end of
/// stream, or when nothing arrived for `kafka.connections_max_idle_ms`
/// while no request of this connection was being handled (a long poll or
/// a group join in flight is not idleness).
async fn read_length(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
    context: &BrokerContext,
    in_flight: &AtomicUsize,
) -> anyhow::Result<bool> {
    let idle = Duration::from_millis(context.config.connections_max_idle_ms);
    loop {
        // `fill` is cancel-safe: bytes read before the timeout stay in `buffer`.
        match tokio::time::timeout(idle, fill(reader, buffer, 4)).await {
            Ok(filled) => return filled,
            Err(_) if in_flight.load(Ordering::Acquire) == 0 => {
                tracing::debug!(
                    idle_ms = idle.as_millis() as u64,
                    "closing an idle connection"
                );
                return Ok(false);
            }
            Err(_) => continue,
        }
    }
}

/// Reads until `buffer` holds at least `wanted` bytes; `false` if the peer
/// closed first (cleanly, when nothing of the next frame had arrived).
async fn fill(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
    wanted: usize,
) -> anyhow::Result<bool> {
    while buffer.len() < wanted {
        // Room for a chunk, whatever `wanted` is: memory follows the bytes
        // that arrive, not the length a peer announced.
        buffer.reserve(READ_CHUNK_BYTES);
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
    mut writer: impl AsyncWrite + Unpin,
    mut pending: mpsc::Receiver<Pending>,
    failed: oneshot::Sender<anyhow::Error>,
    in_flight: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let result = async {
        while let Some(task) = pending.recv().await {
            if let Some(response) = task.await?? {
                writer.write_all(&response).await?;
            }
            in_flight.fetch_sub(1, Ordering::AcqRel);
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
