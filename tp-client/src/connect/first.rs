//! The first bytes of a tunnel, sent with its hello.
//!
//! The protocol lets a client send tunnel payload right behind its hello,
//! before the answer: the server holds it until it has decided, forwards it
//! on `ok` and discards it otherwise (docs/protocol.md). For a local
//! application that speaks first (an HTTP request, a TLS ClientHello), sending
//! what it has already written along with the hello saves the round trip the
//! tunnel would otherwise wait for the answer before reading it.
//!
//! Only what is already there is taken, without waiting: a protocol where the
//! target speaks first (SSH's banner) must not be held up. It is read once,
//! when the hello is about to go out: after the handshake on a new connection
//! (so a local client has had all that time to write), right after the accept
//! on a kept QUIC connection (what a client wrote at once after connecting is
//! usually there by then). The bytes are kept until the tunnel opens, so a
//! retry on a new QUIC connection can send them again (see
//! [`super::Connector::open_over`] for when it does).

use std::io::{self, Read};

use tokio::net::TcpStream;

/// At most this much of what the local side has written travels with the
/// hello: one TLS record's worth.
pub const FIRST_BYTES_MAX: usize = 16 * 1024;

/// Where a tunnel's first bytes come from: a local TCP connection, or nowhere.
#[derive(Debug, Default)]
pub struct FirstBytes<'a> {
    local: Option<&'a TcpStream>,
    /// What was read, once it was.
    taken: Option<Vec<u8>>,
}

impl<'a> FirstBytes<'a> {
    /// No first bytes: the hello goes alone.
    pub fn none() -> FirstBytes<'static> {
        FirstBytes::default()
    }

    /// Whatever `local` has already sent when the hello goes out.
    pub fn from(local: &'a TcpStream) -> Self {
        FirstBytes {
            local: Some(local),
            ..FirstBytes::default()
        }
    }

    /// The bytes to send with the hello: read from the local connection the
    /// first time (what is there, without waiting), the same bytes after that.
    /// An error means the local connection is already broken (reset, say):
    /// its tunnel is not worth opening.
    pub(crate) fn take(&mut self) -> io::Result<&[u8]> {
        if self.taken.is_none() {
            let read = self.local.map_or(Ok(Vec::new()), read_ready)?;
            self.taken = Some(read);
        }
        Ok(self.taken.as_deref().unwrap_or_default())
    }

    /// How many bytes went with the hello.
    pub fn len(&self) -> usize {
        self.taken.as_ref().map_or(0, Vec::len)
    }

    /// Whether no byte went with the hello.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads what `stream` has at hand, up to [`FIRST_BYTES_MAX`], without
/// waiting. An empty result is "nothing yet" or EOF alike: the relay reads the
/// EOF again.
fn read_ready(stream: &TcpStream) -> io::Result<Vec<u8>> {
    // tokio would not read before its reactor has seen the socket readable,
    // which a connection accepted a moment ago may not have been yet: read the
    // (non-blocking) socket directly. tokio's own next read then finds what
    // comes after, or `WouldBlock`, and waits as usual.
    let socket = socket2::SockRef::from(stream);
    // On the stack: only what was read is copied out, and nothing is
    // allocated when there is nothing to take.
    let mut buf = [0u8; FIRST_BYTES_MAX];
    loop {
        match (&*socket).read(&mut buf) {
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
