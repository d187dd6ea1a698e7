//! Bidirectional byte relay with half-close.
//!
//! EOF read from one side shuts down the write side of the other (a TLS peer gets
//! `close_notify`, a TCP peer a FIN) while the opposite direction keeps flowing, so
//! no byte is lost when one end finishes first. The relay ends when both
//! directions have finished, when either side fails, or when neither side moved a
//! byte for the idle timeout.
//!
//! Both directions run in the caller's task, polled in turn (as tokio's
//! `copy_bidirectional` does): no second task, and no lock around each stream,
//! which `tokio::io::split` would need. A direction holds a copy buffer only
//! while bytes are in flight: it takes one from a per-thread pool ([`crate::pool`]) to
//! read, and gives it back when a read finds nothing and all it read has been
//! written, so an idle tunnel holds no buffer at all. A read fills the buffer as
//! far as the source has bytes at hand (several TLS records, one syscall on TCP)
//! before they are written. Writers are flushed when their source has nothing
//! more for now, not after every write.
//!
//! Where the bytes sit in the buffer is chosen for the writer
//! ([`RelayOptions::write_offset_a`]): a TLS writer copies them to just after a
//! record header, and that copy is fast only between equally aligned places on
//! some machines.

use std::future::poll_fn;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::pool;

/// Which end of a relay an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first stream given to [`relay`] (for the server: the tunnel client).
    A,
    /// The second stream (for the server: the dialed target).
    B,
}

/// Tuning of one relay.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayOptions {
    /// End the relay when no byte moved in either direction for this long.
    pub idle_timeout: Option<Duration>,
    /// Where the bytes written to A start, past a 64-byte boundary (0-63):
    /// [`TLS_WRITE_OFFSET`] when A is a rustls stream, else 0.
    pub write_offset_a: usize,
    /// The same for the bytes written to B.
    pub write_offset_b: usize,
}

/// The place for bytes written to a rustls stream: 5 bytes past a 64-byte boundary.
///
/// rustls copies the plaintext of each record it sends into a buffer of its own,
/// just after the 5-byte record header, and the allocator aligns that buffer to
/// 16 bytes (glibc) or 64 (jemalloc, which tp's binaries use). Plaintext that
/// starts 5 bytes past a 64-byte boundary makes source and destination of that
/// copy equally aligned. Otherwise the copy can run at a fixed distance of 1 to
/// 15 bytes between them modulo 4,096, at which `rep movsb`, which glibc 2.36
/// uses for copies of 2 KiB to 1 MiB, is about 17 times slower on AMD Zen 3 and
/// 4 (glibc bug 30994; bench/analysis.md).
pub const TLS_WRITE_OFFSET: usize = 5;

/// Every place is chosen modulo this; [`place`] returns less, so a buffer with this
/// many bytes beyond what it holds can start its bytes at any place.
pub const ALIGN: usize = 64;

/// Bytes moved by a relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes read from A and written to B.
    pub a_to_b: u64,
    /// Bytes read from B and written to A.
    pub b_to_a: u64,
}

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both directions reached EOF and were shut down in order.
    Closed,
    /// Nothing moved for the idle timeout.
    IdleTimeout,
    /// Reading from or writing to one side failed.
    Error {
        /// The side whose IO failed.
        side: Side,
        /// The failure.
        error: io::Error,
    },
}

/// Relays bytes between `a` and `b` until both directions finish, one fails, or
/// the idle timeout passes. Returns the byte counts either way.
pub async fn relay<A, B>(a: A, b: B, options: RelayOptions) -> (RelayStats, RelayEnd)
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut a, mut b) = (pin!(a), pin!(b));
    let mut forward = Direction::new(Side::A, Side::B, options.write_offset_b);
    let mut backward = Direction::new(Side::B, Side::A, options.write_offset_a);
    let mut last_moved = Instant::now();
    let mut idle = pin!(options.idle_timeout.map(tokio::time::sleep));
    let end = poll_fn(|cx| {
        let mut moved = false;
        if let Poll::Ready(Err((side, error))) =
            forward.poll_copy(cx, a.as_mut(), b.as_mut(), &mut moved)
        {
            return Poll::Ready(RelayEnd::Error { side, error });
        }
        if let Poll::Ready(Err((side, error))) =
            backward.poll_copy(cx, b.as_mut(), a.as_mut(), &mut moved)
        {
            return Poll::Ready(RelayEnd::Error { side, error });
        }
        if forward.is_done() && backward.is_done() {
            return Poll::Ready(RelayEnd::Closed);
        }
        if moved {
            last_moved = Instant::now();
        }
        if let (Some(timeout), Some(mut sleep)) = (options.idle_timeout, idle.as_mut().as_pin_mut())
        {
            // The timer was set when the relay started or when it last fired:
            // when it fires, the deadline moves on to the last move's, unless
            // that has passed too.
            while sleep.as_mut().poll(cx).is_ready() {
                let deadline = last_moved + timeout;
                if deadline <= Instant::now() {
                    return Poll::Ready(RelayEnd::IdleTimeout);
                }
                sleep.as_mut().reset(deadline);
            }
        }
        Poll::Pending
    })
    .await;
    let stats = RelayStats {
        a_to_b: forward.moved,
        b_to_a: backward.moved,
    };
    (stats, end)
}

/// One direction of a relay: reads from one side, writes to the other.
#[derive(Debug)]
struct Direction {
    from: Side,
    to: Side,
    /// Where the bytes read start, past a 64-byte boundary.
    offset: usize,
    /// The buffer while bytes are in flight; `None` when all read was written
    /// and the source had nothing more.
    buf: Option<Box<[u8]>>,
    /// `buf[pos..cap]` is read and not yet written.
    pos: usize,
    cap: usize,
    /// The source reached EOF: once `buf` is written, shut the writer down.
    eof: bool,
    /// Bytes were written since the last flush.
    need_flush: bool,
    state: State,
    /// Bytes written.
    moved: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Copying,
    ShuttingDown,
    Done,
}

impl Direction {
    fn new(from: Side, to: Side, offset: usize) -> Self {
        Direction {
            from,
            to,
            offset: offset % ALIGN,
            buf: None,
            pos: 0,
            cap: 0,
            eof: false,
            need_flush: false,
            state: State::Copying,
            moved: 0,
        }
    }

    fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Moves what `reader` has to `writer`, until the reader has nothing more
    /// for now (`Pending`, the writer flushed), the writer takes no more
    /// (`Pending`), or the direction is done: EOF, written, writer shut down.
    /// Sets `moved` when a byte was read or written.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
        moved: &mut bool,
    ) -> Poll<Result<(), (Side, io::Error)>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            match self.state {
                State::Done => return Poll::Ready(Ok(())),
                State::ShuttingDown => {
                    // A shutdown flushes first (AsyncWrite's contract).
                    match ready!(writer.as_mut().poll_shutdown(cx)) {
                        Ok(()) => {}
                        // The peer already closed its side entirely: nothing left to deliver.
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                        Err(e) => return Poll::Ready(Err((self.to, e))),
                    }
                    self.state = State::Done;
                }
                State::Copying => match &self.buf {
                    Some(buf) if self.pos < self.cap => {
                        let n = ready!(writer.as_mut().poll_write(cx, &buf[self.pos..self.cap]))
                            .map_err(|e| (self.to, e))?;
                        if n == 0 {
                            let e = io::Error::new(io::ErrorKind::WriteZero, "wrote no byte");
                            return Poll::Ready(Err((self.to, e)));
                        }
                        self.pos += n;
                        self.moved += n as u64;
                        self.need_flush = true;
                        *moved = true;
                    }
                    _ if self.eof => {
                        if let Some(buf) = self.buf.take() {
                            pool::give(buf);
                        }
                        self.state = State::ShuttingDown;
                    }
                    _ => match self.poll_fill(cx, reader.as_mut()) {
                        Poll::Ready(Ok(())) => *moved |= self.cap > 0,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err((self.from, e))),
                        Poll::Pending => {
                            if self.need_flush {
                                ready!(writer.as_mut().poll_flush(cx)).map_err(|e| (self.to, e))?;
                                self.need_flush = false;
                            }
                            return Poll::Pending;
                        }
                    },
                },
            }
        }
    }

    /// With nothing left to write: reads into a buffer as much as `reader` has
    /// at hand. `Ready` with bytes in `buf[..cap]`, or at EOF; `Pending` (the
    /// buffer given back) when the reader has nothing yet.
    fn poll_fill<R>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
    {
        let mut buf = self.buf.take().unwrap_or_else(pool::take);
        let start = place(&buf, self.offset);
        let mut read = ReadBuf::new(&mut buf[start..start + pool::BUF_SIZE]);
        let result = loop {
            let before = read.filled().len();
            match reader.as_mut().poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().len() == before => {
                    self.eof = true;
                    break Ok(());
                }
                Poll::Ready(Ok(())) if read.remaining() == 0 => break Ok(()),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => break Err(e),
                // Nothing more at hand: write what there is, if anything.
                Poll::Pending => break Ok(()),
            }
        };
        let filled = read.filled().len();
        (self.pos, self.cap) = (0, 0);
        match result {
            Ok(()) if filled > 0 => {
                (self.pos, self.cap) = (start, start + filled);
                self.buf = Some(buf);
                Poll::Ready(Ok(()))
            }
            Ok(()) => {
                pool::give(buf);
                if self.eof {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
            Err(e) => {
                pool::give(buf);
                Poll::Ready(Err(e))
            }
        }
    }
}

/// The index in `buf`, below 64, that lies `offset` (modulo 64) bytes past a 64-byte
/// boundary; a pool buffer has 64 bytes beyond the 64 KiB it holds for it.
pub fn place(buf: &[u8], offset: usize) -> usize {
    (offset % ALIGN + ALIGN - buf.as_ptr().addr() % ALIGN) % ALIGN
}

#[cfg(test)]
mod tests;
