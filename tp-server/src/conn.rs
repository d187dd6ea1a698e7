//! One accepted TCP connection: the ClientHello decides, then the TLS handshake,
//! all under one total deadline. A ClientHello offering ALPN `tp/1` gets the
//! tunnel configuration (client certificate required), then identity from the
//! verified certificate and one tunnel request ([`crate::session`]); any other
//! gets the website's handshake and the website ([`crate::website`]).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::server::Acceptor;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tp_net::read_ahead::ReadAhead;
use tp_proto::ALPN_TP_V1;
use tracing::{Span, debug, info};

use crate::passthrough;
use crate::server::{RunContext, Shared};
use crate::session::{self, Origin};
use crate::slots::{HandshakeSlot, Source};

/// Serves one connection to its end. Never panics on peer input; every outcome is
/// logged: certificate verdicts at info, scanners and dropped connections at debug.
/// `slot` is held until the handshake ends.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: HandshakeSlot,
    ctx: RunContext,
) {
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().unwrap_or(ctx.listen);
    // One deadline for reading the ClientHello and the whole handshake.
    let deadline = tokio::time::Instant::now() + shared.limits.handshake_timeout;
    match tokio::time::timeout_at(deadline, passthrough::route_for(&shared, &tcp)).await {
        Err(_) => {
            debug!(timeout = ?shared.limits.handshake_timeout, "TLS handshake refused: timed out");
            return;
        }
        Ok(Some(route)) => {
            let route = route.clone();
            drop(slot);
            let Some(_other) = other_slot(&ctx, peer) else {
                return;
            };
            return Box::pin(passthrough::serve(&shared, &route, tcp, peer, local)).await;
        }
        Ok(None) => {}
    }
    let handshake = async {
        // Under rustls, which reads a TLS record at a time: see `ReadAhead`.
        let tcp = ReadAhead::new(tcp);
        let start =
            (LazyConfigAcceptor::new(Acceptor::default(), tcp).await).map_err(|e| (None, e))?;
        let hello = start.client_hello();
        let offered: Vec<&[u8]> = hello.alpn().map(Iterator::collect).unwrap_or_default();
        let name = hello.server_name().map(str::to_ascii_lowercase);
        let route = || {
            (shared.terminate.iter())
                .position(|r| r.matches(name.as_deref(), &offered))
                .map(Kind::Terminate)
        };
        let tunnel = offered.contains(&ALPN_TP_V1);
        let kind = match &shared.stealth_tls {
            // A client that cannot speak TLS 1.3 can never open a tunnel, and
            // over TLS 1.2 the certificate request would show in the clear:
            // the plain website.
            Some(_) if shared.stealth.covers(name.as_deref()) && !offers_tls13(&hello) => {
                route().unwrap_or(Kind::Website)
            }
            Some(config) if shared.stealth.covers(name.as_deref()) => {
                route().unwrap_or_else(|| Kind::Stealth(config.clone()))
            }
            _ if tunnel && shared.opens_tunnels => Kind::Tunnel,
            _ => {
                if tunnel {
                    debug!(
                        "tunnel refused: no [tls] client_ca is configured, so no tunnels open here"
                    );
                }
                route().unwrap_or(Kind::Website)
            }
        };
        let config = match &kind {
            Kind::Tunnel => shared.tls.clone(),
            Kind::Terminate(i) => shared.terminate_tls[*i].clone(),
            Kind::Stealth(config) => config.clone(),
            Kind::Website => shared.website_tls.clone(),
        };
        match start.into_stream(config).await {
            // Boxed: the connection state (over 1 KiB) stays in one place for
            // the connection's life, and every later move is a pointer.
            Ok(tls) => Ok((kind, Box::new(tls))),
            Err(e) => Err((Some(kind), e)),
        }
    };
    // Boxed: it ends with the handshake, and would otherwise size the task
    // for the tunnel's whole life.
    let handshake = Box::pin(tokio::time::timeout_at(deadline, handshake));
    let (kind, tls) = match handshake.await {
        Err(_) => {
            debug!(timeout = ?shared.limits.handshake_timeout, "TLS handshake refused: timed out");
            return;
        }
        Ok(Err((kind, e))) => {
            match (kind, tls_error(&e)) {
                // A TLS verdict on a tp client (bad certificate...) is news.
                (Some(Kind::Tunnel), Some(reason)) => info!("TLS handshake refused: {reason}"),
                // Anyone can cause the others (scanners, plain HTTP, old
                // browsers): debug, so they cannot flood the log.
                (_, Some(reason)) => debug!("TLS handshake refused: {reason}"),
                // EOF or reset mid-handshake: port scanners and impatient clients.
                (_, None) => debug!(error = %e, "TLS handshake refused: connection ended"),
            }
            return;
        }
        Ok(Ok(done)) => done,
    };
    drop(slot);
    if !matches!(kind, Kind::Tunnel) {
        let Some(other) = other_slot(&ctx, peer) else {
            return;
        };
        // Each in a box of its own: these larger futures do not size the task
        // of every tunnel, which lives far longer.
        return match kind {
            Kind::Stealth(_) => {
                Box::pin(crate::stealth::serve(&shared, tls, peer, local, ctx, other)).await;
            }
            Kind::Terminate(i) => {
                let route = &shared.terminate[i];
                Box::pin(crate::terminate::serve(&shared, route, *tls, peer, local)).await;
            }
            Kind::Tunnel | Kind::Website => {
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                debug!(alpn = ?alpn.as_deref().map(String::from_utf8_lossy), "website connection");
                Box::pin(crate::website::serve(
                    &shared,
                    tls,
                    alpn.as_deref(),
                    peer,
                    local,
                ))
                .await;
            }
        };
    }

    let (_, tls_conn) = tls.get_ref();
    if tls_conn.alpn_protocol() != Some(ALPN_TP_V1) {
        debug!("connection refused: client did not negotiate ALPN tp/1");
        return;
    }
    let Some(who) = session::identity(tls_conn.peer_certificates()) else {
        return;
    };
    Span::current().record("id", tracing::field::display(&who));
    debug!("TLS established");

    let chain = tls_conn
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    session::serve(&shared, tls, &who, Origin::tls(peer, chain, ctx)).await;
}

/// A place among the connections that are not tunnels from `peer`'s source;
/// `None` (logged) at `[website] max_connections_per_source`.
pub(crate) fn other_slot(ctx: &RunContext, peer: SocketAddr) -> Option<HandshakeSlot> {
    let slot = ctx.others_per_source.try_take(Source::of(peer.ip()));
    if slot.is_none() {
        debug!(
            "connection closed: too many open connections that are not tunnels from this source"
        );
    }
    slot
}

/// Whether a ClientHello offers a TLS 1.3 cipher suite (0x13XX).
fn offers_tls13(hello: &rustls::server::ClientHello<'_>) -> bool {
    hello
        .cipher_suites()
        .iter()
        .any(|suite| u16::from(*suite) >> 8 == 0x13)
}

/// What a ClientHello asked for.
#[derive(Debug, Clone)]
enum Kind {
    /// ALPN `tp/1`: a tp client.
    Tunnel,
    /// For the `[[terminate]]` route at this index (by SNI and ALPN).
    Terminate(usize),
    /// A stealth name ([`crate::stealth`]), with its TLS configuration:
    /// the website, or a tunnel for a verified certificate and a tp hello.
    Stealth(Arc<rustls::ServerConfig>),
    /// Anyone else.
    Website,
}

/// The rustls error inside a failed handshake, if the failure was a TLS verdict
/// rather than the connection dropping.
pub(crate) fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}
