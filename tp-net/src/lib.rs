//! Runtime pieces shared by `tp-server` and the `tp` client.
//!
//! - [`relay`]: the one byte relay, both directions, half-close, idle timeout,
//!   byte counts for the close log line.
//! - [`read_ahead`]: a socket read that takes all it has (up to 64 KiB) under
//!   rustls, which asks for one TLS record per read.
//! - [`duration`]: `"10s"`-style durations used by both configs.
//! - [`message`]: reading one bounded JSON line (hello or answer) from a stream.
//! - [`pem`]: loading certificate chains and keys with errors that name the file.
//! - [`proxy`]: PROXY protocol v2 headers for backends.
//! - [`tls`]: the tp client's rustls configuration (TLS 1.3, ALPN `tp/1`, aws-lc-rs).
//! - [`quic`]: the QUIC transport limits and a bidirectional stream as one duplex value.
//! - [`text`]: a peer's text made safe to print.
//!
//! This crate holds no policy and no protocol rules of its own: those are in
//! `tp-proto` and `policy`.

pub mod duration;
pub mod message;
pub mod pem;
mod pool;
pub mod proxy;
pub mod quic;
pub mod read_ahead;
pub mod relay;
pub mod text;
pub mod tls;

pub use relay::{RelayEnd, RelayOptions, RelayStats, Side, relay};
