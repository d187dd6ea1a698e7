//! One incoming connection of a registration: take it (a QUIC stream the
//! server opened, headed by its `incoming` line, or over TLS/TCP a new
//! connection with `accept`), then relay it to the local service: for a
//! service after the end-to-end TLS handshake, for a public port behind an
//! optional PROXY protocol v2 header.
//!
//! A failure here ends this connection only: the tunnel is aborted (QUIC
//! reset, or TLS dropped without `close_notify`), and the registration goes
//! on. A caller refused by `--allow` (or by the end-to-end handshake) gets
//! its alert, and the tunnel is closed in order so that the alert arrives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use quinn::{Connection, RecvStream, SendStream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tp_net::message::read_message;
use tp_net::relay::{RelayEnd, RelayOptions, Side, TLS_WRITE_OFFSET, relay};
use tp_proto::{Accept, Event, Hello, Host, Incoming, decode_event};
use tracing::{debug, info, warn};

use super::{ExposeOptions, Mode};
use crate::connect::{Connector, FirstBytes, Tunnel};
use crate::e2e::AcceptError;
use crate::transport::Transport;
use crate::up::settle;

/// How long the head line of a stream the server opened may take.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the end-to-end handshake with a caller may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused caller's tunnel waits for its alert to be delivered.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// What every incoming connection of `tp expose` needs.
#[derive(Debug)]
pub(super) struct Serve {
    connector: Arc<Connector>,
    local_host: Host,
    local_port: u16,
    mode: Mode,
}

impl Serve {
    pub(super) fn new(connector: Arc<Connector>, options: &ExposeOptions) -> Self {
        Serve {
            connector,
            local_host: options.local_host.clone(),
            local_port: options.local_port,
            mode: options.mode.clone(),
        }
    }

    /// QUIC: a stream the server opened on `conn`; its first line is the
    /// `incoming` event.
    pub(super) async fn stream(
        self: Arc<Self>,
        conn: Connection,
        send: SendStream,
        recv: RecvStream,
    ) {
        let mut tunnel = Tunnel::quic(tp_net::quic::stream(send, recv), conn, BytesMut::new());
        let mut buf = BytesMut::new();
        let head = timeout(
            HEAD_TIMEOUT,
            read_message(&mut tunnel, &mut buf, decode_event),
        )
        .await;
        let incoming = match head {
            Ok(Ok(Event::Incoming(incoming))) => incoming,
            Ok(Ok(other)) => {
                debug!("a stream from the server began with {other:?}, not incoming; aborting it");
                return settle(tunnel, Some("no incoming line".into())).await;
            }
            Ok(Err(e)) => return settle(tunnel, Some(format!("no incoming line: {e}"))).await,
            Err(_) => return settle(tunnel, Some("no incoming line in time".into())).await,
        };
        tunnel.set_early(buf);
        self.serve(tunnel, incoming).await;
    }

    /// TLS/TCP: an `incoming` event; attach a new connection with `accept`.
    pub(super) async fn accept(self: Arc<Self>, incoming: Incoming) {
        let hello = Hello::Accept(Accept {
            session: incoming.session.clone(),
        });
        match self
            .connector
            .open_over(&hello, Transport::Tcp, &mut FirstBytes::none())
            .await
        {
            Ok(tunnel) => self.serve(tunnel, incoming).await,
            Err(e) => warn!(peer = %incoming.peer, "cannot take an incoming connection: {e}"),
        }
    }

    async fn serve(&self, tunnel: Tunnel, incoming: Incoming) {
        match &self.mode {
            Mode::Service { allow, .. } => {
                let Some(e2e) = self.connector.e2e() else {
                    return settle(tunnel, Some("no end-to-end TLS settings".into())).await;
                };
                let accepting = e2e.accept(
                    tunnel,
                    allow.clone(),
                    incoming.from.clone(),
                    incoming.groups.clone(),
                );
                // On timeout the tunnel is dropped, which aborts it.
                let Ok(accepted) = timeout(HANDSHAKE_TIMEOUT, accepting).await else {
                    warn!(peer = %incoming.peer, "end-to-end TLS handshake timed out");
                    return;
                };
                let (mut tls, identity) = match accepted {
                    Ok(accepted) => accepted,
                    Err((e, tunnel)) => {
                        match &e {
                            AcceptError::NotAllowed { identity } => warn!(
                                caller = identity.as_str(),
                                peer = %incoming.peer,
                                "refused {identity}: not allowed (--allow)"
                            ),
                            _ => warn!(
                                from = incoming.from.as_deref(),
                                peer = %incoming.peer,
                                "refused a caller: {e}"
                            ),
                        }
                        return close_after_alert(tunnel).await;
                    }
                };
                info!(
                    caller = identity.as_str(),
                    peer = %incoming.peer,
                    "accepted {} (verified) from {}",
                    identity.as_str(),
                    incoming.peer
                );
                let Some(local) = self.dial(&incoming).await else {
                    return settle(tls.into_inner().0, Some("the local service failed".into()))
                        .await;
                };
                let options = RelayOptions {
                    write_offset_a: TLS_WRITE_OFFSET,
                    ..RelayOptions::default()
                };
                let (stats, end) = relay(&mut tls, local, options).await;
                debug!(
                    received = stats.a_to_b,
                    sent = stats.b_to_a,
                    "connection ended"
                );
                settle(tls.into_inner().0, failure(end)).await;
            }
            Mode::Public { proxy_protocol, .. } => {
                info!(peer = %incoming.peer, "connection from {}", incoming.peer);
                let Some(mut local) = self.dial(&incoming).await else {
                    return settle(tunnel, Some("the local service failed".into())).await;
                };
                if *proxy_protocol {
                    let header = tp_net::proxy::v2_header(incoming.peer, incoming.to);
                    if let Err(e) = local.write_all(&header).await {
                        warn!("writing the PROXY header to the local service failed: {e}");
                        return settle(tunnel, Some("the local service failed".into())).await;
                    }
                }
                let mut tunnel = tunnel;
                let options = RelayOptions {
                    write_offset_a: tunnel.write_offset(),
                    ..RelayOptions::default()
                };
                let (stats, end) = relay(&mut tunnel, local, options).await;
                debug!(
                    received = stats.a_to_b,
                    sent = stats.b_to_a,
                    "connection ended"
                );
                settle(tunnel, failure(end)).await;
            }
        }
    }

    /// Connects to the local service; a failure is logged.
    async fn dial(&self, incoming: &Incoming) -> Option<TcpStream> {
        let port = self.local_port;
        let dialed = match &self.local_host {
            Host::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, port)).await,
            Host::Name(name) => TcpStream::connect((name.as_str(), port)).await,
        };
        match dialed {
            Ok(stream) => {
                if let Err(e) = stream.set_nodelay(true) {
                    debug!("set_nodelay failed: {e}");
                }
                Some(stream)
            }
            Err(e) => {
                warn!(
                    peer = %incoming.peer,
                    "cannot connect to the local service {}:{port}: {e}; dropping this connection",
                    self.local_host
                );
                None
            }
        }
    }
}

/// Why a relay (A: the tunnel, B: the local service) failed, if it did.
fn failure(end: RelayEnd) -> Option<String> {
    match end {
        RelayEnd::Closed | RelayEnd::IdleTimeout => None,
        RelayEnd::Error {
            side: Side::A,
            error,
        } => Some(format!("the tunnel failed: {error}")),
        RelayEnd::Error {
            side: Side::B,
            error,
        } => Some(format!("the local service failed: {error}")),
    }
}

/// Closes a refused caller's tunnel in order, so the alert already written
/// reaches it rather than being reset away.
async fn close_after_alert(mut tunnel: Tunnel) {
    let closed = async {
        tunnel.flush().await?;
        tunnel.shutdown().await
    };
    if let Ok(Ok(())) = timeout(REFUSAL_GRACE, closed).await {
        let _ = timeout(REFUSAL_GRACE, tunnel.delivered()).await;
    }
}
