//! QUIC on the listen port over UDP: the same client-certificate verification,
//! identity, policy and audit path as TLS/TCP. Each tunnel is one bidirectional
//! stream, served by the same [`crate::session`] code as a TLS/TCP connection.
//!
//! A QUIC connection takes one connection permit (refused when none is free: a
//! UDP client cannot wait in an accept queue) and, while in the handshake, one
//! per-source handshake slot. Streams per connection are bounded by the transport
//! (`quic.max_streams_per_connection`), tunnels per identity by
//! `limits.max_tunnels_per_identity` across both transports.

mod conn;

use quinn::VarInt;
use tracing::{Instrument, debug, info_span};

use crate::server::RunContext;
use crate::slots::Source;

/// Application close code: the server is shutting down (or hit its drain deadline).
pub(crate) const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(1);
/// Application close code: the client's certificate was revoked after it connected.
pub(crate) const CLOSE_REVOKED: VarInt = VarInt::from_u32(2);
/// Application close code: the connection is unusable (no identity, wrong ALPN).
pub(crate) const CLOSE_REFUSED: VarInt = VarInt::from_u32(3);

/// Accepts QUIC connections until the drain starts.
pub(crate) async fn accept_loop(endpoint: quinn::Endpoint, ctx: RunContext) {
    loop {
        let incoming = tokio::select! {
            () = ctx.draining.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break, // endpoint closed
            },
        };
        let peer = incoming.remote_address();
        let Ok(permit) = ctx.permits.clone().try_acquire_owned() else {
            debug!(listen = %ctx.listen, peer = %peer, "QUIC connection refused: at max_connections");
            incoming.refuse();
            continue;
        };
        let Some(slot) = ctx.handshakes.try_take(Source::of(peer.ip())) else {
            debug!(listen = %ctx.listen, peer = %peer, "QUIC connection refused: too many handshakes from this source");
            incoming.refuse();
            continue;
        };
        let span = info_span!(
            "conn",
            listen = %ctx.listen,
            peer = %peer,
            transport = "quic",
            id = tracing::field::Empty,
        );
        let task_ctx = ctx.clone();
        ctx.tracker.spawn(
            async move {
                conn::serve(task_ctx, incoming, slot).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}
