//! Bidirectional byte relay with half-close.
//!
//! EOF read from one side shuts down the write side of the other (a TLS peer gets
//! `close_notify`, a TCP peer a FIN) while the opposite direction keeps flowing, so
//! no byte is lost when one end finishes first. The relay ends when both
//! directions have finished, when either side fails, or when neither side moved a
//! byte for the idle timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Initial size of the copy buffer of each direction: an idle tunnel (most of
/// them) holds only this much.
const MIN_BUF: usize = 4 * 1024;
/// The copy buffer grows (by 4x) up to this while reads keep filling it.
const MAX_BUF: usize = 64 * 1024;

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
        error: std::io::Error,
    },
}

struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Copies `from` into `to` until EOF, then shuts `to` down.
async fn copy_half<R, W>(
    mut from: R,
    mut to: W,
    from_side: Side,
    to_side: Side,
    count: &AtomicU64,
    activity: &Activity,
) -> Result<(), (Side, std::io::Error)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; MIN_BUF];
    loop {
        let n = from.read(&mut buf).await.map_err(|e| (from_side, e))?;
        if n == 0 {
            break;
        }
        let full = n == buf.len();
        activity.touch();
        to.write_all(&buf[..n]).await.map_err(|e| (to_side, e))?;
        // A TLS writer may hold ciphertext until flushed; without this, bytes can
        // sit in its buffer while the reader waits for more from the peer.
        to.flush().await.map_err(|e| (to_side, e))?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        activity.touch();
        if full && buf.len() < MAX_BUF {
            buf.resize((buf.len() * 4).min(MAX_BUF), 0);
        }
    }
    match to.shutdown().await {
        Ok(()) => Ok(()),
        // The peer already closed its side entirely: nothing left to deliver.
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(()),
        Err(e) => Err((to_side, e)),
    }
}

/// Relays bytes between `a` and `b` until both directions finish, one fails, or
/// the idle timeout passes. Returns the byte counts either way.
pub async fn relay<A, B>(a: A, b: B, options: RelayOptions) -> (RelayStats, RelayEnd)
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (a_read, a_write) = tokio::io::split(a);
    let (b_read, b_write) = tokio::io::split(b);
    let a_to_b = AtomicU64::new(0);
    let b_to_a = AtomicU64::new(0);
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let forward = copy_half(a_read, b_write, Side::A, Side::B, &a_to_b, &activity);
    let backward = copy_half(b_read, a_write, Side::B, Side::A, &b_to_a, &activity);
    tokio::pin!(forward, backward);
    let (mut forward_done, mut backward_done) = (false, false);
    let check_every = options
        .idle_timeout
        .map(|t| (t / 4).max(Duration::from_millis(10)))
        .unwrap_or(Duration::MAX);
    let end = loop {
        if forward_done && backward_done {
            break RelayEnd::Closed;
        }
        tokio::select! {
            r = &mut forward, if !forward_done => {
                forward_done = true;
                if let Err((side, error)) = r {
                    break RelayEnd::Error { side, error };
                }
            }
            r = &mut backward, if !backward_done => {
                backward_done = true;
                if let Err((side, error)) = r {
                    break RelayEnd::Error { side, error };
                }
            }
            _ = tokio::time::sleep(check_every), if options.idle_timeout.is_some() => {
                if options.idle_timeout.is_some_and(|t| activity.idle_for() >= t) {
                    break RelayEnd::IdleTimeout;
                }
            }
        }
    };
    let stats = RelayStats {
        a_to_b: a_to_b.load(Ordering::Relaxed),
        b_to_a: b_to_a.load(Ordering::Relaxed),
    };
    (stats, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

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
}
