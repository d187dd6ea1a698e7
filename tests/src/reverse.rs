//! Reverse tunnels by hand: a raw exposing client ([`Exposer`]) that speaks the
//! wire contract of `listen` and `accept` directly (protocol.md, "`listen` and
//! `accept`"), and a raw caller ([`call`]). It is not `tp expose`: tests of the
//! server must not depend on the client written against it.
//!
//! Over TLS/TCP an incoming connection is announced on the control channel and
//! claimed with `accept` on a new connection; over QUIC the server opens a
//! bidirectional stream headed by the `incoming` line. [`Exposer::next_incoming`]
//! hides the difference, as the real client does.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tp_proto::{Event, Incoming};
use tp_server::pki::Issued;

use crate::client::{self, ClientOptions, Reply, TlsClient, Transport, Tunnel};
use crate::quic::{self, QuicClient};

/// Bidirectional streams the raw QUIC exposer lets the server have open at once.
pub const GRANTED_STREAMS: u32 = 16;

fn line(value: &serde_json::Value) -> Vec<u8> {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// `{"v":1,"op":"listen","name":NAME}`: end-to-end mode.
pub fn listen_name_hello(name: &str) -> Vec<u8> {
    line(&json!({"v": 1, "op": "listen", "name": name}))
}

/// `{"v":1,"op":"listen","port":PORT}`: public mode.
pub fn listen_port_hello(port: u16) -> Vec<u8> {
    line(&json!({"v": 1, "op": "listen", "port": port}))
}

/// `{"v":1,"op":"accept","session":ID}`.
pub fn accept_hello(session: &str) -> Vec<u8> {
    line(&json!({"v": 1, "op": "accept", "session": session}))
}

/// `{"v":1,"op":"connect","service":NAME,"port":PORT}`.
pub fn service_hello(name: &str, port: u16) -> Vec<u8> {
    line(&json!({"v": 1, "op": "connect", "service": name, "port": port}))
}

/// A port that was free on 127.0.0.1 a moment ago (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// The control channel's connection.
#[derive(Debug)]
enum Control {
    Tcp(Box<TlsClient>),
    Quic(QuicClient),
}

impl Control {
    fn stream(&mut self) -> &mut (dyn client::Duplex + 'static) {
        match self {
            Control::Tcp(tls) => &mut **tls,
            Control::Quic(quic) => quic,
        }
    }
}

/// A raw exposing client: one registration and its control channel. Dropping it
/// drops the connection without a goodbye (over QUIC: closes the connection).
#[derive(Debug)]
pub struct Exposer {
    server: SocketAddr,
    leaf: &'static Issued,
    control: Control,
    buf: BytesMut,
}

impl Exposer {
    /// Connects as `leaf` over `transport` and sends `hello` (a `listen` line).
    /// `Ok` with the control channel on `ok`, else the reply. Over QUIC the
    /// connection grants the server [`GRANTED_STREAMS`] streams.
    pub async fn register(
        transport: Transport,
        server: SocketAddr,
        leaf: &'static Issued,
        hello: &[u8],
    ) -> Result<Exposer, Reply> {
        let options = ClientOptions::with(leaf);
        let mut control = match transport {
            Transport::Tcp => Control::Tcp(Box::new(
                client::connect(server, &options)
                    .await
                    .expect("TLS handshake of the exposing client"),
            )),
            Transport::Quic => Control::Quic(
                quic::connect_on(quic::endpoint_granting(&options, GRANTED_STREAMS), server)
                    .await
                    .expect("QUIC handshake of the exposing client"),
            ),
        };
        let reply = client::send_hello(control.stream(), hello).await;
        match &reply {
            Reply::Answer(answer) if answer["ok"] == serde_json::Value::Bool(true) => Ok(Exposer {
                server,
                leaf,
                control,
                buf: BytesMut::new(),
            }),
            _ => Err(reply),
        }
    }

    /// Registers the service `name` and expects `ok`.
    pub async fn expose(
        transport: Transport,
        server: SocketAddr,
        leaf: &'static Issued,
        name: &str,
    ) -> Exposer {
        Exposer::register(transport, server, leaf, &listen_name_hello(name))
            .await
            .unwrap_or_else(|reply| panic!("{transport:?} listen on {name}: {reply:?}"))
    }

    /// Reads the next event of the control channel; `None` once the server has
    /// closed it (cleanly or not). Panics on a line that is not an event.
    pub async fn read_event(&mut self) -> Option<Event> {
        loop {
            match tp_proto::decode_event(&mut self.buf) {
                Ok(Some(event)) => return Some(event),
                Ok(None) => {}
                Err(e) => panic!("the server sent a bad control line: {e}"),
            }
            match self.control.stream().read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// [`read_event`](Self::read_event) within [`crate::EVENTUALLY`].
    pub async fn next_event(&mut self) -> Option<Event> {
        crate::within("a control event", crate::EVENTUALLY, self.read_event()).await
    }

    /// The events that arrive within `wait`, and whether the channel closed.
    pub async fn events_for(&mut self, wait: Duration) -> (Vec<Event>, bool) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut events = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.read_event()).await {
                Err(_) => return (events, false),
                Ok(None) => return (events, true),
                Ok(Some(event)) => events.push(event),
            }
        }
    }

    /// Sends a `ping` event.
    pub async fn send_ping(&mut self) {
        let mut line = Vec::new();
        tp_proto::encode_event(&Event::Ping, &mut line);
        self.send_raw(&line).await;
    }

    /// Sends a `pong` event.
    pub async fn send_pong(&mut self) {
        let mut line = Vec::new();
        tp_proto::encode_event(&Event::Pong, &mut line);
        self.send_raw(&line).await;
    }

    /// Over QUIC, the connection the server opens incoming streams on, to take
    /// them in a task of their own while the control channel is read here;
    /// `None` over TLS/TCP.
    pub fn quic_connection(&self) -> Option<quinn::Connection> {
        match &self.control {
            Control::Quic(quic) => Some(quic.connection().clone()),
            Control::Tcp(_) => None,
        }
    }

    /// Writes `bytes` on the control channel as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stream = self.control.stream();
        stream
            .write_all(bytes)
            .await
            .expect("writing on the control channel");
        stream
            .flush()
            .await
            .expect("writing on the control channel");
    }

    /// Waits (up to [`crate::EVENTUALLY`]) for the server to close the control
    /// channel, skipping pings and pongs; panics on any other event.
    pub async fn expect_closed(&mut self) {
        let closed = async {
            while let Some(event) = self.read_event().await {
                assert!(
                    matches!(event, Event::Ping | Event::Pong),
                    "an event on a channel that should close: {event:?}"
                );
            }
        };
        crate::within(
            "the server to close the control channel",
            crate::EVENTUALLY,
            closed,
        )
        .await;
    }

    /// The next incoming connection, attached: over TLS/TCP the `incoming` event
    /// of the control channel (pings skipped) claimed with `accept` on a new
    /// connection; over QUIC the next server-opened stream, whose `incoming`
    /// head line is read off it.
    pub async fn next_incoming(&mut self) -> (Incoming, Tunnel) {
        if let Control::Quic(quic) = &self.control {
            let conn = quic.connection().clone();
            return crate::within("a stream from the server", crate::EVENTUALLY, async {
                let (send, recv) = conn
                    .accept_bi()
                    .await
                    .expect("accepting the server's stream");
                let mut stream = tp_net::quic::stream(send, recv);
                let head = read_line(&mut stream).await;
                let mut buf = BytesMut::from(&head[..]);
                match tp_proto::decode_event(&mut buf) {
                    Ok(Some(Event::Incoming(incoming))) if buf.is_empty() => {
                        (incoming, Box::new(stream) as Tunnel)
                    }
                    other => panic!(
                        "the server's stream starts with {:?}: {other:?}",
                        String::from_utf8_lossy(&head)
                    ),
                }
            })
            .await;
        }
        let incoming = loop {
            match self.next_event().await {
                Some(Event::Incoming(incoming)) => break incoming,
                Some(_) => {}
                None => panic!("the control channel closed before an incoming event"),
            }
        };
        let (reply, tls) = self.accept(&incoming.session).await;
        assert_eq!(reply.code(), "ok", "accept {}: {reply:?}", incoming.session);
        (incoming, Box::new(tls))
    }

    /// Sends `accept` for `session` on a new TLS/TCP connection as this exposer.
    pub async fn accept(&self, session: &str) -> (Reply, TlsClient) {
        accept_as(self.server, self.leaf, session).await
    }

    /// Closes the control channel cleanly (close_notify, or the stream's FIN),
    /// waits for the server to close its side, then drops the connection.
    pub async fn close(mut self) {
        let stream = self.control.stream();
        stream
            .shutdown()
            .await
            .expect("closing the control channel");
        let mut rest = Vec::new();
        let _ = crate::within(
            "the server's end of the control channel",
            crate::EVENTUALLY,
            stream.read_to_end(&mut rest),
        )
        .await;
    }
}

/// Sends `accept` for `session` on a new TLS/TCP connection as `leaf`.
pub async fn accept_as(server: SocketAddr, leaf: &Issued, session: &str) -> (Reply, TlsClient) {
    let mut tls = client::connect_as(server, leaf).await;
    let reply = client::send_hello(&mut tls, &accept_hello(session)).await;
    (reply, tls)
}

/// Reads one line (with its `\n`) a byte at a time, so that nothing behind it is
/// consumed; panics at EOF.
async fn read_line<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut line = Vec::new();
    loop {
        let byte = stream.read_u8().await.expect("a line from the server");
        line.push(byte);
        if byte == b'\n' {
            return line;
        }
    }
}

/// A caller's `connect` to a service.
pub struct Call {
    /// The caller's own address: the `peer` the exposer should be told.
    pub peer: SocketAddr,
    /// The server's answer.
    pub reply: Reply,
    /// The tunnel (after `ok`, to the exposing client).
    pub tunnel: Tunnel,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("peer", &self.peer)
            .field("reply", &self.reply)
            .finish_non_exhaustive()
    }
}

/// Connects as `leaf` over `transport` and asks for the service `name` (port 22).
/// The answer comes once the exposing side has attached, so run it alongside the
/// exposer's [`Exposer::next_incoming`].
pub async fn call(transport: Transport, server: SocketAddr, leaf: &Issued, name: &str) -> Call {
    call_with(transport, server, leaf, name, b"").await
}

/// [`call`], with `early` payload written right behind the hello, in the same
/// write.
pub async fn call_with(
    transport: Transport,
    server: SocketAddr,
    leaf: &Issued,
    name: &str,
    early: &[u8],
) -> Call {
    let (peer, tunnel) = client::connect_from(transport, server, &ClientOptions::with(leaf)).await;
    let mut tunnel =
        tunnel.unwrap_or_else(|e| panic!("{transport:?} handshake of the caller: {e}"));
    let mut hello = service_hello(name, 22);
    hello.extend_from_slice(early);
    let reply = client::send_hello(&mut tunnel, &hello).await;
    Call {
        peer,
        reply,
        tunnel,
    }
}

/// A stream that keeps a copy of every byte read from it: what a relay handed
/// its end.
#[derive(Debug)]
pub struct Recorded<S> {
    inner: S,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl<S> Recorded<S> {
    /// Wraps `inner`; the bytes read land in the returned buffer.
    pub fn new(inner: S) -> (Recorded<S>, Arc<Mutex<Vec<u8>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Recorded {
            inner,
            seen: seen.clone(),
        };
        (recorded, seen)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(new);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
