//! One accepted TCP connection: TLS handshake under a total deadline, identity from
//! the verified certificate, then one tunnel request ([`crate::session`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tp_proto::ALPN_TP_V1;
use tracing::{Span, debug, info};

use crate::server::{RunContext, Shared};
use crate::session::{self, Origin};
use crate::slots::HandshakeSlot;

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
    let handshake =
        tokio::time::timeout(shared.limits.handshake_timeout, shared.acceptor.accept(tcp));
    let tls = match handshake.await {
        Err(_) => {
            debug!(timeout = ?shared.limits.handshake_timeout, "TLS handshake refused: timed out");
            return;
        }
        Ok(Err(e)) => {
            match tls_error(&e) {
                // A TLS-level verdict (bad certificate, no shared version...) is news.
                Some(reason) => info!("TLS handshake refused: {reason}"),
                // EOF or reset mid-handshake: port scanners and impatient clients.
                None => debug!(error = %e, "TLS handshake refused: connection ended"),
            }
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    drop(slot);

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
    let origin = Origin {
        peer,
        quic: None,
        streams: None,
        chain,
        ctx,
    };
    session::serve(&shared, tls, &who, origin).await;
}

/// The rustls error inside a failed handshake, if the failure was a TLS verdict
/// rather than the connection dropping.
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}
