//! `tp up HOST:PORT LOCALPORT`: a local listener; every accepted connection gets
//! its own tunnel to the target and is relayed until either side closes.
//!
//! Over QUIC the tunnels are streams of one kept connection, so only the first
//! pays for a handshake; when the connection dies, the next accepted connection
//! dials again (with a backoff after repeated failures). Over TLS/TCP each
//! tunnel is its own connection.
//!
//! A refused or failed tunnel is logged (code and message) and closes only that
//! local connection; the listener keeps running until the shutdown future fires.
//! A relay that fails on either side aborts the tunnel ([`Tunnel::abort`]), so
//! the server never takes a broken tunnel for a complete one.
//!
//! [`Tunnel::abort`]: crate::connect::Tunnel::abort
//!
//! `tp up --udp` is [`udp`]: one UDP tunnel per local source address.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tp_net::relay::{RelayEnd, RelayOptions, Side, relay};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::addr::Target;
use crate::connect::{ConnectError, Connector, FirstBytes, Tunnel};

/// How long to pause accepting after an accept error (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long an ended tunnel waits for the server to acknowledge its end (or
/// its reset) before it is dropped.
const SETTLE_GRACE: Duration = Duration::from_secs(1);

/// Why `tp up` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpError {
    /// The local address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
}

/// Binds `bind:port`, prints the forwarding line to stderr, and serves until
/// `shutdown` completes; then closes the QUIC connection, if there is one.
pub async fn run(
    connector: Arc<Connector>,
    target: Target,
    bind: IpAddr,
    port: u16,
    shutdown: impl Future<Output = ()>,
) -> Result<(), UpError> {
    let addr = SocketAddr::new(bind, port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| UpError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| UpError::Bind { addr, source })?;
    info!("listening on {local}, forwarding to {target}");
    // Always shown, whatever the log level: it tells the user the chosen port.
    eprintln!("tp up: forwarding {local} -> {target}");
    serve(listener, connector.clone(), target, shutdown).await;
    connector.close().await;
    Ok(())
}

/// Accepts on `listener` until `shutdown` completes, one tunnel per connection.
/// Connections still open at shutdown are dropped.
pub async fn serve(
    listener: TcpListener,
    connector: Arc<Connector>,
    target: Target,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => {
                info!("stopping");
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let span = info_span!("conn", peer.addr = %peer);
                    let task = forward(stream, peer, connector.clone(), target.clone());
                    tokio::spawn(task.instrument(span));
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// One accepted connection: open a tunnel, relay, log how it ended.
async fn forward(stream: TcpStream, peer: SocketAddr, connector: Arc<Connector>, target: Target) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!("set_nodelay failed: {e}");
    }
    // What the local client has sent by the time the hello goes out travels
    // with it: its first request does not wait for the answer.
    let mut first = FirstBytes::from(&stream);
    // Boxed: opening (dial, handshake, hello) takes a larger future than the
    // relay, and would otherwise size this task for the tunnel's whole life.
    let mut link = match Box::pin(connector.open_link_with(&target, &mut first)).await {
        Ok(link) => link,
        Err(e @ ConnectError::Local(_)) => {
            debug!(%peer, "no tunnel to {target}: {e}");
            return;
        }
        Err(e @ ConnectError::Refused { .. }) => {
            warn!(%peer, "tunnel to {target} refused: {e}");
            return;
        }
        Err(e) => {
            warn!(%peer, "tunnel to {target} failed: {e}");
            return;
        }
    };
    debug!(%target, transport = %link.via(), "tunnel open");
    let sent_first = first.len() as u64;
    drop(first);
    let options = RelayOptions {
        write_offset_b: link.write_offset(),
        ..RelayOptions::default()
    };
    let (stats, end) = relay(stream, &mut link, options).await;
    let (sent, received) = (sent_first + stats.a_to_b, stats.b_to_a);
    let failed = match end {
        RelayEnd::Closed | RelayEnd::IdleTimeout => None,
        RelayEnd::Error {
            side: Side::A,
            error,
        } => Some(format!("the local connection failed: {error}")),
        RelayEnd::Error {
            side: Side::B,
            error,
        } => Some(format!("the tunnel failed: {error}")),
    };
    debug!(sent, received, "tunnel ended");
    settle(link.into_tunnel(), failed).await;
}

/// Ends a tunnel whose relay is over: held until the server has its end (at
/// most [`SETTLE_GRACE`]), or, if the relay `failed`, aborted (what the
/// server got may be incomplete: it must not see a clean end) and held until
/// the server has the reset.
pub(crate) async fn settle(tunnel: Tunnel, failed: Option<String>) {
    match failed {
        None => {
            // A QUIC connection the dialer gave up on closes as soon as its
            // last tunnel is dropped, and would take the FIN with it.
            if timeout(SETTLE_GRACE, tunnel.delivered()).await.is_err() {
                debug!("the server did not acknowledge the end of the tunnel in time");
            }
        }
        Some(why) => {
            debug!("tunnel aborted: {why}");
            if timeout(SETTLE_GRACE, tunnel.abort().acknowledged())
                .await
                .is_err()
            {
                debug!("the server did not acknowledge the tunnel's reset in time");
            }
        }
    }
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling available: run until killed.
        std::future::pending::<()>().await;
    }
}

pub mod udp;

#[cfg(test)]
mod tests;
