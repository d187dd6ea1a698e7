//! A raw QUIC client for protocol tests, the QUIC twin of [`crate::client`]: any
//! certificate (or none), any ALPN, hand-written hello lines, each tunnel one
//! bidirectional stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tp_net::quic::QuicStream;

use crate::client::{ClientOptions, tls_config};

/// One QUIC connection to a test server and the first stream on it. Keeps its own
/// endpoint (a UDP socket on 127.0.0.1), so a test can rebind it to roam.
///
/// Dropping it (with its streams) closes the connection at once: stream data the
/// server has not acknowledged yet is lost, where a closed TCP socket would still
/// deliver it. Keep it until the other end has what the test sends.
#[derive(Debug)]
pub struct QuicClient {
    stream: QuicStream,
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
}

/// A client endpoint on a fresh 127.0.0.1 UDP port, configured with `options`.
pub fn endpoint(options: &ClientOptions<'_>) -> quinn::Endpoint {
    endpoint_with(options, quinn::TransportConfig::default())
}

/// Like [`endpoint`], granting the server `streams` bidirectional streams open at
/// once (and no unidirectional ones), stated rather than left to quinn's default:
/// an exposing client's connection, on which the server opens a stream per
/// incoming connection. `0` is a client that lets the server open none.
pub fn endpoint_granting(options: &ClientOptions<'_>, streams: u32) -> quinn::Endpoint {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(streams))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    endpoint_with(options, transport)
}

fn endpoint_with(
    options: &ClientOptions<'_>,
    transport: quinn::TransportConfig,
) -> quinn::Endpoint {
    endpoint_with_tls(tls_config(options), transport)
}

/// A client endpoint on a fresh 127.0.0.1 UDP port with a TLS configuration of the
/// test's own (e.g. [`tls_config`] with resumption and early data turned on), and
/// `transport` with the raw client's 5 s keep-alive.
pub fn endpoint_with_tls(
    tls: rustls::ClientConfig,
    mut transport: quinn::TransportConfig,
) -> quinn::Endpoint {
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("UDP bind");
    let crypto = QuicClientConfig::try_from(Arc::new(tls)).expect("TLS 1.3 config usable for QUIC");
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    config.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(config);
    endpoint
}

/// Connects and opens the first stream. As with TLS/TCP, the server checks the
/// client certificate after the client considers the handshake done, so a
/// refusal shows up on the first read.
pub async fn connect(addr: SocketAddr, options: &ClientOptions<'_>) -> io::Result<QuicClient> {
    connect_on(endpoint(options), addr).await
}

/// A QUIC connection to `addr` as `leaf` whose first stream is an open tunnel
/// to the loopback echo target (or any target) on 127.0.0.1:`port`.
pub async fn open_tunnel(addr: SocketAddr, leaf: &tp_server::pki::Issued, port: u16) -> QuicClient {
    let mut client = connect(addr, &ClientOptions::with(leaf))
        .await
        .expect("QUIC connect");
    let hello = crate::client::connect_hello("127.0.0.1", port);
    let reply = crate::client::send_hello(&mut client, &hello).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
    client
}

/// [`connect`] from a given `endpoint`, whose local address is the `peer=` of the
/// server's log lines for this connection.
pub async fn connect_on(endpoint: quinn::Endpoint, addr: SocketAddr) -> io::Result<QuicClient> {
    let conn = crate::within("QUIC handshake", Duration::from_secs(10), async {
        endpoint
            .connect(addr, "localhost")
            .map_err(io::Error::other)?
            .await
            .map_err(io::Error::other)
    })
    .await?;
    let (send, recv) = conn.open_bi().await.map_err(io::Error::other)?;
    Ok(QuicClient {
        stream: tp_net::quic::stream(send, recv),
        conn,
        endpoint,
    })
}

impl QuicClient {
    /// The connection, to open more streams or watch how it closed.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The client's endpoint, to rebind it to a new socket (roaming).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// The id of the first stream: the flow id of a UDP tunnel on it.
    pub fn flow_id(&self) -> u64 {
        quinn::VarInt::from(self.stream.writer().id()).into_inner()
    }

    /// Opens another stream (tunnel) on the same connection.
    pub async fn open_stream(&self) -> io::Result<QuicStream> {
        let (send, recv) = self.conn.open_bi().await.map_err(io::Error::other)?;
        Ok(tp_net::quic::stream(send, recv))
    }
}

impl AsyncRead for QuicClient {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuicClient {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
