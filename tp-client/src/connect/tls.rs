//! TLS over TCP: dial the server's addresses (racing them 250 ms apart), TLS 1.3 with the client
//! certificate, check ALPN `tp/1` (in stealth mode, whatever the website
//! chose). One connection carries one tunnel.

use std::io;

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tp_net::message::ReadMessageError;
use tp_net::read_ahead::ReadAhead;
use tp_proto::ALPN_TP_V1;
use tracing::debug;

use super::resolve::Resolver;
use super::{ATTEMPT_DELAY, ConnectError};
use crate::addr::ServerAddr;
use crate::tls_error::{describe, is_tls_error};

/// Which ALPN outcome of the handshake is a tp server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alpn {
    /// `tp/1`, selected.
    Tp,
    /// Stealth mode: the website's choice among a browser's ids, or none.
    Any,
}

/// Dials the server and completes the TLS handshake before `deadline`.
pub(super) async fn connect(
    tls: &TlsConnector,
    server_name: &ServerName<'static>,
    resolver: &Resolver<'_>,
    deadline: Instant,
    alpn: Alpn,
    timed_out: impl Fn(&'static str) -> ConnectError,
) -> Result<TlsStream<ReadAhead<TcpStream>>, ConnectError> {
    let server = resolver.server();
    let tcp = timeout_at(deadline, dial(resolver))
        .await
        .map_err(|_| timed_out("connecting to"))??;
    // Under rustls, which reads a TLS record at a time: see `ReadAhead`.
    let tcp = ReadAhead::new(tcp);
    let stream = timeout_at(deadline, tls.connect(server_name.clone(), tcp))
        .await
        .map_err(|_| timed_out("in the TLS handshake with"))?
        .map_err(|e| handshake_error(server, &e))?;
    if alpn == Alpn::Tp && stream.get_ref().1.alpn_protocol() != Some(ALPN_TP_V1) {
        return Err(ConnectError::NoAlpn {
            server: server.clone(),
        });
    }
    debug!(%server, "TLS established");
    Ok(stream)
}

/// Resolves the server and connects to its addresses: the first at once, then,
/// every [`ATTEMPT_DELAY`] without a connection, the next one too (Happy
/// Eyeballs, RFC 8305); a failed address hands over to the next at once. The
/// first connection wins; the others are dropped.
async fn dial(resolver: &Resolver<'_>) -> Result<TcpStream, ConnectError> {
    let addrs = resolver.addrs().await?;
    let mut pending = addrs.iter().copied();
    let mut attempts = tokio::task::JoinSet::new();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "name resolved to no address");
    let mut next_at = Instant::now();
    loop {
        if Instant::now() >= next_at
            && let Some(addr) = pending.next()
        {
            attempts.spawn(async move { (addr, TcpStream::connect(addr).await) });
            next_at = Instant::now() + ATTEMPT_DELAY;
        }
        if attempts.is_empty() {
            return Err(ConnectError::Connect {
                server: resolver.server().clone(),
                source: last,
            });
        }
        let more = pending.len() > 0;
        let finished = tokio::select! {
            finished = attempts.join_next() => finished,
            () = sleep_until(next_at), if more => continue,
        };
        let Some(Ok((addr, result))) = finished else {
            continue;
        };
        match result {
            Ok(tcp) => {
                debug!(server = %resolver.server(), %addr, "TCP connected");
                // Hellos, answers and interactive keystrokes are small writes.
                if let Err(e) = tcp.set_nodelay(true) {
                    debug!("set_nodelay failed: {e}");
                }
                return Ok(tcp);
            }
            Err(e) => {
                debug!(%addr, "TCP connect failed: {e}");
                last = e;
                next_at = Instant::now();
            }
        }
    }
}

fn handshake_error(server: &ServerAddr, e: &io::Error) -> ConnectError {
    ConnectError::Handshake {
        server: server.clone(),
        reason: describe(e),
    }
}

/// Why the answer could not be read over TLS. In TLS 1.3 the server checks our
/// certificate after our side of the handshake is done, so its refusal arrives
/// as an alert on the first read.
pub(super) fn answer_error(server: &ServerAddr, e: ReadMessageError) -> ConnectError {
    match e {
        ReadMessageError::Io(io) if is_tls_error(&io) => handshake_error(server, &io),
        // A TCP close without close_notify is what tokio-rustls reports as
        // UnexpectedEof.
        ReadMessageError::Eof(0) => ConnectError::Closed {
            server: server.clone(),
        },
        ReadMessageError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            ConnectError::Closed {
                server: server.clone(),
            }
        }
        source => ConnectError::NoAnswer {
            server: server.clone(),
            source,
        },
    }
}

/// Why the hello could not be sent over TLS.
pub(super) fn send_error(server: &ServerAddr, e: io::Error) -> ConnectError {
    if is_tls_error(&e) {
        return handshake_error(server, &e);
    }
    ConnectError::Io {
        server: server.clone(),
        source: e,
    }
}
