//! A socket read that takes all the socket has at hand, for a reader that asks
//! for less.
//!
//! rustls reads one TLS record at a time (at most 16 KiB and a few bytes), so
//! under a busy TLS stream every record is a `recv` syscall of its own, and every
//! `recv` that opens the TCP window sends an acknowledgement that wakes the
//! sender. [`ReadAhead`] reads up to 64 KiB in one syscall and hands it out in
//! the pieces asked for: a quarter of the syscalls for the price of a copy in
//! user space (docs/benchmarks.md has the measurement).
//!
//! It holds a buffer (from the per-thread pool the relay uses) only while bytes
//! it read are still waiting for its reader, and gives it back the moment the
//! last one is taken, or when a read finds nothing: an idle connection holds
//! none. While the reader stops taking (a tunnel whose target is slower than
//! its client), at most one buffer, 64 KiB, waits here.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::pool;

/// `inner` with read-ahead on its reads; writes, flushes and shutdowns go
/// straight to `inner`.
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    /// Bytes read and not yet taken: `buf[pos..cap]`. `None` when there are none.
    buf: Option<Box<[u8]>>,
    pos: usize,
    cap: usize,
}

impl<S> ReadAhead<S> {
    /// Wraps `inner`, with nothing read ahead yet.
    pub fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            buf: None,
            pos: 0,
            cap: 0,
        }
    }

    /// The wrapped stream, for its address and socket options; reading from it
    /// directly would skip what was read ahead.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, for its socket options (see [`Self::get_ref`]).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// How many bytes were read ahead and not yet taken.
    pub fn buffered(&self) -> usize {
        self.cap - self.pos
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // `buf` is `Some` exactly while `pos < cap`.
        let buf = match this.buf.take() {
            Some(buf) => buf,
            // As large as a read ahead: no copy.
            None if out.remaining() >= pool::BUF_SIZE => {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            None => {
                let mut buf = pool::take();
                let mut read = ReadBuf::new(&mut buf[..pool::BUF_SIZE]);
                match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                    Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                        (this.pos, this.cap) = (0, read.filled().len());
                        buf
                    }
                    // EOF, an error, or nothing yet: the buffer goes straight back.
                    other => {
                        pool::give(buf);
                        return other;
                    }
                }
            }
        };
        let n = (this.cap - this.pos).min(out.remaining());
        out.put_slice(&buf[this.pos..this.pos + n]);
        this.pos += n;
        if this.pos == this.cap {
            (this.pos, this.cap) = (0, 0);
            pool::give(buf);
        } else {
            this.buf = Some(buf);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
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

#[cfg(test)]
mod tests;
