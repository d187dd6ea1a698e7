//! One QUIC connection: handshake under a total deadline, identity from the
//! verified certificate, then one tunnel session per bidirectional stream.

use std::sync::Arc;
use std::time::Duration;

use policy::Identity;
use quinn::ConnectionError;
use rustls_pki_types::CertificateDer;
use tokio_util::task::TaskTracker;
use tp_net::quic::StreamWindow;
use tp_proto::ALPN_TP_V1;
use tp_proto::udp::decode_datagram;
use tracing::{Instrument, Span, debug, info, info_span};

use super::{CLOSE_REFUSED, CLOSE_REVOKED, CLOSE_SHUTDOWN, HandshakeCount};
use crate::server::RunContext;
use crate::session;
use crate::slots::HandshakeSlot;
use crate::tunnel::udp::{DatagramPath, FlowTable};

/// How long a finished tunnel's stream may take to be acknowledged by the client
/// before its task ends anyway.
const ACK_GRACE: Duration = Duration::from_secs(5);

/// During the drain, how long the server waits for a client to close a connection
/// whose tunnels are done before closing it itself.
const CLIENT_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves one incoming QUIC connection to its end. `in_handshake` (the per-source
/// slot and the in-flight count) is held until the handshake ends.
pub(super) async fn serve(
    ctx: RunContext,
    incoming: quinn::Incoming,
    in_handshake: (HandshakeSlot, HandshakeCount),
) {
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
        Ok(Err(e)) if is_tls_alert(&e) => {
            // A TLS verdict (bad certificate, no shared ALPN...) travels as a
            // CRYPTO_ERROR carrying the TLS alert.
            info!("TLS handshake refused: {e}");
            return;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "TLS handshake refused: connection ended");
            return;
        }
        Ok(Ok(conn)) => conn,
    };
    drop(in_handshake);

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
    let Some(_identity_slot) = ctx.quic_per_identity.try_take(who.to_string()) else {
        info!(
            max = ctx.quic_per_identity.max(),
            "QUIC connection refused: the identity has too many connections open"
        );
        conn.close(
            CLOSE_REFUSED,
            b"too many QUIC connections for this identity",
        );
        return;
    };
    debug!("QUIC established");

    let who = Arc::new(who);
    let flows = FlowTable::default();
    tokio::spawn(route_datagrams(conn.clone(), flows.clone()).in_current_span());
    let streams = TaskTracker::new();
    let chain: Arc<[CertificateDer<'static>]> = chain.unwrap_or_default().into();
    let ended = serve_streams(&ctx, &conn, &who, &chain, &flows, &streams).await;
    streams.close();
    tokio::select! {
        () = streams.wait() => {}
        () = ctx.force.cancelled() => {
            conn.close(CLOSE_SHUTDOWN, b"server stopped");
            streams.wait().await;
        }
    }
    if ctx.draining.is_cancelled() {
        // Every tunnel is done and acknowledged; give the client a moment to close
        // first, so nothing it has yet to read is cut off by our close.
        tokio::select! {
            _ = conn.closed() => {}
            () = tokio::time::sleep(CLIENT_CLOSE_GRACE) => {}
            () = ctx.force.cancelled() => {}
        }
        conn.close(CLOSE_SHUTDOWN, b"server shutting down");
    }
    debug!(reason = %ended, "QUIC connection closed");
}

/// Accepts streams until the connection ends, the drain finishes this
/// connection's tunnels, or the drain deadline passes. Returns why it stopped.
async fn serve_streams(
    ctx: &RunContext,
    conn: &quinn::Connection,
    who: &Arc<Identity>,
    chain: &Arc<[CertificateDer<'static>]>,
    flows: &FlowTable,
    streams: &TaskTracker,
) -> String {
    let mut draining = false;
    let mut verified = super::verified::Verified::new(chain);
    let mut window = StreamWindow::new(ctx.current().quic.limits.max_streams);
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
            // Once draining, stop as soon as the connection's tunnels are done.
            () = streams.wait(), if draining => return "server shutting down".into(),
            accepted = conn.accept_bi() => accepted,
        };
        let (send, recv) = match accepted {
            Ok(stream) => stream,
            Err(e) => return closed_reason(&e),
        };
        // Every tunnel uses the configuration current when it opens, and the
        // client's chain must still pass it: a certificate that expired, was
        // revoked or lost its CA since the handshake ends the connection
        // (verified again when the configuration changed or a certificate
        // expired, see `Verified`).
        let shared = ctx.current();
        if let Err(e) = verified.check(&shared, chain, rustls_pki_types::UnixTime::now()) {
            info!("QUIC connection closed: the client certificate is no longer valid: {e}");
            conn.close(CLOSE_REVOKED, b"client certificate no longer valid");
            return "certificate no longer valid".into();
        }
        let datagrams = DatagramPath {
            conn: conn.clone(),
            flows: flows.clone(),
            flow: quinn::VarInt::from(send.id()).into_inner(),
        };
        let span = info_span!("stream", stream = %send.id());
        let who = who.clone();
        let origin = session::Origin {
            peer: conn.remote_address(),
            quic: Some(datagrams),
            streams: Some(streams.clone()),
            chain: chain.clone(),
            ctx: ctx.clone(),
        };
        let force = ctx.force.clone();
        // More streams at once as they are used, up to the current limit
        // (quinn sets up state for every stream granted).
        if let Some(more) = window.grow(streams.len() + 1, shared.quic.limits.max_streams) {
            debug!(
                streams = more,
                "QUIC: the client may open more streams at once"
            );
            conn.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(more));
        }
        streams.spawn(
            async move {
                // Resolves once the client has every byte of the stream (or it
                // was stopped or reset): a finished stream is not yet delivered.
                let delivered = send.stopped();
                let stream = tp_net::quic::stream(send, recv);
                tokio::select! {
                    () = session::serve(&shared, stream, &who, origin) => {}
                    () = force.cancelled() => {
                        debug!("closed by shutdown deadline");
                        return;
                    }
                }
                tokio::select! {
                    _ = delivered => {}
                    () = tokio::time::sleep(ACK_GRACE) => debug!("stream end not acknowledged in time"),
                    () = force.cancelled() => {}
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

/// Whether a handshake failure is a TLS alert (QUIC CRYPTO_ERROR, 0x100-0x1ff),
/// news worth an info line, rather than noise from a broken or hostile packet.
fn is_tls_alert(e: &quinn::ConnectionError) -> bool {
    let ConnectionError::TransportError(e) = e else {
        return false;
    };
    (0x100..=0x1ff).contains(&u64::from(e.code))
}

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
