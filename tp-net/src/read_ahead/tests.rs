//! The read-ahead alone, over a scripted stream that counts its reads.

use std::collections::VecDeque;

use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use super::*;

/// What one read of the scripted stream returns.
enum Step {
    Bytes(Vec<u8>),
    /// `Pending`, waking the task at once.
    NotYet,
    Fail,
}

/// A stream whose reads follow a script, then EOF; it counts the reads it served.
struct Script {
    steps: VecDeque<Step>,
    reads: usize,
}

impl Script {
    fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Script {
            steps: steps.into_iter().collect(),
            reads: 0,
        }
    }
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.reads += 1;
        match self.steps.pop_front() {
            None => Poll::Ready(Ok(())),
            Some(Step::Bytes(mut bytes)) => {
                let n = bytes.len().min(buf.remaining());
                buf.put_slice(&bytes[..n]);
                if n < bytes.len() {
                    self.steps.push_front(Step::Bytes(bytes.split_off(n)));
                }
                Poll::Ready(Ok(()))
            }
            Some(Step::NotYet) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Step::Fail) => Poll::Ready(Err(io::Error::other("scripted failure"))),
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn a_reader_asking_for_records_gets_what_one_socket_read_brought() {
    // 40 KB at hand: one read of the socket, then ten 4 KiB pieces from memory.
    let sent = pattern(40_000);
    let mut stream = ReadAhead::new(Script::new([Step::Bytes(sent.clone())]));
    let mut got = Vec::new();
    let mut piece = [0u8; 4096];
    while got.len() < sent.len() {
        let n = stream.read(&mut piece).await.unwrap();
        assert!(n > 0, "no EOF before the end");
        got.extend_from_slice(&piece[..n]);
        assert_eq!(stream.inner.reads, 1, "one read of the socket");
    }
    assert_eq!(got, sent, "every byte, in order");
    assert_eq!(stream.buffered(), 0);
    assert!(
        stream.buf.is_none(),
        "the buffer went back when all was taken"
    );
    assert_eq!(stream.read(&mut piece).await.unwrap(), 0, "then EOF");
}

#[tokio::test]
async fn more_than_a_buffer_at_hand_arrives_whole_over_several_reads() {
    let sent = pattern(3 * pool::BUF_SIZE + 1000);
    let mut stream = ReadAhead::new(Script::new([Step::Bytes(sent.clone())]));
    let mut got = Vec::new();
    let mut piece = vec![0u8; 16 * 1024 + 22];
    loop {
        let n = stream.read(&mut piece).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&piece[..n]);
    }
    assert_eq!(got, sent);
    // Four full or partial buffers, and the read that found EOF.
    assert_eq!(stream.inner.reads, 5);
}

#[tokio::test]
async fn nothing_yet_eof_and_errors_pass_through_and_hold_no_buffer() {
    let mut stream = ReadAhead::new(Script::new([
        Step::NotYet,
        Step::Bytes(b"hello".to_vec()),
        Step::Fail,
    ]));
    let mut piece = [0u8; 100];
    // `read` polls again after the scripted wake-up: the bytes come second.
    let n = stream.read(&mut piece).await.unwrap();
    assert_eq!(&piece[..n], b"hello");
    assert_eq!(stream.inner.reads, 2);
    assert!(stream.buf.is_none());
    let err = stream.read(&mut piece).await.unwrap_err();
    assert_eq!(err.to_string(), "scripted failure");
    assert!(stream.buf.is_none(), "a failed read holds no buffer");
    assert_eq!(stream.read(&mut piece).await.unwrap(), 0);
    assert!(stream.buf.is_none(), "EOF holds no buffer");

    // Pending alone: nothing held while the socket is quiet (an idle tunnel).
    let mut quiet = ReadAhead::new(Script::new([Step::NotYet]));
    let mut read = ReadBuf::new(&mut piece);
    let waker = std::task::Waker::noop();
    let polled = Pin::new(&mut quiet).poll_read(&mut Context::from_waker(waker), &mut read);
    assert!(polled.is_pending());
    assert!(quiet.buf.is_none(), "an idle stream holds no buffer");
}

#[tokio::test]
async fn a_read_as_large_as_a_buffer_goes_straight_to_the_socket() {
    let sent = pattern(pool::BUF_SIZE);
    let mut stream = ReadAhead::new(Script::new([Step::Bytes(sent.clone())]));
    let mut big = vec![0u8; pool::BUF_SIZE];
    let mut read = ReadBuf::new(&mut big);
    let waker = std::task::Waker::noop();
    let polled = Pin::new(&mut stream).poll_read(&mut Context::from_waker(waker), &mut read);
    assert!(matches!(polled, Poll::Ready(Ok(()))));
    assert_eq!(read.filled(), &sent[..]);
    assert!(stream.buf.is_none(), "no copy through a buffer");
}

#[tokio::test]
async fn writes_and_shutdown_go_straight_through() {
    let (near, mut far) = duplex(1024);
    let mut stream = ReadAhead::new(near);
    stream.write_all(b"request").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut got = Vec::new();
    far.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"request");
    far.write_all(b"reply").await.unwrap();
    drop(far);
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"reply");
}
