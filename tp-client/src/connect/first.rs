//! The first bytes of a tunnel, sent with its hello.
//!
//! The protocol lets a client send tunnel payload right behind its hello,
//! before the answer: the server holds it until it has decided, forwards it
//! on `ok` and discards it otherwise (docs/protocol.md). The local side is
//! `tp up`'s accepted connection or `tp HOST PORT`'s stdin. For a local
//! application that speaks first (an HTTP request, a TLS ClientHello), sending
//! what it has written along with the hello saves the round trip the tunnel
//! would otherwise wait for the answer before reading it.
//!
//! What is already there when the hello goes out is taken without waiting: a
//! protocol where the target speaks first (SSH's banner) must not be held up.
//! It is read after the handshake on a new connection (so a local client has
//! had all that time to write), right after the accept on a kept QUIC
//! connection. There a client that writes a moment after connecting often has
//! not yet: so while the hello waits for its answer, whatever the local side
//! writes follows it at once ([`FirstBytes::more`]), up to [`FIRST_BYTES_MAX`]
//! in all. The bytes are kept until the tunnel opens, so a retry on a new QUIC
//! connection can send them again (see [`super::Connector::open_over`] for
//! when it does).

use std::fmt;
use std::io::{self, Read};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// At most this much of what the local side has written travels before the
/// answer: one TLS record's worth.
pub const FIRST_BYTES_MAX: usize = 16 * 1024;

/// Where a tunnel's first bytes come from: a local TCP connection, a reader
/// (stdin), or nowhere.
#[derive(Debug, Default)]
pub struct FirstBytes<'a> {
    source: Option<Source<'a>>,
    /// What was read.
    taken: Vec<u8>,
    /// The bytes for the hello were read: [`FirstBytes::take`] reads no more.
    took: bool,
    /// The local side's EOF was read: nothing more will come.
    eof: bool,
}

/// A local side the first bytes are read from.
enum Source<'a> {
    /// `tp up`'s accepted connection, read on its socket directly.
    Tcp(&'a TcpStream),
    /// `tp HOST PORT`'s stdin, or any reader.
    Reader(&'a mut (dyn AsyncRead + Unpin + Send)),
}

impl fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Tcp(stream) => f.debug_tuple("Tcp").field(stream).finish(),
            Source::Reader(_) => f.write_str("Reader"),
        }
    }
}

impl<'a> FirstBytes<'a> {
    /// No first bytes: the hello goes alone.
    pub fn none() -> FirstBytes<'static> {
        FirstBytes::default()
    }

    /// Whatever `local` has already sent when the hello goes out.
    pub fn from(local: &'a TcpStream) -> Self {
        FirstBytes {
            source: Some(Source::Tcp(local)),
            ..FirstBytes::default()
        }
    }

    /// Whatever `reader` (stdin, for `tp HOST PORT`) has at hand when the
    /// hello goes out. It is polled once now as well, so that a reader that
    /// reads in the background (tokio's stdin) has its bytes by then. Once the
    /// tunnel is open, the caller reads on from `reader`, unless
    /// [`FirstBytes::reached_eof`]: a terminal's end of input is read only once.
    /// A reader's errors are left to the caller too: they end the watch.
    pub fn reader(reader: &'a mut (dyn AsyncRead + Unpin + Send)) -> Self {
        let mut first = FirstBytes::default();
        first.eof = poll_once(reader, &mut first.taken);
        first.source = Some(Source::Reader(reader));
        first
    }

    /// The bytes to send with the hello: read from the local side the first
    /// time (what is there, without waiting), the same bytes after that.
    /// An error means the local connection is already broken (reset, say):
    /// its tunnel is not worth opening.
    pub(crate) fn take(&mut self) -> io::Result<&[u8]> {
        if !self.took {
            match &mut self.source {
                None => {}
                Some(Source::Tcp(stream)) => {
                    let room = FIRST_BYTES_MAX.saturating_sub(self.taken.len());
                    let read = read_ready(stream, room)?;
                    self.taken.extend_from_slice(&read);
                }
                Some(Source::Reader(reader)) if !self.eof => {
                    self.eof = poll_once(&mut **reader, &mut self.taken);
                }
                Some(Source::Reader(_)) => {}
            }
            self.took = true;
        }
        Ok(&self.taken)
    }

    /// Waits until the local side writes more, takes it and returns it: the
    /// bytes to send behind those already sent, while the hello waits for its
    /// answer. None when nothing more is to come before the answer: there is
    /// no local side, it reached EOF ([`FirstBytes::reached_eof`]), or
    /// [`FIRST_BYTES_MAX`] are taken (the rest stays for the relay). An error
    /// means the local side broke. Cancel-safe: what was read is kept.
    pub(crate) async fn more(&mut self) -> io::Result<Option<&[u8]>> {
        let Some(source) = &mut self.source else {
            return Ok(None);
        };
        let taken = &mut self.taken;
        let start = taken.len();
        if self.eof || start >= FIRST_BYTES_MAX {
            return Ok(None);
        }
        let read = match source {
            Source::Tcp(local) => loop {
                local.readable().await?;
                taken.resize(FIRST_BYTES_MAX, 0);
                let read = local.try_read(&mut taken[start..]);
                taken.truncate(start + *read.as_ref().unwrap_or(&0));
                match read {
                    Ok(n) => break n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(e),
                }
            },
            // Cancel-safe (tokio's word for `read_buf`): nothing is read
            // unless it completes.
            Source::Reader(reader) => {
                let room = FIRST_BYTES_MAX - start;
                taken.reserve(room);
                loop {
                    match reader.read_buf(&mut (&mut *taken).limit(room)).await {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // Not this tunnel's failure: the caller reads on and
                        // meets it (for stdin: the end of what is sent).
                        Err(_) => return Ok(None),
                    }
                }
            }
        };
        if read == 0 {
            self.eof = true;
            return Ok(None);
        }
        Ok(Some(&taken[start..]))
    }

    /// Whether the local side's EOF was read: a reader's caller must not
    /// expect to read it again (a terminal gives it once).
    pub fn reached_eof(&self) -> bool {
        self.eof
    }

    /// How many bytes went before the answer.
    pub fn len(&self) -> usize {
        if self.took { self.taken.len() } else { 0 }
    }

    /// What was read from a reader but did not go with a hello (there was
    /// none: a tunnel to a service, stealth mode, a failure first): the caller
    /// sends it first once the tunnel is open.
    pub fn into_unsent(self) -> Vec<u8> {
        if self.took { Vec::new() } else { self.taken }
    }

    /// Whether no byte went before the answer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends what `reader` gives at one poll to `taken`, up to
/// [`FIRST_BYTES_MAX`] in all; true if that was its EOF. The poll's wake-up is
/// dropped: the next read (in [`FirstBytes::more`], or the caller's) polls
/// again. For tokio's stdin, a first poll starts the background read whose
/// bytes a later one returns. An error is left for the caller's reads to meet.
fn poll_once(reader: &mut (dyn AsyncRead + Unpin + Send), taken: &mut Vec<u8>) -> bool {
    let room = FIRST_BYTES_MAX.saturating_sub(taken.len());
    if room == 0 {
        return false;
    }
    taken.reserve(room);
    let mut limited = taken.limit(room);
    let polled = pin!(reader.read_buf(&mut limited)).poll(&mut Context::from_waker(Waker::noop()));
    matches!(polled, Poll::Ready(Ok(0)))
}

/// Reads what `stream` has at hand, up to `room` bytes, without waiting. An empty result is "nothing yet" or EOF alike: the relay reads the
/// EOF again.
fn read_ready(stream: &TcpStream, room: usize) -> io::Result<Vec<u8>> {
    // tokio would not read before its reactor has seen the socket readable,
    // which a connection accepted a moment ago may not have been yet: read the
    // (non-blocking) socket directly. tokio's own next read then finds what
    // comes after, or `WouldBlock`, and waits as usual.
    let socket = socket2::SockRef::from(stream);
    // On the stack: only what was read is copied out, and nothing is
    // allocated when there is nothing to take.
    let mut buf = [0u8; FIRST_BYTES_MAX];
    loop {
        match (&*socket).read(&mut buf[..room.min(FIRST_BYTES_MAX)]) {
            Ok(n) => return Ok(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Vec::new()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        (app, ours)
    }

    #[tokio::test]
    async fn what_the_local_side_sent_is_taken_once_and_kept() {
        let (mut app, ours) = pair().await;
        app.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        // The bytes are in our receive queue once the write returns (loopback),
        // though tokio's reactor has not looked at the socket.
        let mut first = FirstBytes::from(&ours);
        assert_eq!(first.take().unwrap(), b"GET / HTTP/1.1\r\n\r\n");
        app.write_all(b"more").await.unwrap();
        assert_eq!(
            first.take().unwrap(),
            b"GET / HTTP/1.1\r\n\r\n",
            "read once"
        );
        assert_eq!(first.len(), 18);
    }

    #[tokio::test]
    async fn nothing_written_yet_is_nothing_and_no_wait() {
        let (_app, ours) = pair().await;
        let mut first = FirstBytes::from(&ours);
        assert!(first.take().unwrap().is_empty());
        assert!(first.is_empty());
        assert!(FirstBytes::none().take().unwrap().is_empty());
    }

    #[tokio::test]
    async fn at_most_one_record_is_taken_and_the_rest_stays_for_the_relay() {
        use tokio::io::AsyncReadExt;
        let (mut app, mut ours) = pair().await;
        let sent: Vec<u8> = (0..FIRST_BYTES_MAX + 1000).map(|i| i as u8).collect();
        app.write_all(&sent).await.unwrap();
        drop(app);
        let mut first = FirstBytes::from(&ours);
        let taken = first.take().unwrap().to_vec();
        assert_eq!(taken.len(), FIRST_BYTES_MAX);
        let mut rest = Vec::new();
        ours.read_to_end(&mut rest).await.unwrap();
        assert_eq!([taken, rest].concat(), sent);
    }

    #[tokio::test]
    async fn what_the_local_side_writes_later_is_taken_by_more_and_kept_behind() {
        let (mut app, ours) = pair().await;
        let mut first = FirstBytes::from(&ours);
        assert!(first.take().unwrap().is_empty(), "nothing yet");
        app.write_all(b"late").await.unwrap();
        assert_eq!(first.more().await.unwrap(), Some(&b"late"[..]));
        app.write_all(b" and later").await.unwrap();
        assert_eq!(first.more().await.unwrap(), Some(&b" and later"[..]));
        assert_eq!(first.take().unwrap(), b"late and later", "kept for a retry");
        assert_eq!(first.len(), 14);
        assert_eq!(FirstBytes::none().more().await.unwrap(), None);
    }

    #[tokio::test]
    async fn more_ends_at_eof_and_leaves_it_to_the_relay() {
        use tokio::io::AsyncReadExt;
        let (mut app, mut ours) = pair().await;
        app.write_all(b"bye").await.unwrap();
        app.shutdown().await.unwrap();
        let mut first = FirstBytes::from(&ours);
        let mut got = Vec::new();
        while let Some(bytes) = first.more().await.unwrap() {
            got.extend_from_slice(bytes);
        }
        assert_eq!(got, b"bye");
        assert_eq!(first.more().await.unwrap(), None, "and stays ended");
        drop(first);
        assert_eq!(ours.read(&mut [0u8; 8]).await.unwrap(), 0, "the EOF again");
    }

    #[tokio::test]
    async fn more_stops_at_the_cap_and_the_rest_stays_for_the_relay() {
        use tokio::io::AsyncReadExt;
        let (mut app, mut ours) = pair().await;
        let sent: Vec<u8> = (0..FIRST_BYTES_MAX + 1000).map(|i| i as u8).collect();
        let writer = tokio::spawn(async move {
            app.write_all(&sent).await.unwrap();
            sent
        });
        let mut first = FirstBytes::from(&ours);
        while first.more().await.unwrap().is_some() {}
        let taken = first.take().unwrap().to_vec();
        assert_eq!(taken.len(), FIRST_BYTES_MAX);
        let sent = writer.await.unwrap();
        let mut rest = vec![0u8; 1000];
        ours.read_exact(&mut rest).await.unwrap();
        assert_eq!([taken, rest].concat(), sent);
    }

    #[tokio::test]
    async fn a_reset_local_connection_is_an_error() {
        let (app, ours) = pair().await;
        // Linger 0: close sends a RST.
        socket2::SockRef::from(&app)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(app);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut first = FirstBytes::from(&ours);
        let e = first.take().expect_err("the reset");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    }
}
