//! An open tunnel, whichever transport carries it: callers see one byte stream.
//!
//! A tunnel ends in one of two ways. In order: its write side is shut down
//! (TLS `close_notify`, or the QUIC stream's FIN) and the server's side reaches
//! EOF. Or as failed, with [`Tunnel::abort`]: a QUIC stream is reset (and the
//! server's side stopped) with [`STREAM_ABORTED`], a TLS connection is dropped
//! without `close_notify`, so the server never mistakes a broken tunnel for a
//! complete one. quinn finishes a dropped stream (a clean FIN), so dropping a
//! tunnel whose write side was not shut down aborts it too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use quinn::{Connection, VarInt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tp_net::quic::QuicStream;
use tp_net::read_ahead::ReadAhead;
use tp_net::relay::TLS_WRITE_OFFSET;
use tracing::debug;

use crate::transport::Via;

/// The QUIC application error code with which `tp` aborts a tunnel's stream
/// (RESET_STREAM of its write side, STOP_SENDING of the server's): the tunnel
/// failed, and what was sent on it may be incomplete. The server aborts with
/// the same code.
pub const STREAM_ABORTED: VarInt = VarInt::from_u32(1);

/// How often [`Aborted::acknowledged`] looks whether the reset was acknowledged
/// (quinn signals the end of a finished stream, not of a reset one).
const ACK_POLL: Duration = Duration::from_millis(10);

/// An open tunnel: raw bytes both ways. Bytes the server sent right behind its
/// answer come out of the first reads, before anything else. Shutting down the
/// write side is a half-close: TLS `close_notify` then a TCP FIN, or the end
/// (FIN) of the QUIC stream. Dropping the tunnel before that aborts it (see
/// [`Tunnel::abort`]).
#[derive(Debug)]
pub struct Tunnel {
    stream: Stream,
    early: BytesMut,
    /// The QUIC connection carrying the stream, for UDP tunnels' datagrams.
    quic: Option<Connection>,
    /// Whether the write side was shut down in order.
    finished: bool,
}

#[derive(Debug)]
enum Stream {
    Tls(Box<TlsStream<ReadAhead<TcpStream>>>),
    Quic(QuicStream),
}

impl Tunnel {
    pub(super) fn tls(stream: Box<TlsStream<ReadAhead<TcpStream>>>, early: BytesMut) -> Self {
        Tunnel {
            stream: Stream::Tls(stream),
            early,
            quic: None,
            finished: false,
        }
    }

    /// A tunnel on a QUIC stream of `conn`, `early` the bytes already read
    /// from it (a stream the server opened for `tp expose` is one too).
    pub(crate) fn quic(stream: QuicStream, conn: Connection, early: BytesMut) -> Self {
        Tunnel {
            stream: Stream::Quic(stream),
            early,
            quic: Some(conn),
            finished: false,
        }
    }

    /// Sets the bytes that arrived behind the answer (the hello is exchanged on
    /// the tunnel itself, so that a failed exchange aborts it).
    pub(crate) fn set_early(&mut self, early: BytesMut) {
        // The answer's read buffer is not kept for the tunnel's lifetime.
        self.early = if early.is_empty() {
            BytesMut::new()
        } else {
            early
        };
    }

    /// Ends the tunnel as failed, never as a clean close. Over QUIC: resets our
    /// write side and stops the server's, both with [`STREAM_ABORTED`], so the
    /// server sees the tunnel abort, not end (what it got may be incomplete).
    /// Over TLS/TCP: drops the connection without `close_notify`, which the
    /// server reports as broken. Use it whenever a tunnel ends abnormally: the
    /// local side failed, the relay failed, the answer never came.
    ///
    /// The reset is sent whatever becomes of the returned [`Aborted`]; before
    /// closing the QUIC connection, wait for [`Aborted::acknowledged`]
    /// (bounded), or the close may overtake the reset.
    pub fn abort(mut self) -> Aborted {
        self.reset();
        Aborted(self)
    }

    /// Over QUIC, resets and stops the stream (a no-op if it was already).
    fn reset(&mut self) {
        if let Stream::Quic(stream) = &mut self.stream {
            let _ = stream.writer_mut().reset(STREAM_ABORTED);
            let _ = stream.reader_mut().stop(STREAM_ABORTED);
        }
    }

    /// Over QUIC: the connection carrying this tunnel.
    pub(crate) fn quic_connection(&self) -> Option<&Connection> {
        self.quic.as_ref()
    }

    /// Bytes received behind the answer and not yet read.
    pub fn early_len(&self) -> usize {
        self.early.len()
    }

    /// The transport this tunnel runs over.
    pub fn via(&self) -> Via {
        match self.stream {
            Stream::Tls(_) => Via::Tcp,
            Stream::Quic(_) => Via::Quic,
        }
    }

    /// Where a relay places the bytes it writes to this tunnel
    /// ([`tp_net::relay::RelayOptions::write_offset_a`]): rustls' over TLS/TCP.
    pub fn write_offset(&self) -> usize {
        match self.stream {
            Stream::Tls(_) => TLS_WRITE_OFFSET,
            Stream::Quic(_) => 0,
        }
    }

    /// Over QUIC: the connection carrying this tunnel and the tunnel's flow id
    /// (the id of its stream), which tag a UDP tunnel's QUIC datagrams.
    pub(crate) fn quic_flow(&self) -> Option<(Connection, u64)> {
        match (&self.stream, &self.quic) {
            (Stream::Quic(stream), Some(conn)) => Some((
                conn.clone(),
                VarInt::from(stream.writer().id()).into_inner(),
            )),
            _ => None,
        }
    }

    /// Completes once everything written to the tunnel, up to the end of its
    /// write side, has been acknowledged by the server, or the tunnel failed.
    /// Over QUIC this is what to wait for (bounded) before the process exits, so
    /// no byte is lost; over TLS/TCP it completes at once (the kernel delivers a
    /// closed socket's data). Works after the tunnel itself was dropped.
    pub fn delivered(&self) -> impl Future<Output = ()> + Send + 'static {
        let stopped = match &self.stream {
            Stream::Tls(_) => None,
            Stream::Quic(stream) => Some(stream.writer().stopped()),
        };
        async move {
            let Some(stopped) = stopped else {
                return;
            };
            match stopped.await {
                Ok(None) => debug!("the server acknowledged all we sent"),
                Ok(Some(code)) => debug!("the server stopped reading the tunnel (code {code})"),
                Err(e) => debug!("the tunnel ended before all we sent was acknowledged: {e}"),
            }
        }
    }
}

impl Drop for Tunnel {
    /// quinn would finish the dropped stream, a clean end the server would take
    /// for a complete tunnel: unless our side was shut down, abort instead.
    fn drop(&mut self) {
        if !self.finished {
            self.reset();
        }
    }
}

/// A tunnel ended with [`Tunnel::abort`]. Dropping it drops the tunnel (over
/// TLS/TCP, that closes the connection, without `close_notify`).
#[derive(Debug)]
pub struct Aborted(Tunnel);

impl Aborted {
    /// Completes once the server has acknowledged the reset (or stopped the
    /// stream itself, or the connection is gone); over TLS/TCP at once. Never
    /// on a silent server: bound it.
    pub async fn acknowledged(self) {
        let Stream::Quic(stream) = &self.0.stream else {
            return;
        };
        // Each new `stopped` looks at the stream at once; a reset stream that
        // was acknowledged is gone, which it reports as `Ok(None)`.
        while tokio::time::timeout(ACK_POLL, stream.writer().stopped())
            .await
            .is_err()
        {}
        debug!("the server has the tunnel's reset");
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..n]);
            this.early.advance(n);
            if this.early.is_empty() {
                // Read back: free the answer's read buffer.
                this.early = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        match &mut this.stream {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Quic(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Quic(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Quic(s) => Pin::new(s).poll_flush(cx),
        }
    }

    /// TLS: sends `close_notify`, then shuts down the TCP write side. QUIC:
    /// finishes the send stream (a second call is a harmless no-op).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let shut = match &mut this.stream {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Quic(s) => match Pin::new(s).poll_shutdown(cx) {
                // quinn reports finishing an already finished stream as an error.
                Poll::Ready(Err(e)) if is_closed_stream(&e) => Poll::Ready(Ok(())),
                other => other,
            },
        };
        if let Poll::Ready(Ok(())) = shut {
            this.finished = true;
        }
        shut
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Quic(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Quic(s) => s.is_write_vectored(),
        }
    }
}

fn is_closed_stream(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<quinn::ClosedStream>().is_some())
}
