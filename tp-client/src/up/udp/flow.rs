//! One UDP flow: the tunnel of one local source address. It opens a UDP tunnel
//! (datagrams from the source wait in its queue meanwhile), relays datagrams
//! both ways until the flow is idle, the server closes it, or `tp up` stops,
//! then finishes the stream, logs its counts, and waits (bounded) until the
//! server has acknowledged everything, FIN included. A flow whose tunnel fails
//! aborts it instead ([`crate::Tunnel::abort`]).
//!
//! Upstream, a datagram goes as a QUIC datagram when the tunnel runs over QUIC
//! and it fits, else as a frame on the stream; downstream, both are taken.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep_until, timeout};
use tp_proto::udp::{UdpFrameError, decode_frame, encode_frame};
use tp_proto::{Hello, Proto};
use tracing::{debug, info, warn};

use super::datagrams::{QuicPath, Routers};
use super::queue::FlowReceiver;
use super::refusals::Refusals;
use crate::addr::Target;
use crate::connect::{ConnectError, Connector};

/// How long datagrams from a source whose tunnel could not open are dropped
/// before the next one tries again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);
/// How long finishing the stream may take when a flow closes.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Room made in the read buffer before each read of the stream.
const READ_CHUNK: usize = 16 * 1024;

/// What every flow of one `tp up --udp` shares.
#[derive(Debug)]
pub(super) struct Context {
    pub(super) connector: Arc<Connector>,
    pub(super) target: Target,
    /// The local socket: replies go out of it to each flow's source.
    pub(super) socket: Arc<UdpSocket>,
    pub(super) idle: Duration,
    pub(super) refusals: Refusals,
    pub(super) routers: Arc<Routers>,
}

/// Counts of one flow, for its close line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Stats {
    pub(super) up_datagrams: u64,
    pub(super) up_bytes: u64,
    /// Of `up_datagrams`, those sent as QUIC datagrams.
    pub(super) up_quic: u64,
    pub(super) down_datagrams: u64,
    pub(super) down_bytes: u64,
    /// Of `down_datagrams`, those received as QUIC datagrams.
    pub(super) down_quic: u64,
}

/// Why a flow ended.
#[derive(Debug)]
pub(super) enum End {
    /// No datagram either way for this long.
    Idle(Duration),
    /// `tp up` is stopping.
    Stopped,
    /// The server finished its side (its own idle timeout, or it shut down).
    ServerClosed,
    /// The tunnel broke.
    Failed(io::Error),
    /// The server sent a frame that breaks the framing rules.
    BadFrame(UdpFrameError),
}

impl End {
    /// Whether the flow ended in order (its stream is finished), rather than
    /// failed (its tunnel is aborted).
    pub(super) fn is_clean(&self) -> bool {
        matches!(self, End::Idle(_) | End::Stopped | End::ServerClosed)
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Idle(after) => write!(f, "idle for {after:?}"),
            End::Stopped => f.write_str("stopping"),
            End::ServerClosed => f.write_str("the server closed the tunnel"),
            End::Failed(e) => write!(f, "the tunnel failed: {e}"),
            End::BadFrame(e) => write!(f, "the server sent a bad frame: {e}"),
        }
    }
}

/// The `connect` hello of a UDP tunnel to `target`.
pub(super) fn hello(target: &Target) -> Hello {
    target.hello(Proto::Udp)
}

/// Runs the flow of `source` until it ends; datagrams from the source arrive
/// on `queue`, which the dispatcher closes when `tp up` stops.
pub(super) async fn run(ctx: Arc<Context>, source: SocketAddr, mut queue: FlowReceiver) {
    let mut tunnel = match ctx.connector.open(&hello(&ctx.target)).await {
        Ok(tunnel) => tunnel,
        Err(e) => return refused(&ctx, source, &e, &mut queue).await,
    };
    ctx.refusals.forget(source);
    let via = tunnel.via();
    let quic = tunnel
        .quic_flow()
        .map(|(conn, flow)| ctx.routers.register(&conn, flow));
    info!(transport = %via, target = %ctx.target, "UDP flow open");
    let started = Instant::now();
    let mut stats = Stats::default();
    let reply = Reply {
        socket: &ctx.socket,
        to: source,
    };
    let end = relay(&mut tunnel, quic, &mut queue, reply, ctx.idle, &mut stats).await;
    // The next datagram from the source opens a new flow rather than waiting
    // here while this one winds down.
    queue.close();
    info!(
        datagrams.up = stats.up_datagrams,
        bytes.up = stats.up_bytes,
        datagrams.up_quic = stats.up_quic,
        datagrams.down = stats.down_datagrams,
        bytes.down = stats.down_bytes,
        datagrams.down_quic = stats.down_quic,
        dropped = queue.dropped(),
        duration = ?started.elapsed(),
        "UDP flow closed: {end}"
    );
    if end.is_clean() {
        // The stream is finished, but over QUIC what is still in flight (the
        // last frames, the FIN) is lost if the connection closes now, as it does
        // when `tp up` stops: wait until the server has acknowledged it all.
        if timeout(CLOSE_GRACE, tunnel.delivered()).await.is_err() {
            debug!("the server did not acknowledge the end of the flow within {CLOSE_GRACE:?}");
        }
    } else if timeout(CLOSE_GRACE, tunnel.abort().acknowledged())
        .await
        .is_err()
    {
        debug!("the server did not acknowledge the flow's reset within {CLOSE_GRACE:?}");
    }
}

/// The tunnel could not open: say why (once per source and error), then drop
/// the source's datagrams for [`RETRY_AFTER`] so it does not hammer the server.
async fn refused(ctx: &Context, source: SocketAddr, e: &ConnectError, queue: &mut FlowReceiver) {
    let target = &ctx.target;
    if ctx.refusals.is_news(source, &e.to_string()) {
        match e {
            ConnectError::Refused { .. } => warn!("UDP tunnel to {target} refused: {e}"),
            _ => warn!("UDP tunnel to {target} failed: {e}"),
        }
    } else {
        debug!("UDP tunnel to {target} failed again: {e}");
    }
    let retry_at = Instant::now() + RETRY_AFTER;
    loop {
        tokio::select! {
            payload = queue.recv() => match payload {
                Some(_) => queue.count_drop(),
                None => break,
            },
            () = sleep_until(retry_at) => break,
        }
    }
    debug!(dropped = queue.dropped(), "no UDP flow");
}

/// Where replies go: the source, out of the local socket.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reply<'a> {
    pub(super) socket: &'a UdpSocket,
    pub(super) to: SocketAddr,
}

/// Relays between `queue` (from the source) and the tunnel `stream` (plus
/// `quic`, its QUIC datagrams) until the flow ends, then stops routing the
/// flow's QUIC datagrams and, if it ended in order, finishes the stream (FIN,
/// or `close_notify`); a failed flow's tunnel is the caller's to abort.
pub(super) async fn relay<S>(
    stream: &mut S,
    quic: Option<QuicPath>,
    queue: &mut FlowReceiver,
    reply: Reply<'_>,
    idle: Duration,
    stats: &mut Stats,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let end = relay_until_end(stream, quic, queue, reply, idle, stats).await;
    if !end.is_clean() {
        return end;
    }
    match timeout(CLOSE_GRACE, stream.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!("finishing the tunnel failed: {e}"),
        Err(_) => debug!("finishing the tunnel took too long"),
    }
    end
}

async fn relay_until_end<S>(
    stream: &mut S,
    mut quic: Option<QuicPath>,
    queue: &mut FlowReceiver,
    reply: Reply<'_>,
    idle: Duration,
    stats: &mut Stats,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut quic_open = quic.is_some();
    let mut from_server = BytesMut::new();
    let mut frame = BytesMut::new();
    let mut last = Instant::now();
    loop {
        // Complete frames from the last read (or behind the answer).
        loop {
            match decode_frame(&mut from_server) {
                Ok(Some(payload)) => send_down(reply, &payload, stats).await,
                Ok(None) => break,
                Err(e) => return End::BadFrame(e),
            }
        }
        from_server.reserve(READ_CHUNK);
        tokio::select! {
            read = stream.read_buf(&mut from_server) => match read {
                Ok(0) => return End::ServerClosed,
                Ok(_) => last = Instant::now(),
                Err(e) => return End::Failed(e),
            },
            payload = queue.recv() => {
                let Some(payload) = payload else {
                    return End::Stopped;
                };
                last = Instant::now();
                if let Err(e) = send_up(stream, quic.as_ref(), &payload, &mut frame, stats).await {
                    return End::Failed(e);
                }
            }
            payload = next_datagram(&mut quic), if quic_open => match payload {
                Some(payload) => {
                    last = Instant::now();
                    stats.down_quic += 1;
                    send_down(reply, &payload, stats).await;
                }
                // The connection's reader ended: the stream will tell why.
                None => quic_open = false,
            },
            () = sleep_until(last + idle) => return End::Idle(idle),
        }
    }
}

async fn next_datagram(quic: &mut Option<QuicPath>) -> Option<Bytes> {
    match quic {
        Some(path) => path.rx.recv().await,
        None => None,
    }
}

/// Sends one datagram from the source to the server.
async fn send_up<S: AsyncWrite + Unpin>(
    stream: &mut S,
    quic: Option<&QuicPath>,
    payload: &[u8],
    frame: &mut BytesMut,
    stats: &mut Stats,
) -> io::Result<()> {
    stats.up_datagrams += 1;
    stats.up_bytes += payload.len() as u64;
    if quic.is_some_and(|path| path.send(payload)) {
        stats.up_quic += 1;
        return Ok(());
    }
    frame.clear();
    if let Err(e) = encode_frame(payload, frame) {
        // Only an IPv6 datagram can be larger than the tunnel carries.
        debug!("dropped a datagram from the source: {e}");
        return Ok(());
    }
    stream.write_all(frame).await?;
    stream.flush().await
}

/// Sends one datagram from the server to the source. A failure loses only
/// that datagram, as UDP would.
async fn send_down(reply: Reply<'_>, payload: &[u8], stats: &mut Stats) {
    stats.down_datagrams += 1;
    stats.down_bytes += payload.len() as u64;
    if let Err(e) = reply.socket.send_to(payload, reply.to).await {
        debug!("cannot send a datagram to {}: {e}", reply.to);
    }
}

#[cfg(test)]
mod tests;
