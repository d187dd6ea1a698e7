//! One tunnel request on an authenticated byte stream, whichever transport carried
//! it (a TLS/TCP connection, or one QUIC stream): the hello under its total
//! deadline, the drain and per-identity checks, then the tunnel handler.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use policy::Identity;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tp_net::message::{ReadMessageError, read_message};
use tp_net::read_ahead::ReadAhead;
use tp_proto::{Answer, ErrorCode, Hello};
use tracing::{debug, info};

use crate::audit;
use crate::reverse;
use crate::server::{RunContext, Shared};
use crate::tunnel;
use crate::tunnel::udp::DatagramPath;

/// The application error code of a QUIC stream the server aborts
/// (RESET_STREAM and STOP_SENDING): the tunnel failed, its data is incomplete.
pub(crate) const STREAM_ABORTED: quinn::VarInt = quinn::VarInt::from_u32(1);

/// A duplex byte stream a tunnel runs on.
pub(crate) trait TunnelStream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Ends the stream so the client sees a failure, never a clean end: the
    /// target failed or the tunnel timed out, and what it received is incomplete.
    fn abort(&mut self);

    /// Where the relay places the bytes it writes to this stream
    /// ([`tp_net::relay::RelayOptions::write_offset_a`]): rustls' place for TLS,
    /// 0 for the rest. No default, so that a wrapper cannot forget to ask the
    /// stream it wraps.
    fn write_offset(&self) -> usize;
}

impl TunnelStream for TlsStream<ReadAhead<TcpStream>> {
    /// A TCP reset when dropped (zero linger): even after a `close_notify`
    /// already went out, the client sees a failure, not a clean end.
    fn abort(&mut self) {
        self.get_mut().0.get_mut().abort();
    }

    fn write_offset(&self) -> usize {
        tp_net::relay::TLS_WRITE_OFFSET
    }
}

impl TunnelStream for TcpStream {
    /// A reset (zero linger), so the peer sees a failure rather than an end.
    fn abort(&mut self) {
        let _ = socket2::SockRef::from(&*self).set_linger(Some(Duration::ZERO));
    }

    fn write_offset(&self) -> usize {
        0
    }
}

impl<T: TunnelStream + ?Sized> TunnelStream for Box<T> {
    fn abort(&mut self) {
        (**self).abort();
    }

    fn write_offset(&self) -> usize {
        (**self).write_offset()
    }
}

impl TunnelStream for tp_net::quic::QuicStream {
    /// quinn finishes a dropped send stream (a clean FIN), so reset it instead.
    fn abort(&mut self) {
        let _ = self.writer_mut().reset(STREAM_ABORTED);
        let _ = self.reader_mut().stop(STREAM_ABORTED);
    }

    fn write_offset(&self) -> usize {
        0
    }
}

/// The identity in a verified client chain, or `None` (logged) if there is none.
/// rustls and quinn complete a handshake only with a verified chain (client auth
/// is mandatory), so the first certificate is the verified leaf.
pub(crate) fn identity(chain: Option<&[CertificateDer<'_>]>) -> Option<Identity> {
    let Some(leaf) = chain.and_then(|c| c.first()) else {
        info!("connection refused: no client certificate");
        return None;
    };
    match Identity::from_cert_der(leaf) {
        Ok(who) => Some(who),
        Err(e) => {
            info!(error = %e, "connection refused: no usable identity in the client certificate");
            None
        }
    }
}

/// Where a tunnel request came from, and what its handler may need of it.
pub(crate) struct Origin {
    /// The client's address (over QUIC: when the stream opened).
    pub(crate) peer: SocketAddr,
    /// The stream's QUIC connection and its datagram path; `None` over TLS/TCP.
    pub(crate) quic: Option<DatagramPath>,
    /// Over QUIC, the connection's stream tasks: a stream the server opens on it
    /// is tracked here too, so the drain waits for it.
    pub(crate) streams: Option<tokio_util::task::TaskTracker>,
    /// The client's verified chain, leaf first, to verify again later.
    pub(crate) chain: std::sync::Arc<[CertificateDer<'static>]>,
    /// The server run: drain and shutdown tokens, the task tracker.
    pub(crate) ctx: RunContext,
}

impl Origin {
    /// A TLS/TCP connection's: one tunnel, no QUIC.
    pub(crate) fn tls(
        peer: SocketAddr,
        chain: std::sync::Arc<[CertificateDer<'static>]>,
        ctx: RunContext,
    ) -> Origin {
        Origin {
            peer,
            quic: None,
            streams: None,
            chain,
            ctx,
        }
    }
}

/// Serves one tunnel request from `who` on `stream` to its end. A hello that arrives
/// once the drain has started gets `busy`.
pub(crate) async fn serve<S: TunnelStream + 'static>(
    shared: &Shared,
    mut stream: S,
    who: &Identity,
    origin: Origin,
) {
    let mut buf = BytesMut::with_capacity(1024);
    let read = read_message(&mut stream, &mut buf, tp_proto::decode_hello);
    let hello = match tokio::time::timeout(shared.limits.hello_timeout, read).await {
        Err(_) => {
            info!(timeout = ?shared.limits.hello_timeout, "hello timed out");
            let answer = Answer::err(ErrorCode::Timeout, "no complete hello line in time");
            finish(&mut stream, &answer).await;
            return;
        }
        Ok(Err(ReadMessageError::Decode(e))) => {
            info!(error = %e, code = %e.code(), "bad hello");
            finish(&mut stream, &Answer::err(e.code(), e.to_string())).await;
            return;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "stream ended before a hello");
            return;
        }
        Ok(Ok(hello)) => hello,
    };
    if origin.ctx.draining.is_cancelled() {
        info!(op = hello.op(), "hello refused: server is shutting down");
        let answer = Answer::err(ErrorCode::Busy, "server is shutting down; retry shortly");
        finish(&mut stream, &answer).await;
        return;
    }
    // An `accept` is the data side of a tunnel already counted (a caller's, or
    // a public connection's), and a stranger's connections must not use up the
    // exposing identity's tunnels.
    let hello = match hello {
        Hello::Accept(a) => {
            return reverse::accept::serve(shared, stream, who, a, buf, &origin).await;
        }
        other => other,
    };
    let Some(slot) = shared.tunnels.try_take(who.to_string()) else {
        let why = format!(
            "{who} already has {} tunnels open, the most one identity may hold",
            shared.tunnels.max()
        );
        audit::refused_op(who, hello.op(), &why);
        finish(&mut stream, &Answer::err(ErrorCode::Busy, why)).await;
        return;
    };

    match hello {
        // The tunnel gives its slot back before it logs its close line.
        Hello::Connect(c) => {
            tunnel::connect::serve(shared, stream, who, c, buf, origin, slot).await;
        }
        // Boxed: the larger control session does not size every tunnel's task.
        Hello::Listen(l) => {
            let _slot = slot;
            Box::pin(reverse::control::serve(shared, stream, who, l, buf, origin)).await;
        }
        other => {
            let why = format!("{} is not supported by this server yet", other.op());
            audit::refused_op(who, other.op(), &why);
            finish(&mut stream, &Answer::err(ErrorCode::Unsupported, why)).await;
        }
    }
}

/// Writes `bytes` and flushes them out of any TLS buffer.
pub(crate) async fn write_flush<S: TunnelStream>(
    stream: &mut S,
    bytes: &[u8],
) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Answers `ok`: the tunnel is open. `false` if the client went away first.
pub(crate) async fn answer_ok<S: TunnelStream>(stream: &mut S) -> bool {
    let mut line = Vec::with_capacity(32);
    tp_proto::encode_answer(&Answer::Ok, &mut line);
    match write_flush(stream, &line).await {
        Ok(()) => true,
        Err(e) => {
            debug!(error = %e, "client went away before the answer");
            false
        }
    }
}

/// After a final answer, how long and how much the server still reads (and
/// discards) of what the client sent behind its hello: closing a TCP socket with
/// unread data sends a reset, which can destroy the answer in flight.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Sends a final answer and closes the stream's write side cleanly (TLS
/// `close_notify`, QUIC FIN), then lets the client's leftovers drain briefly.
pub(crate) async fn finish<S: TunnelStream>(stream: &mut S, answer: &Answer) {
    let mut line = Vec::with_capacity(128);
    tp_proto::encode_answer(answer, &mut line);
    if let Err(e) = stream.write_all(&line).await {
        debug!(error = %e, "could not send the answer");
        return;
    }
    let _ = stream.shutdown().await;
    let drain = async {
        // On the heap: a buffer in this future would size every tunnel's task.
        let mut sink = vec![0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
