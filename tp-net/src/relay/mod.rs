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
//! while bytes are in flight: it takes one from a per-thread pool ([`pool`]) to
//! read, and gives it back when a read finds nothing and all it read has been
//! written, so an idle tunnel holds no buffer at all. A read fills the buffer as
//! far as the source has bytes at hand (several TLS records, one syscall on TCP)
//! before they are written. Writers are flushed when their source has nothing
//! more for now, not after every write.

use std::future::poll_fn;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

mod pool;

/// Which end of a relay an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first stream given to [`relay`] (for the server: the tunnel client).
    A,
    /// The second stream (for the server: the dialed target).
    B,
}

/// Tuning of one relay.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// End the relay when no byte moved in either direction for this long.
    pub idle_timeout: Option<Duration>,
}

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
    let mut forward = Direction::new(Side::A, Side::B);
    let mut backward = Direction::new(Side::B, Side::A);
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
    fn new(from: Side, to: Side) -> Self {
        Direction {
            from,
            to,
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
        let mut read = ReadBuf::new(&mut buf);
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
                self.cap = filled;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    const NO_IDLE: RelayOptions = RelayOptions { idle_timeout: None };

    #[tokio::test]
    async fn half_close_keeps_the_other_direction_flowing() {
        let (mut client, a) = duplex(1024);
        let (b, mut target) = duplex(1024);
        let task = tokio::spawn(relay(a, b, NO_IDLE));

        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        target.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request", "EOF from the client reaches the target");

        // After the client's EOF the target still sends, and everything arrives.
        // Write and read at once: the duplex buffers are far smaller than the reply.
        let reply = vec![7u8; 100_000];
        let send = async {
            target.write_all(&reply).await.unwrap();
            target.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let receive = client.read_to_end(&mut back);
        let ((), got_back) = tokio::join!(send, receive);
        got_back.unwrap();
        assert_eq!(back, reply);

        let (stats, end) = task.await.unwrap();
        assert!(matches!(end, RelayEnd::Closed), "{end:?}");
        assert_eq!(
            stats,
            RelayStats {
                a_to_b: 7,
                b_to_a: 100_000
            }
        );
    }

    #[tokio::test]
    async fn buffered_writers_are_flushed_without_waiting_for_eof() {
        // A TLS stream behaves like this BufWriter: written bytes wait for a flush.
        let (mut client, a) = duplex(1024);
        let (b, mut target) = duplex(1024);
        let _task = tokio::spawn(relay(a, tokio::io::BufWriter::new(b), NO_IDLE));

        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), target.read_exact(&mut got))
            .await
            .expect("the relay flushed what it wrote")
            .unwrap();
        assert_eq!(&got, b"ping");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_relay_ends() {
        let (_client, a) = duplex(64);
        let (b, _target) = duplex(64);
        let options = RelayOptions {
            idle_timeout: Some(Duration::from_secs(30)),
        };
        let (stats, end) = relay(a, b, options).await;
        assert!(matches!(end, RelayEnd::IdleTimeout), "{end:?}");
        assert_eq!(stats, RelayStats::default());
    }

    #[tokio::test]
    async fn a_failing_side_is_named() {
        let (client, a) = duplex(64);
        let (b, mut target) = duplex(64);
        drop(client);
        // Target writes to A, which is gone: the write fails on side A.
        let t = tokio::spawn(async move {
            let _ = target.write_all(&[1u8; 1000]).await;
            target
        });
        let (_, end) = relay(a, b, NO_IDLE).await;
        drop(t.await.unwrap());
        assert!(
            matches!(
                end,
                RelayEnd::Error { side: Side::A, .. } | RelayEnd::Closed
            ),
            "{end:?}"
        );
    }

    #[tokio::test]
    async fn both_directions_at_once_arrive_whole() {
        let (mut client, a) = duplex(8 * 1024);
        let (b, mut target) = duplex(8 * 1024);
        let task = tokio::spawn(relay(a, b, NO_IDLE));
        let up: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
        let (mut client_r, mut client_w) = tokio::io::split(&mut client);
        let (mut target_r, mut target_w) = tokio::io::split(&mut target);
        let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
        tokio::join!(
            async {
                client_w.write_all(&up).await.unwrap();
                client_w.shutdown().await.unwrap();
            },
            async {
                target_w.write_all(&down).await.unwrap();
                target_w.shutdown().await.unwrap();
            },
            async { target_r.read_to_end(&mut got_up).await.unwrap() },
            async { client_r.read_to_end(&mut got_down).await.unwrap() },
        );
        assert!(got_up == up, "A to B arrived whole and in order");
        assert!(got_down == down, "B to A arrived whole and in order");
        let (stats, end) = task.await.unwrap();
        assert!(matches!(end, RelayEnd::Closed), "{end:?}");
        assert_eq!(
            stats,
            RelayStats {
                a_to_b: up.len() as u64,
                b_to_a: down.len() as u64
            }
        );
    }

    /// A writer that keeps what it is given and counts the calls.
    #[derive(Debug, Default)]
    struct Counting {
        data: Vec<u8>,
        writes: usize,
        flushes: usize,
        shutdowns: usize,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes += 1;
            self.data.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shutdowns += 1;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn bytes_at_hand_go_in_full_buffers_and_the_writer_is_not_flushed_between() {
        let source: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let a = tokio::io::join(&source[..], tokio::io::sink());
        let mut counting = Counting::default();
        let b = tokio::io::join(tokio::io::empty(), &mut counting);
        let (stats, end) = relay(a, b, NO_IDLE).await;
        assert!(matches!(end, RelayEnd::Closed), "{end:?}");
        assert_eq!(stats.a_to_b, source.len() as u64);
        assert!(counting.data == source);
        assert_eq!(
            counting.writes,
            source.len().div_ceil(pool::BUF_SIZE),
            "one write per full buffer"
        );
        assert_eq!(counting.flushes, 0, "the shutdown flushes, once");
        assert_eq!(counting.shutdowns, 1);
    }

    #[tokio::test]
    async fn a_quiet_direction_holds_no_buffer() {
        let (mut client, mut a) = duplex(1024);
        let (mut b, mut target) = duplex(1024);
        let mut forward = Direction::new(Side::A, Side::B);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut moved = false;

        let poll = forward.poll_copy(&mut cx, Pin::new(&mut a), Pin::new(&mut b), &mut moved);
        assert!(poll.is_pending());
        assert!(forward.buf.is_none(), "nothing was ever read");

        client.write_all(b"hello").await.unwrap();
        let poll = forward.poll_copy(&mut cx, Pin::new(&mut a), Pin::new(&mut b), &mut moved);
        assert!(poll.is_pending(), "the source has nothing more");
        assert!(moved);
        assert!(forward.buf.is_none(), "the buffer went back once written");
        let mut got = [0u8; 5];
        target.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_moving_keep_the_idle_timeout_away() {
        let (mut client, a) = duplex(64);
        let (b, mut target) = duplex(64);
        let options = RelayOptions {
            idle_timeout: Some(Duration::from_secs(30)),
        };
        let started = Instant::now();
        let task = tokio::spawn(relay(a, b, options));
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            client.write_all(b"x").await.unwrap();
            let mut got = [0u8; 1];
            target.read_exact(&mut got).await.unwrap();
        }
        assert!(!task.is_finished(), "bytes moved every 20 s");
        let (stats, end) = task.await.unwrap();
        assert!(matches!(end, RelayEnd::IdleTimeout), "{end:?}");
        assert_eq!(stats.a_to_b, 3);
        let lasted = started.elapsed();
        assert!(
            lasted >= Duration::from_secs(90) && lasted < Duration::from_secs(91),
            "ends 30 s after the last byte, at 60 s: {lasted:?}"
        );
    }
}
