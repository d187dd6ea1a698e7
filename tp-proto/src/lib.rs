//! The tp wire protocol, sans-IO.
//!
//! A tunnel starts with the client's *hello*: one JSON object on one line, at most
//! [`MAX_LINE_LEN`] bytes including the `\n`. The server answers with one JSON line
//! (an [`Answer`]), then raw bytes flow both ways. `docs/protocol.md` is the contract;
//! this crate is its executable form.
//!
//! This crate performs no IO, reads no clock and spawns nothing. Decoders take a
//! [`bytes::BytesMut`] and say explicitly when they need more bytes (`Ok(None)`);
//! encoders cannot fail.

mod answer;
mod codec;
mod event;
mod hello;
mod host;
pub mod udp;

pub use answer::{Answer, ErrorCode};
pub use codec::{DecodeError, decode_answer, decode_hello, encode_answer, encode_hello};
pub use event::{Event, Incoming, decode_event, encode_event};
pub use hello::{Accept, Connect, ConnectTarget, Hello, Listen, ListenKind, Proto};
pub use host::{Host, HostError};

/// The ALPN protocol id of tp version 1, offered by clients and required by the server.
pub const ALPN_TP_V1: &[u8] = b"tp/1";

/// The ALPN ids a stealth-mode client offers instead of [`ALPN_TP_V1`]: a
/// browser's, so that nothing in the clear tells it from one
/// (`docs/stealth.md`).
pub const ALPN_STEALTH: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The ALPN protocol id of the end-to-end TLS that a caller and an exposing client
/// run inside a service tunnel (`docs/protocol.md`, reverse tunnels).
pub const ALPN_E2E_V1: &[u8] = b"tp-e2e/1";

/// The protocol version carried in every hello and answer as `"v"`.
pub const PROTOCOL_VERSION: u64 = 1;

/// The longest hello or answer line, in bytes, including its terminating `\n`.
pub const MAX_LINE_LEN: usize = 8 * 1024;
