//! A connection to one of a route's own listeners (`[[terminate]] listen`, such
//! as DNS over TLS on 853): no ClientHello routing, just the route's TLS
//! handshake, under the same handshake deadline and per-source slots as the
//! main port, then the route ([`super::serve`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tp_net::read_ahead::ReadAhead;
use tracing::debug;

use crate::server::{RunContext, Shared};
use crate::slots::HandshakeSlot;

/// Which listener accepted a connection: the route at `index` when it was
/// bound, listening on `configured` (as written, port 0 included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoutePort {
    pub(crate) index: usize,
    pub(crate) configured: SocketAddr,
}

impl RoutePort {
    /// The index of the route that listens on this port in `shared`: the same
    /// route unless a reload moved or removed it (listeners change only on
    /// restart).
    pub(crate) fn route_in(&self, shared: &Shared) -> Option<usize> {
        let listens = |i: &usize| shared.terminate[*i].listen.contains(&self.configured);
        Some(self.index)
            .filter(|i| *i < shared.terminate.len() && listens(i))
            .or_else(|| (0..shared.terminate.len()).find(listens))
    }
}

/// Serves one connection accepted on `port` to its end. `slot` is held until
/// the handshake ends.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: HandshakeSlot,
    ctx: RunContext,
    port: RoutePort,
) {
    let _ = tcp.set_nodelay(true);
    let Some(i) = port.route_in(&shared) else {
        debug!("connection closed: no route listens here since the last reload");
        return;
    };
    let local = tcp.local_addr().unwrap_or(port.configured);
    let accept = TlsAcceptor::from(shared.terminate_tls[i].clone()).accept(ReadAhead::new(tcp));
    let tls = match tokio::time::timeout(shared.limits.handshake_timeout, accept).await {
        Err(_) => {
            debug!(timeout = ?shared.limits.handshake_timeout, "TLS handshake refused: timed out");
            return;
        }
        Ok(Err(e)) => {
            match crate::conn::tls_error(&e) {
                Some(reason) => debug!("TLS handshake refused: {reason}"),
                None => debug!(error = %e, "TLS handshake refused: connection ended"),
            }
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    drop(slot);
    let Some(_other) = crate::conn::other_slot(&ctx, peer) else {
        return;
    };
    super::serve(&shared, &shared.terminate[i], tls, peer, local).await;
}
