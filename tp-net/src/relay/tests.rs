//! The relay alone: both directions, half-close, flushing, idle timeout, byte counts,
//! the buffers it holds and where it places the bytes in them.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

const NO_IDLE: RelayOptions = RelayOptions {
    idle_timeout: None,
    write_offset_a: 0,
    write_offset_b: 0,
};

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
        ..NO_IDLE
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
    /// Where each write's bytes started, past a 64-byte boundary.
    places: Vec<usize>,
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
        self.places.push(buf.as_ptr().addr() % 64);
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
async fn each_direction_places_its_bytes_where_its_writer_asked() {
    let source: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for offset in [0, TLS_WRITE_OFFSET, 63] {
        // A to B, placed for B.
        let a = tokio::io::join(&source[..], tokio::io::sink());
        let mut to_b = Counting::default();
        let b = tokio::io::join(tokio::io::empty(), &mut to_b);
        let options = RelayOptions {
            write_offset_b: offset,
            ..NO_IDLE
        };
        let (stats, end) = relay(a, b, options).await;
        assert!(matches!(end, RelayEnd::Closed), "{end:?}");
        assert_eq!(stats.a_to_b, source.len() as u64);
        assert!(to_b.data == source, "every byte, in order");
        assert_eq!(
            to_b.writes,
            source.len().div_ceil(pool::BUF_SIZE),
            "full buffers"
        );
        assert!(
            to_b.places.iter().all(|&p| p == offset),
            "{offset}: {:?}",
            to_b.places
        );

        // B to A, placed for A.
        let mut to_a = Counting::default();
        let a = tokio::io::join(tokio::io::empty(), &mut to_a);
        let b = tokio::io::join(&source[..], tokio::io::sink());
        let options = RelayOptions {
            write_offset_a: offset,
            ..NO_IDLE
        };
        let (stats, _) = relay(a, b, options).await;
        assert_eq!(stats.b_to_a, source.len() as u64);
        assert!(to_a.data == source);
        assert!(
            to_a.places.iter().all(|&p| p == offset),
            "{offset}: {:?}",
            to_a.places
        );
    }
}

#[tokio::test]
async fn a_quiet_direction_holds_no_buffer() {
    let (mut client, mut a) = duplex(1024);
    let (mut b, mut target) = duplex(1024);
    let mut forward = Direction::new(Side::A, Side::B, 0);
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
        ..NO_IDLE
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
