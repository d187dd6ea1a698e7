//! One QUIC connection: handshake under a total deadline, identity from the
//! verified certificate, then one tunnel session per bidirectional stream.

use std::sync::Arc;

use policy::Identity;
use quinn::ConnectionError;
use rustls_pki_types::CertificateDer;
use tokio_util::task::TaskTracker;
use tp_proto::ALPN_TP_V1;
use tp_proto::udp::decode_datagram;
use tracing::{Instrument, Span, debug, info, info_span};

use super::{CLOSE_REFUSED, CLOSE_REVOKED, CLOSE_SHUTDOWN};
use crate::server::RunContext;
use crate::session;
use crate::slots::HandshakeSlot;
use crate::tunnel::udp::{DatagramPath, FlowTable};

/// Serves one incoming QUIC connection to its end. `slot` is held until the
/// handshake ends.
pub(super) async fn serve(ctx: RunContext, incoming: quinn::Incoming, slot: HandshakeSlot) {
    let shared = ctx.current();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(e) => {
            debug!(error = %e, "QUIC connection refused before the handshake");
            return;
        }
    };
    let handshake = tokio::time::timeout(shared.limits.handshake_timeout, connecting);
    let conn = match handshake.await {
        Err(_) => {
            debug!(timeout = ?shared.limits.handshake_timeout, "TLS handshake refused: timed out");
            return;
        }
        Ok(Err(ConnectionError::TransportError(e))) => {
            // A TLS verdict (bad certificate, no shared ALPN...) travels as a
            // transport error carrying the TLS alert.
            info!("TLS handshake refused: {e}");
            return;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "TLS handshake refused: connection ended");
            return;
        }
        Ok(Ok(conn)) => conn,
    };
    drop(slot);

    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(ALPN_TP_V1) {
        debug!("connection refused: client did not negotiate ALPN tp/1");
        conn.close(CLOSE_REFUSED, b"ALPN tp/1 required");
        return;
    }
    let chain = peer_chain(&conn);
    let Some(who) = session::identity(chain.as_deref()) else {
        conn.close(CLOSE_REFUSED, b"no usable client identity");
        return;
    };
    Span::current().record("id", tracing::field::display(&who));
    debug!("QUIC established");

    let who = Arc::new(who);
    let flows = FlowTable::default();
    tokio::spawn(route_datagrams(conn.clone(), flows.clone()).in_current_span());
    let streams = TaskTracker::new();
    let chain = chain.as_deref().unwrap_or(&[]);
    let ended = serve_streams(&ctx, &conn, &who, chain, &flows, &streams).await;
    streams.close();
    tokio::select! {
        () = streams.wait() => {}
        () = ctx.force.cancelled() => {
            conn.close(CLOSE_SHUTDOWN, b"server stopped");
            streams.wait().await;
        }
    }
    debug!(reason = %ended, "QUIC connection closed");
}

/// Accepts streams until the connection ends, the drain finishes this
/// connection's tunnels, or the drain deadline passes. Returns why it stopped.
async fn serve_streams(
    ctx: &RunContext,
    conn: &quinn::Connection,
    who: &Arc<Identity>,
    chain: &[CertificateDer<'static>],
    flows: &FlowTable,
    streams: &TaskTracker,
) -> String {
    let mut draining = false;
    loop {
        let accepted = tokio::select! {
            biased;
            () = ctx.force.cancelled() => {
                conn.close(CLOSE_SHUTDOWN, b"server stopped");
                return "drain deadline".into();
            }
            () = ctx.draining.cancelled(), if !draining => {
                draining = true;
                // Closed, the tracker's wait() resolves once its tunnels are done;
                // streams opened meanwhile still run (and are answered `busy`).
                streams.close();
                continue;
            }
            // Once draining, close the connection as soon as its tunnels are done.
            () = streams.wait(), if draining => {
                conn.close(CLOSE_SHUTDOWN, b"server shutting down");
                return "server shutting down".into();
            }
            accepted = conn.accept_bi() => accepted,
        };
        let (send, recv) = match accepted {
            Ok(stream) => stream,
            Err(e) => return closed_reason(&e),
        };
        // Every tunnel uses the configuration current when it opens, and a
        // certificate revoked by a reload ends the connection it is still on.
        let shared = ctx.current();
        if chain.iter().any(|cert| shared.revoked.is_revoked(cert)) {
            info!("QUIC connection closed: the client certificate has been revoked");
            conn.close(CLOSE_REVOKED, b"certificate revoked");
            return "certificate revoked".into();
        }
        let datagrams = DatagramPath {
            conn: conn.clone(),
            flows: flows.clone(),
            flow: quinn::VarInt::from(send.id()).into_inner(),
        };
        let span = info_span!("stream", stream = %send.id());
        let who = who.clone();
        let draining = ctx.draining.clone();
        let force = ctx.force.clone();
        streams.spawn(
            async move {
                let stream = tp_net::quic::stream(send, recv);
                tokio::select! {
                    () = session::serve(&shared, stream, &who, &draining, Some(datagrams)) => {}
                    () = force.cancelled() => debug!("closed by shutdown deadline"),
                }
            }
            .instrument(span),
        );
    }
}

/// Routes the connection's QUIC datagrams to its UDP tunnels until it closes.
async fn route_datagrams(conn: quinn::Connection, flows: FlowTable) {
    while let Ok(datagram) = conn.read_datagram().await {
        match decode_datagram(datagram) {
            Ok((flow, payload)) => {
                if !flows.deliver(flow, payload) {
                    debug!(
                        flow,
                        "QUIC datagram for no open UDP tunnel (or a full queue): dropped"
                    );
                }
            }
            Err(e) => debug!(error = %e, "bad QUIC datagram dropped"),
        }
    }
}

/// The verified certificate chain the client presented.
fn peer_chain(conn: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|chain| *chain)
}

fn closed_reason(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(0) =>
        {
            "closed by the client".into()
        }
        ConnectionError::TimedOut => "idle timeout".into(),
        other => other.to_string(),
    }
}
