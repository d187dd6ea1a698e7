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
    /// The quinn transport configuration for these limits. No unidirectional
    /// streams: tp uses only bidirectional ones.
    pub fn transport_config(&self) -> TransportConfig {
        let mut t = TransportConfig::default();
        t.max_concurrent_bidi_streams(VarInt::from_u32(self.max_streams))
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
        t.keep_alive_interval(Some(keep_alive));
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
            "max_concurrent_bidi_streams: 77,",
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
            server.contains("max_concurrent_bidi_streams: 256"),
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
                "max_concurrent_bidi_streams: 256"
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
