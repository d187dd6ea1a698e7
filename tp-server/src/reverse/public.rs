//! Public mode: plain TCP connections to a port the server opened for an exposing
//! client, each relayed to that client. Each counts as a tunnel of the exposing
//! identity (`max_tunnels_per_identity`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tp_proto::{Answer, Incoming};
use tracing::{Instrument, debug, info, info_span};

use super::reach;
use super::registry::{Key, Offer, session_id};
use crate::audit;
use crate::server::Shared;
use crate::session::TunnelStream;
use crate::tunnel::splice::{Ended, splice};

/// One accepted public connection and whom it is for.
pub(crate) struct PublicConn {
    pub(crate) tcp: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) to: SocketAddr,
    pub(crate) key: Key,
    pub(crate) owner: String,
    pub(crate) offers: mpsc::Sender<Offer>,
}

/// Relays one public connection to the exposing client, to its end.
pub(crate) async fn serve(shared: Arc<Shared>, conn: PublicConn) {
    let PublicConn {
        mut tcp,
        peer,
        to,
        key,
        owner,
        offers,
    } = conn;
    let span = info_span!("public", port = to.port(), peer = %peer, exposer = %owner);
    async move {
        let _ = tcp.set_nodelay(true);
        let Some(_slot) = shared.tunnels.try_take(owner.clone()) else {
            info!(
                max = shared.tunnels.max(),
                "public connection refused: the exposing identity has too many tunnels open"
            );
            tcp.abort();
            return;
        };
        let session = session_id();
        audit::public_incoming(&key, &owner, peer, &session);
        let incoming = Incoming {
            session,
            from: None,
            groups: Vec::new(),
            peer,
            to: Some(to),
        };
        let attached = match reach(&offers, incoming, shared.limits.connect_timeout, &key).await {
            Ok(attached) => attached,
            Err(Answer::Err { message, .. }) => {
                info!("public connection closed: {message}");
                tcp.abort();
                return;
            }
            Err(Answer::Ok) => return,
        };
        let mut exposer = attached.stream;
        if !attached.early.is_empty() && tcp.write_all(&attached.early).await.is_err() {
            debug!("public client went away before the first bytes");
            exposer.abort();
            return;
        }
        let ended = splice(
            &shared,
            &mut tcp,
            &mut exposer,
            BytesMut::new(),
            "exposing client",
        )
        .await;
        if ended == Ended::Failed {
            exposer.abort();
        }
        drop(attached.done);
    }
    .instrument(span)
    .await
}
