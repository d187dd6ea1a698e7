//! QUIC on the listen port over UDP: the same client-certificate verification,
//! identity, policy and audit path as TLS/TCP. Each tunnel is one bidirectional
//! stream, served by the same [`crate::session`] code as a TLS/TCP connection.
//!
//! A QUIC connection takes one connection permit (refused when none is free: a
//! UDP client cannot wait in an accept queue) and, while in the handshake, one
//! per-source handshake slot. When many handshakes are in flight, clients whose
//! address is not validated yet get a Retry first, so spoofed sources hold
//! nothing. Streams per connection are bounded by the transport
//! (`quic.max_streams_per_connection`), tunnels per identity by
//! `limits.max_tunnels_per_identity` across both transports.

mod conn;
mod verified;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use quinn::VarInt;
use tracing::{Instrument, debug, info_span, warn};

use crate::server::RunContext;
use crate::slots::Source;

/// Application close code: the server is shutting down (or hit its drain deadline).
pub(crate) const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(1);
/// Application close code: the client's certificate is no longer valid (revoked,
/// expired or no longer trusted after a reload) when it opened a tunnel.
pub(crate) const CLOSE_REVOKED: VarInt = VarInt::from_u32(2);
/// Application close code: the connection is unusable (no identity, wrong ALPN).
pub(crate) const CLOSE_REFUSED: VarInt = VarInt::from_u32(3);

/// Handshakes in flight above which a client whose address QUIC has not validated
/// yet is first sent a Retry: a spoofed source cannot answer it, so it cannot hold
/// connection permits or another host's handshake slots. Below it, clients save
/// the extra round trip.
const RETRY_ABOVE_HANDSHAKES: usize = 32;

/// Counts QUIC handshakes in flight; the guard gives its count back on drop.
#[derive(Debug, Clone, Default)]
pub(crate) struct Handshakes(Arc<AtomicUsize>);

/// One counted handshake.
#[derive(Debug)]
pub(crate) struct HandshakeCount(Arc<AtomicUsize>);

impl Handshakes {
    fn in_flight(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn count(&self) -> HandshakeCount {
        self.0.fetch_add(1, Ordering::Relaxed);
        HandshakeCount(self.0.clone())
    }
}

impl Drop for HandshakeCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts QUIC connections until the endpoint is closed. Once the drain has
/// started, new connections are refused at once (the client is told, instead of
/// waiting for its handshake to time out).
pub(crate) async fn accept_loop(endpoint: quinn::Endpoint, ctx: RunContext) {
    let handshakes = Handshakes::default();
    while let Some(incoming) = endpoint.accept().await {
        let peer = incoming.remote_address();
        if ctx.draining.is_cancelled() {
            debug!(listen = %ctx.listen, peer = %peer, "QUIC connection refused: shutting down");
            incoming.refuse();
            continue;
        }
        if !incoming.remote_address_validated()
            && incoming.may_retry()
            && handshakes.in_flight() >= RETRY_ABOVE_HANDSHAKES
        {
            debug!(listen = %ctx.listen, peer = %peer, "QUIC Retry: validating the client's address first");
            let _ = incoming.retry();
            continue;
        }
        let Ok(permit) = ctx.permits.clone().try_acquire_owned() else {
            warn_at_capacity(&ctx, peer);
            incoming.refuse();
            continue;
        };
        let Some(slot) = ctx.handshakes.try_take(Source::of(peer.ip())) else {
            debug!(listen = %ctx.listen, peer = %peer, "QUIC connection refused: too many handshakes from this source");
            incoming.refuse();
            continue;
        };
        let counted = handshakes.count();
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
                conn::serve(task_ctx, incoming, (slot, counted)).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// A QUIC client cannot wait in an accept queue: at `max_connections` it is
/// refused. Operators hear about it, at most once a minute.
fn warn_at_capacity(ctx: &RunContext, peer: std::net::SocketAddr) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        warn!(listen = %ctx.listen, peer = %peer, "QUIC connection refused: at max_connections (logged once a minute)");
    } else {
        debug!(listen = %ctx.listen, peer = %peer, "QUIC connection refused: at max_connections");
    }
}
