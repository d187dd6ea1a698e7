//! A stream that first yields bytes already read from it: what stealth mode
//! read to tell a tp hello from HTTP goes on to whoever gets the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::session::TunnelStream;

/// `inner`, with `prefix` read back first. Writes go straight to `inner`.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    /// How much of `prefix` was read back.
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let rest = &this.prefix[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            if this.at == this.prefix.len() {
                // Read back: free it.
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: TunnelStream> TunnelStream for Prefixed<S> {
    fn abort(&mut self) {
        self.inner.abort();
    }

    fn write_offset(&self) -> usize {
        self.inner.write_offset()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn the_prefix_comes_back_first_then_the_stream_and_writes_pass_through() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = Prefixed::new(b"{\"op\"".to_vec(), near);
        far.write_all(b":1}\n").await.expect("write");
        let mut small = [0u8; 3];
        stream.read_exact(&mut small).await.expect("read");
        assert_eq!(&small, b"{\"o");
        let mut rest = [0u8; 6];
        stream.read_exact(&mut rest).await.expect("read");
        assert_eq!(&rest, b"p\":1}\n");
        stream.write_all(b"ok").await.expect("write back");
        let mut back = [0u8; 2];
        far.read_exact(&mut back).await.expect("read back");
        assert_eq!(&back, b"ok");
    }

    /// Stands for a stream that wants its bytes at 7.
    impl TunnelStream for tokio::io::Join<tokio::io::Empty, tokio::io::Sink> {
        fn abort(&mut self) {}

        fn write_offset(&self) -> usize {
            7
        }
    }

    #[test]
    fn the_relay_places_bytes_where_the_stream_inside_wants_them() {
        let inner = tokio::io::join(tokio::io::empty(), tokio::io::sink());
        assert_eq!(Prefixed::new(b"{".to_vec(), inner).write_offset(), 7);
    }

    #[tokio::test]
    async fn an_empty_prefix_is_just_the_stream() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = Prefixed::new(Vec::new(), near);
        far.write_all(b"GET").await.expect("write");
        drop(far);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, b"GET");
    }
}
