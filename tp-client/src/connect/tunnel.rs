//! An open tunnel, whichever transport carries it: callers see one byte stream.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use quinn::{Connection, VarInt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tp_net::quic::QuicStream;
use tracing::debug;

use crate::transport::Via;

/// An open tunnel: raw bytes both ways. Bytes the server sent right behind its
/// answer come out of the first reads, before anything else. Shutting down the
/// write side is a half-close: TLS `close_notify` then a TCP FIN, or the end
/// (FIN) of the QUIC stream.
#[derive(Debug)]
pub struct Tunnel {
    stream: Stream,
    early: BytesMut,
    /// The QUIC connection carrying the stream, for UDP tunnels' datagrams.
    quic: Option<Connection>,
}

#[derive(Debug)]
enum Stream {
    Tls(Box<TlsStream<TcpStream>>),
    Quic(QuicStream),
}

impl Tunnel {
    pub(super) fn tls(stream: Box<TlsStream<TcpStream>>, early: BytesMut) -> Self {
        Tunnel {
            stream: Stream::Tls(stream),
            early,
            quic: None,
        }
    }

    pub(super) fn quic(stream: QuicStream, conn: Connection, early: BytesMut) -> Self {
        Tunnel {
            stream: Stream::Quic(stream),
            early,
            quic: Some(conn),
        }
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
        match &mut self.get_mut().stream {
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Quic(s) => match Pin::new(s).poll_shutdown(cx) {
                // quinn reports finishing an already finished stream as an error.
                Poll::Ready(Err(e)) if is_closed_stream(&e) => Poll::Ready(Ok(())),
                other => other,
            },
        }
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
