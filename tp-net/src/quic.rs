//! QUIC pieces shared by the server and the client: one transport configuration
//! with explicit limits, and a bidirectional stream as one `AsyncRead + AsyncWrite`
//! value, so a tunnel handler does not care which transport carried it.
//!
//! quinn's defaults allow large per-connection buffers (a 1.25 MB stream window
//! times 100 streams, and an unbounded connection window); a tunnel server takes
//! many connections, so every window here is explicit.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

/// A QUIC bidirectional stream as one duplex byte stream. Shutting down its write
/// side finishes the send stream (the peer reads EOF), like a TLS `close_notify`.
pub type QuicStream = tokio::io::Join<quinn::RecvStream, quinn::SendStream>;

/// Joins the two halves of a bidirectional stream.
pub fn stream(send: quinn::SendStream, recv: quinn::RecvStream) -> QuicStream {
    tokio::io::join(recv, send)
}

/// Limits of one QUIC connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicLimits {
    /// Bidirectional streams (tunnels) the peer may have open at once.
    pub max_streams: u32,
    /// Bytes in flight per stream before the sender waits (receive window).
    pub stream_window: u32,
    /// Bytes in flight per connection, all streams together.
    pub connection_window: u32,
    /// Bytes of received datagrams buffered before old ones are dropped.
    pub datagram_buffer: u32,
    /// Close the connection after this long without any packet from the peer.
    pub idle_timeout: Duration,
    /// Send a keep-alive after this long without sending, so NATs keep the path
    /// open and the idle timeout does not fire while tunnels are merely quiet.
    pub keep_alive: Option<Duration>,
}

/// The longest keep-alive interval of an exposing client's connection.
pub const EXPOSE_KEEP_ALIVE: Duration = Duration::from_secs(2);

/// Streams a client may open at once when its connection starts; the server
/// raises the limit as they are used ([`StreamWindow`]), up to
/// [`QuicLimits::max_streams`]. quinn sets up state for every stream the peer
/// may open as soon as it grants them (two hash-map entries each), so a limit
/// of thousands granted up front would cost every connection hundreds of KiB
/// and a millisecond of CPU, used or not.
pub const INITIAL_STREAMS: u32 = 32;

/// How many streams a client may open at once on one connection: it starts at
/// [`INITIAL_STREAMS`] (or the maximum, if lower) and doubles whenever three
/// quarters are in use, up to the maximum. A client that opens more at once
/// than granted waits a round trip for the next grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamWindow {
    granted: u32,
}

impl StreamWindow {
    /// The window of a new connection whose limit is `max`.
    pub fn new(max: u32) -> Self {
        StreamWindow {
            granted: max.min(INITIAL_STREAMS),
        }
    }

    /// What the client may open at once now.
    pub fn granted(&self) -> u32 {
        self.granted
    }

    /// With `open` streams in use: the larger limit to grant, if it is time
    /// to grow (never past `max`, which may have changed since the start).
    pub fn grow(&mut self, open: usize, max: u32) -> Option<u32> {
        let open = u64::try_from(open).unwrap_or(u64::MAX);
        if self.granted >= max || open.saturating_mul(4) < u64::from(self.granted) * 3 {
            return None;
        }
        self.granted = self.granted.saturating_mul(2).min(max);
        Some(self.granted)
    }
}

impl Default for QuicLimits {
    fn default() -> Self {
        QuicLimits {
            max_streams: 256,
            stream_window: 1024 * 1024,
            connection_window: 8 * 1024 * 1024,
            datagram_buffer: 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            keep_alive: Some(Duration::from_secs(15)),
        }
    }
}

impl QuicLimits {
    /// The server's quinn transport configuration for these limits: a new
    /// connection may open [`StreamWindow::new`]'s streams at once (the server
    /// grants more as they are used). No unidirectional streams: tp uses only
    /// bidirectional ones.
    pub fn transport_config(&self) -> TransportConfig {
        let mut t = TransportConfig::default();
        let streams = StreamWindow::new(self.max_streams).granted();
        t.max_concurrent_bidi_streams(VarInt::from_u32(streams))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .stream_receive_window(VarInt::from_u32(self.stream_window))
            .receive_window(VarInt::from_u32(self.connection_window))
            .send_window(u64::from(self.connection_window))
            .datagram_receive_buffer_size(Some(self.datagram_buffer as usize))
            .datagram_send_buffer_size(self.datagram_buffer as usize)
            .keep_alive_interval(self.keep_alive)
            // A duration of at most 24 hours always fits a QUIC idle timeout.
            .max_idle_timeout(IdleTimeout::try_from(self.idle_timeout).ok());
        t
    }

    /// The client's transport configuration: the same windows, keep-alive and
    /// idle timeout, but the server may open no stream at all. Only clients
    /// open tunnels' streams, so nothing on the client would accept one.
    pub fn client_transport_config(&self) -> TransportConfig {
        let mut t = self.transport_config();
        t.max_concurrent_bidi_streams(VarInt::from_u32(0))
            .max_concurrent_uni_streams(VarInt::from_u32(0));
        t
    }

    /// The transport configuration of a client that exposes a service
    /// (`listen`): the server opens one bidirectional stream per incoming
    /// connection, so the client grants it `max_streams` of them at once (a
    /// further one waits for a free one). Still no unidirectional streams.
    ///
    /// Its keep-alive is at most [`EXPOSE_KEEP_ALIVE`]: an exposing client only
    /// waits, and a server that restarted tells it so (a stateless reset) only
    /// when a packet arrives; the ping makes that within seconds.
    pub fn expose_transport_config(&self) -> TransportConfig {
        let mut t = self.transport_config();
        let keep_alive = self
            .keep_alive
            .map_or(EXPOSE_KEEP_ALIVE, |k| k.min(EXPOSE_KEEP_ALIVE));
        t.keep_alive_interval(Some(keep_alive))
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_streams));
        t
    }
}

/// A QUIC client configuration from the tp client's TLS configuration (see
/// [`crate::tls::client_config`]: TLS 1.3, ALPN `tp/1`, no resumption, no 0-RTT)
/// and [`QuicLimits::client_transport_config`] (`max_streams` does not apply:
/// the server may open no stream).
pub fn client_config(
    tls: rustls::ClientConfig,
    limits: &QuicLimits,
) -> Result<quinn::ClientConfig, NoInitialCipherSuite> {
    let crypto = QuicClientConfig::try_from(Arc::new(tls))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(limits.client_transport_config()));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_window_doubles_at_three_quarters_up_to_the_maximum() {
        let mut w = StreamWindow::new(300);
        assert_eq!(w.granted(), INITIAL_STREAMS);
        assert_eq!(w.grow(23, 300), None, "under three quarters of 32");
        assert_eq!(w.grow(24, 300), Some(64));
        assert_eq!(w.grow(47, 300), None);
        assert_eq!(w.grow(48, 300), Some(128));
        assert_eq!(w.grow(96, 300), Some(256));
        assert_eq!(w.grow(192, 300), Some(300), "capped at the maximum");
        assert_eq!(w.grow(300, 300), None, "nothing past the maximum");
        assert_eq!(
            w.grow(300, 1000),
            Some(600),
            "a raised maximum lets it grow on"
        );

        let small = StreamWindow::new(2);
        assert_eq!(small.granted(), 2, "a maximum under the start is the start");
    }

    #[test]
    fn default_limits_make_a_transport_config() {
        let limits = QuicLimits::default();
        // Building must not panic for the defaults or for extreme values.
        let _ = limits.transport_config();
        let _ = QuicLimits {
            max_streams: u32::MAX,
            stream_window: u32::MAX,
            connection_window: u32::MAX,
            datagram_buffer: 0,
            idle_timeout: Duration::from_secs(86_400),
            keep_alive: None,
        }
        .transport_config();
    }

    /// Every limit, set to a value no default has, shows in quinn's transport
    /// configuration (its `Debug` is the only view quinn gives of it).
    #[test]
    fn every_limit_reaches_the_transport_config() {
        let limits = QuicLimits {
            max_streams: 77,
            stream_window: 123_456,
            connection_window: 2_345_678,
            datagram_buffer: 34_567,
            idle_timeout: Duration::from_millis(4_321),
            keep_alive: Some(Duration::from_millis(1_234)),
        };
        let config = format!("{:?}", limits.transport_config());
        for field in [
            // 77 is reached by growing (StreamWindow); a connection starts at 32.
            "max_concurrent_bidi_streams: 32,",
            "max_concurrent_uni_streams: 0,",
            "stream_receive_window: 123456,",
            "receive_window: 2345678,",
            "send_window: 2345678,",
            "datagram_receive_buffer_size: Some(34567),",
            "datagram_send_buffer_size: 34567,",
            "keep_alive_interval: Some(1.234s),",
            "max_idle_timeout: Some(4321),",
        ] {
            assert!(config.contains(field), "{field:?} not in {config}");
        }
        let quiet = QuicLimits {
            keep_alive: None,
            ..limits
        };
        let config = format!("{:?}", quiet.transport_config());
        assert!(config.contains("keep_alive_interval: None,"), "{config}");
    }

    #[test]
    fn the_client_lets_the_server_open_no_stream() {
        let limits = QuicLimits::default();
        let server = format!("{:?}", limits.transport_config());
        let client = format!("{:?}", limits.client_transport_config());
        assert!(
            server.contains("max_concurrent_bidi_streams: 32"),
            "{server}"
        );
        assert!(
            client.contains("max_concurrent_bidi_streams: 0"),
            "{client}"
        );
        assert!(client.contains("max_concurrent_uni_streams: 0"), "{client}");
        // Everything else is the same.
        assert_eq!(
            client.replace(
                "max_concurrent_bidi_streams: 0",
                "max_concurrent_bidi_streams: 32"
            ),
            server
        );
    }

    #[test]
    fn an_exposing_client_lets_the_server_open_streams() {
        let limits = QuicLimits {
            max_streams: 64,
            ..QuicLimits::default()
        };
        let expose = format!("{:?}", limits.expose_transport_config());
        let client = format!("{:?}", limits.client_transport_config());
        assert!(
            expose.contains("max_concurrent_bidi_streams: 64"),
            "{expose}"
        );
        assert!(expose.contains("max_concurrent_uni_streams: 0"), "{expose}");
        // Only the stream grant and the keep-alive differ from an ordinary client's.
        assert!(expose.contains("keep_alive_interval: Some(2s)"), "{expose}");
        assert!(
            client.contains("keep_alive_interval: Some(15s)"),
            "{client}"
        );
        assert_eq!(
            expose
                .replace(
                    "max_concurrent_bidi_streams: 64",
                    "max_concurrent_bidi_streams: 0"
                )
                .replace(
                    "keep_alive_interval: Some(2s)",
                    "keep_alive_interval: Some(15s)"
                ),
            client
        );
    }
}
