//! Who may use a route: anyone, unless the route has `client_cert = "required"`;
//! then only the identity of a verified client certificate (the handshake
//! verified it against the client CAs and the revocation list, as for tunnels)
//! that the policy grants the route (`routes = [NAME]`). Each such decision is
//! one audit event.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tp_net::read_ahead::ReadAhead;
use tracing::Span;

use super::Route;
use crate::server::Shared;
use crate::{audit, session};

/// How long a refused client gets to take the TLS close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Whether the client of `conn` may use `route` (logged when not).
pub(crate) fn admits(shared: &Shared, route: &Route, conn: &rustls::ServerConnection) -> bool {
    if !route.client_cert {
        return true;
    }
    // Config: a route with `client_cert` has a name.
    let Some(name) = &route.name else {
        return false;
    };
    // The handshake demanded and verified the chain; its leaf is the identity.
    let Some(who) = session::identity(conn.peer_certificates()) else {
        return false;
    };
    Span::current().record("id", tracing::field::display(&who));
    let decision = shared.policy.decide_route(&who, name);
    audit::route_decision(&who, name, &decision);
    decision.is_allow()
}

/// Ends a refused connection with a TLS close, nothing forwarded.
pub(crate) async fn close(mut client: TlsStream<ReadAhead<TcpStream>>) {
    let _ = tokio::time::timeout(CLOSE_GRACE, client.shutdown()).await;
}
