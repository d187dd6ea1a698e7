//! `auto`: QUIC first, TLS/TCP when UDP gets no answer, like Happy Eyeballs
//! (RFC 8305). QUIC starts alone; if it has not connected within a short head
//! start (or fails), TLS/TCP starts too, and the first handshake to complete
//! wins. The loser is dropped before any hello is sent, so a tunnel is never
//! requested twice.
//!
//! When TLS/TCP wins because QUIC did not answer, [`TransportMemory`] remembers
//! it, and the following tunnels skip QUIC for a while. A live QUIC connection
//! (`tp up`) is always used.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, sleep};
use tracing::debug;

use super::quic::Acquired;
use super::resolve::Resolver;
use super::{Carrier, ConnectError, Connector};
use crate::transport::Via;

/// How long QUIC runs alone before TLS/TCP starts too.
pub const HEAD_START: Duration = Duration::from_millis(300);

/// How a race ended.
#[derive(Debug)]
pub(super) enum Outcome<Q, T, E> {
    /// QUIC connected first.
    Quic(Q),
    /// TLS/TCP connected first; QUIC's error if it had failed by then (else it
    /// was still trying and is dropped).
    Tcp(T, Option<E>),
    /// Both failed.
    Failed {
        /// QUIC's error.
        quic: E,
        /// TLS/TCP's error.
        tcp: ConnectError,
    },
}

/// Runs `quic` alone for `head_start` (or until it fails), then `tcp` beside
/// it; the first to succeed wins and the other is no longer polled. `tcp` is
/// not polled before it starts.
pub(super) async fn race<Q, T, E>(
    quic: impl Future<Output = Result<Q, E>>,
    tcp: impl Future<Output = Result<T, ConnectError>>,
    head_start: Duration,
) -> Outcome<Q, T, E> {
    let mut quic = pin!(quic);
    let mut tcp = pin!(tcp);
    let quic_error = tokio::select! {
        result = &mut quic => match result {
            Ok(q) => return Outcome::Quic(q),
            Err(e) => Some(e),
        },
        () = sleep(head_start) => None,
    };
    if let Some(quic) = quic_error {
        return match tcp.await {
            Ok(t) => Outcome::Tcp(t, Some(quic)),
            Err(tcp) => Outcome::Failed { quic, tcp },
        };
    }
    debug!("QUIC has not connected within {head_start:?}; starting TLS/TCP too");
    tokio::select! {
        result = &mut quic => match result {
            Ok(q) => Outcome::Quic(q),
            Err(quic) => match tcp.await {
                Ok(t) => Outcome::Tcp(t, Some(quic)),
                Err(tcp) => Outcome::Failed { quic, tcp },
            },
        },
        result = &mut tcp => match result {
            Ok(t) => Outcome::Tcp(t, None),
            Err(tcp) => match quic.await {
                Ok(q) => Outcome::Quic(q),
                Err(quic) => Outcome::Failed { quic, tcp },
            },
        },
    }
}

/// Why the QUIC side of a race gave up.
#[derive(Debug)]
pub(super) enum QuicLeg {
    /// QUIC did not answer recently (at this time): not tried.
    Skipped(SystemTime),
    /// QUIC was tried and failed.
    Failed(ConnectError),
}

/// Connects to the server over whichever transport wins, remembering a QUIC
/// that did not answer.
pub(super) async fn connect(
    connector: &Connector,
    resolver: &Resolver<'_>,
    deadline: Instant,
) -> Result<Carrier, ConnectError> {
    let memory = &connector.memory;
    let now = SystemTime::now();
    // Whether QUIC got as far as dialing (rather than waiting for another
    // tunnel's dial): only then does losing the race say something about UDP.
    let dialed = AtomicBool::new(false);
    let mut quic = pin!(async {
        let mut slot = connector
            .quic
            .lock(deadline)
            .await
            .map_err(QuicLeg::Failed)?;
        if let Some(conn) = slot.live() {
            return Ok(Acquired { conn, reused: true });
        }
        if let Some(at) = memory.quic_failed_recently(now) {
            return Err(QuicLeg::Skipped(at));
        }
        dialed.store(true, Ordering::Relaxed);
        let conn = slot
            .dial(resolver, deadline)
            .await
            .map_err(QuicLeg::Failed)?;
        Ok(Acquired {
            conn,
            reused: false,
        })
    });
    let tcp = connector.tls_connect(resolver, deadline);
    // `quic` is raced by reference, so a dial that loses is dropped only after
    // its failure is remembered below: tunnels queued behind it then skip QUIC.
    let carrier = match race(quic.as_mut(), tcp, connector.head_start).await {
        Outcome::Quic(acquired) => {
            if acquired.reused {
                debug!(transport = %Via::Quic, "reusing the QUIC connection");
            } else {
                memory.record_quic_success(now);
                debug!(transport = %Via::Quic, "QUIC connected first");
            }
            Carrier::Quic(acquired)
        }
        Outcome::Tcp(stream, quic_error) => {
            match quic_error {
                Some(QuicLeg::Skipped(at)) => {
                    let ago = now.duration_since(at).unwrap_or_default().as_secs();
                    debug!(
                        transport = %Via::Tcp,
                        "QUIC did not answer {ago}s ago; using TLS/TCP"
                    );
                }
                Some(QuicLeg::Failed(e)) if e.server_answered() => {
                    debug!(transport = %Via::Tcp, "QUIC failed ({e}); using TLS/TCP");
                }
                Some(QuicLeg::Failed(e)) => {
                    debug!(
                        transport = %Via::Tcp,
                        "QUIC did not answer ({e}); using TLS/TCP"
                    );
                    memory.record_quic_failure(now);
                }
                None if dialed.load(Ordering::Relaxed) => {
                    debug!(transport = %Via::Tcp, "QUIC did not answer; using TLS/TCP");
                    memory.record_quic_failure(now);
                }
                None => {
                    debug!(
                        transport = %Via::Tcp,
                        "another tunnel's QUIC dial is still running; using TLS/TCP"
                    );
                }
            }
            Carrier::Tls(Box::new(stream))
        }
        Outcome::Failed { quic, tcp } => {
            return Err(match quic {
                // The failure the server itself answered explains more.
                QuicLeg::Failed(quic) if quic.server_answered() && !tcp.server_answered() => {
                    debug!("TLS/TCP failed too: {tcp}");
                    quic
                }
                QuicLeg::Failed(quic) => {
                    debug!("QUIC failed too: {quic}");
                    tcp
                }
                QuicLeg::Skipped(_) => tcp,
            });
        }
    };
    Ok(carrier)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::addr::ServerAddr;

    fn refused() -> ConnectError {
        ConnectError::Connect {
            server: ServerAddr::parse("tp.example:443").unwrap(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        }
    }

    async fn after<T>(ms: u64, value: T) -> T {
        sleep(Duration::from_millis(ms)).await;
        value
    }

    /// A TLS/TCP leg that records when it is first polled.
    fn tcp_leg(
        ms: u64,
        result: Result<&'static str, ConnectError>,
    ) -> (
        Arc<AtomicBool>,
        impl Future<Output = Result<&'static str, ConnectError>>,
    ) {
        let started = Arc::new(AtomicBool::new(false));
        let flag = started.clone();
        let leg = async move {
            flag.store(true, Ordering::SeqCst);
            after(ms, result).await
        };
        (started, leg)
    }

    #[tokio::test(start_paused = true)]
    async fn quic_within_its_head_start_never_starts_tcp() {
        let (started, tcp) = tcp_leg(1, Ok("tcp"));
        let outcome = race(after(100, Ok::<_, ()>("quic")), tcp, HEAD_START).await;
        assert!(matches!(outcome, Outcome::Quic("quic")), "{outcome:?}");
        assert!(!started.load(Ordering::SeqCst), "TLS/TCP was started");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_quic_loses_to_tcp_after_the_head_start() {
        let t0 = Instant::now();
        let (_, tcp) = tcp_leg(50, Ok("tcp"));
        let outcome = race(after(60_000, Ok::<_, ()>("quic")), tcp, HEAD_START).await;
        assert!(matches!(outcome, Outcome::Tcp("tcp", None)), "{outcome:?}");
        assert_eq!(t0.elapsed(), HEAD_START + Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_quic_starts_tcp_at_once() {
        let t0 = Instant::now();
        let (_, tcp) = tcp_leg(50, Ok("tcp"));
        let outcome = race(after(10, Err::<(), _>("no")), tcp, HEAD_START).await;
        assert!(
            matches!(outcome, Outcome::Tcp("tcp", Some("no"))),
            "{outcome:?}"
        );
        assert_eq!(t0.elapsed(), Duration::from_millis(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_quic_still_wins_when_tcp_fails() {
        let (_, tcp) = tcp_leg(10, Err(refused()));
        let outcome = race(after(2_000, Ok::<_, ()>("quic")), tcp, HEAD_START).await;
        assert!(matches!(outcome, Outcome::Quic("quic")), "{outcome:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn both_failing_returns_both_errors() {
        let (_, tcp) = tcp_leg(10, Err(refused()));
        let outcome = race(after(500, Err::<(), _>("quic")), tcp, HEAD_START).await;
        assert!(
            matches!(
                outcome,
                Outcome::Failed {
                    quic: "quic",
                    tcp: ConnectError::Connect { .. }
                }
            ),
            "{outcome:?}"
        );
    }
}
