//! Why a connector could not be built, and why a tunnel could not be opened.

use std::io;
use std::time::Duration;

use tp_net::message::ReadMessageError;
use tp_net::pem::PemError;
use tp_net::tls::TlsConfigError;
use tp_proto::ErrorCode;

use crate::addr::ServerAddr;
use crate::e2e::{E2eError, E2eSetupError};
use crate::exit;

/// Why the client's certificate, key or CA could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A PEM file could not be read or held nothing usable.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The certificates or key were read but rustls would not use them.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The TLS configuration has no cipher suite QUIC can start with.
    #[error("the TLS configuration cannot be used for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The end-to-end TLS settings (`peer_ca`, our certificate) are not usable.
    #[error(transparent)]
    E2e(#[from] E2eSetupError),
}

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server's name did not resolve.
    #[error("cannot resolve server {server}: {source}")]
    Resolve {
        /// The server.
        server: ServerAddr,
        /// The resolver's error.
        source: io::Error,
    },
    /// No address of the server accepted a TCP connection.
    #[error("cannot connect to server {server}: {source}")]
    Connect {
        /// The server.
        server: ServerAddr,
        /// The error of the last address tried.
        source: io::Error,
    },
    /// A phase did not finish within its deadline.
    #[error("timed out after {after:?} {during} {server}")]
    Timeout {
        /// The server.
        server: ServerAddr,
        /// What was going on, e.g. `"connecting to"`.
        during: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The TLS handshake failed, or the server rejected our certificate (over
    /// TLS/TCP or inside QUIC).
    #[error("TLS handshake with {server} failed: {reason}")]
    Handshake {
        /// The server.
        server: ServerAddr,
        /// What went wrong, with a hint in front of the TLS error.
        reason: String,
    },
    /// The server completed the handshake without selecting ALPN `tp/1`.
    #[error(
        "server {server} did not select ALPN tp/1: it is not a tp server (or --server points elsewhere)"
    )]
    NoAlpn {
        /// The server.
        server: ServerAddr,
    },
    /// The QUIC connection could not be set up or was lost, for a reason other
    /// than TLS (those are [`ConnectError::Handshake`]).
    #[error("QUIC connection to {server} failed: {reason}")]
    Quic {
        /// The server.
        server: ServerAddr,
        /// What went wrong.
        reason: String,
    },
    /// The kept QUIC connection stopped answering after some of this tunnel's
    /// bytes had gone out with its hello or behind it, before the answer
    /// ([`super::FirstBytes`]). They may have reached the server (only
    /// its answers may have been lost), so they are not sent again on a new
    /// connection, where the target could get them twice; the next tunnel
    /// dials a new connection.
    #[error(
        "the kept QUIC connection to {server} stopped answering after {sent} bytes of this \
         tunnel had gone out; not sending them again on a new connection, as they may have \
         arrived (the next connection dials afresh)"
    )]
    Unanswered {
        /// The server.
        server: ServerAddr,
        /// The bytes that went out before the answer.
        sent: usize,
    },
    /// The local connection the tunnel was for failed (it was reset, say)
    /// before the tunnel opened: before the hello went out (no tunnel was
    /// requested), or while it waited for its answer (the tunnel is dropped).
    #[error("the local connection failed before its tunnel opened: {0}")]
    Local(#[source] io::Error),
    /// Sending the hello failed, or sending the tunnel's first bytes behind it
    /// (those the local side wrote while the answer was awaited).
    #[error("sending the hello or the tunnel's first bytes to {server} failed: {source}")]
    Io {
        /// The server.
        server: ServerAddr,
        /// The error.
        source: io::Error,
    },
    /// The server closed the connection (or the tunnel's stream) before
    /// answering. A tp server that refuses our certificate may do this instead
    /// of sending an alert.
    #[error(
        "server {server} closed the connection without answering \
         (did it refuse our client certificate? try -v, and see the server's log)"
    )]
    Closed {
        /// The server.
        server: ServerAddr,
    },
    /// In stealth mode, the server handed the tunnel to its website: it has
    /// no stealth mode for our server name, or did not accept our certificate.
    #[error(
        "server {server} answered as a website, not as tp: stealth mode is not on for \
         this server name there, or it did not accept our client certificate (its log says which)"
    )]
    Website {
        /// The server.
        server: ServerAddr,
    },
    /// The server sent something that is not an answer, or the read failed.
    #[error("no answer from {server}: {source}")]
    NoAnswer {
        /// The server.
        server: ServerAddr,
        /// What was read instead.
        source: ReadMessageError,
    },
    /// The server answered with an error: the tunnel was refused.
    #[error("{code}: {}", one_line(.message))]
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The tunnel to a service opened, but the end-to-end TLS with the
    /// exposing client failed.
    #[error("service {service}: {source}")]
    EndToEnd {
        /// The service.
        service: String,
        /// What failed.
        source: E2eError,
    },
}

impl ConnectError {
    /// The status `tp` exits with for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            ConnectError::Refused { code, .. } => exit::for_answer(code),
            _ => exit::LOCAL,
        }
    }

    /// Whether the server itself answered with this failure (a TLS failure, a
    /// missing ALPN, a refusal), as opposed to not being reached at all. A
    /// failure the server answered would not go away over another transport.
    pub(crate) fn server_answered(&self) -> bool {
        matches!(
            self,
            ConnectError::Handshake { .. }
                | ConnectError::NoAlpn { .. }
                | ConnectError::Website { .. }
                | ConnectError::Refused { .. }
        )
    }

    /// An equal error, for every tunnel that waited on the same failed QUIC
    /// connection attempt (IO errors keep their kind and text).
    pub(crate) fn duplicate(&self) -> ConnectError {
        let io = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            ConnectError::Resolve { server, source } => ConnectError::Resolve {
                server: server.clone(),
                source: io(source),
            },
            ConnectError::Connect { server, source } => ConnectError::Connect {
                server: server.clone(),
                source: io(source),
            },
            ConnectError::Timeout {
                server,
                during,
                after,
            } => ConnectError::Timeout {
                server: server.clone(),
                during,
                after: *after,
            },
            ConnectError::Handshake { server, reason } => ConnectError::Handshake {
                server: server.clone(),
                reason: reason.clone(),
            },
            ConnectError::NoAlpn { server } => ConnectError::NoAlpn {
                server: server.clone(),
            },
            ConnectError::Quic { server, reason } => ConnectError::Quic {
                server: server.clone(),
                reason: reason.clone(),
            },
            ConnectError::Unanswered { server, sent } => ConnectError::Unanswered {
                server: server.clone(),
                sent: *sent,
            },
            ConnectError::Local(source) => ConnectError::Local(io(source)),
            ConnectError::Io { server, source } => ConnectError::Io {
                server: server.clone(),
                source: io(source),
            },
            ConnectError::Closed { server } => ConnectError::Closed {
                server: server.clone(),
            },
            ConnectError::Website { server } => ConnectError::Website {
                server: server.clone(),
            },
            ConnectError::NoAnswer { server, source } => ConnectError::NoAnswer {
                server: server.clone(),
                source: ReadMessageError::Io(io::Error::other(source.to_string())),
            },
            ConnectError::Refused { code, message } => ConnectError::Refused {
                code: code.clone(),
                message: message.clone(),
            },
            ConnectError::EndToEnd { service, source } => ConnectError::EndToEnd {
                service: service.clone(),
                source: source.clone(),
            },
        }
    }
}

pub use tp_net::text::one_line;
