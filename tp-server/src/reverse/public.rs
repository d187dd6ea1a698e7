//! Public mode: plain TCP connections to a port the server opened for an exposing
//! client, each relayed to that client. Strangers make them, so they have their
//! own bounds per registration (`[reverse] max_public_connections`, and
//! `max_public_connections_per_source` per IPv4 address or IPv6 /64) instead of
//! using up the exposing identity's tunnels.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tp_proto::{Answer, Incoming};
use tracing::{Instrument, debug, info, info_span};

use super::reach;
use super::registry::{Key, Offer, session_id};
use crate::audit;
use crate::config::ReverseSettings;
use crate::server::Shared;
use crate::session::TunnelStream;
use crate::slots::{KeyedSlots, Slot, Source};
use crate::tunnel::splice::{Ended, splice};

/// The connection limits of one public port.
pub(crate) struct PublicSlots {
    total: Arc<Semaphore>,
    per_source: Arc<KeyedSlots<Source>>,
}

/// One public connection's place within [`PublicSlots`], held until it ends.
pub(crate) struct PublicSlot {
    _total: OwnedSemaphorePermit,
    _source: Slot<Source>,
}

impl PublicSlots {
    pub(crate) fn new(settings: &ReverseSettings) -> PublicSlots {
        PublicSlots {
            total: Arc::new(Semaphore::new(settings.max_public_connections.get())),
            per_source: KeyedSlots::new(settings.max_public_connections_per_source),
        }
    }

    /// A place for a connection from `peer`, or `None` at either limit.
    pub(crate) fn try_take(&self, peer: SocketAddr) -> Option<PublicSlot> {
        let total = self.total.clone().try_acquire_owned().ok()?;
        let source = self.per_source.try_take(Source::of(peer.ip()))?;
        Some(PublicSlot {
            _total: total,
            _source: source,
        })
    }
}

/// One accepted public connection and whom it is for.
pub(crate) struct PublicConn {
    pub(crate) tcp: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) to: SocketAddr,
    pub(crate) key: Key,
    pub(crate) owner: String,
    pub(crate) offers: mpsc::Sender<Offer>,
    pub(crate) slots: PublicSlot,
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
        slots,
    } = conn;
    let span = info_span!("public", port = to.port(), peer = %peer, exposer = %owner);
    async move {
        let _ = tcp.set_nodelay(true);
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
                drop(slots);
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
        let idle = shared.limits.idle_timeout;
        let ended = splice(
            &mut tcp,
            &mut exposer,
            BytesMut::new(),
            "exposing client",
            idle,
            slots,
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
