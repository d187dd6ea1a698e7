//! QUIC: one connection to the server carries many tunnels, one bidirectional
//! stream each. The connection is kept and reused until it dies; the next
//! tunnel then dials again, after a backoff if dialing keeps failing.
//!
//! Dialing happens under a lock, so tunnels opened at the same moment (`tp up`
//! accepting a burst) share one handshake: the ones that waited behind a dial
//! take its connection, or its error, rather than dialing one after the other.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use quinn::{Connection, Endpoint, VarInt};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::{Instant, sleep_until, timeout_at};
use tp_proto::ALPN_TP_V1;
use tracing::debug;

use super::resolve::Resolver;
use super::{ATTEMPT_DELAY, ConnectError};
use crate::addr::ServerAddr;
use crate::quic_error;

/// The first pause before dialing again after a failed dial.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// The longest pause between dials.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long [`QuicDialer::close`] lets the close reach the server.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// The least time [`unresponsive`] waits for an acknowledgement.
const PROBE_MIN: Duration = Duration::from_secs(1);

/// The pause before the next dial after `failures` failed dials in a row:
/// none, then 250 ms doubling up to 10 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => BACKOFF_FIRST
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(BACKOFF_MAX),
    }
}

/// A QUIC connection ready for a tunnel's stream.
#[derive(Debug)]
pub(crate) struct Acquired {
    pub(crate) conn: Connection,
    /// Whether it was dialed for an earlier tunnel.
    pub(crate) reused: bool,
}

/// Dials the server over QUIC and keeps the connection.
#[derive(Debug)]
pub(crate) struct QuicDialer {
    config: quinn::ClientConfig,
    server: ServerAddr,
    server_name: String,
    connect_timeout: Duration,
    state: Mutex<DialState>,
}

#[derive(Debug, Default)]
struct DialState {
    /// UDP endpoints, at most one per address family.
    endpoints: Vec<Endpoint>,
    conn: Option<Connection>,
    /// Failed dials in a row.
    failures: u32,
    /// When the last dial failed, and why.
    last_failure: Option<(Instant, ConnectError)>,
}

/// The dialer, locked: see whether a connection is alive, else dial one.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    dialer: &'a QuicDialer,
    state: MutexGuard<'a, DialState>,
    /// When this caller started waiting for the lock.
    queued_at: Instant,
}

impl QuicDialer {
    pub(crate) fn new(
        config: quinn::ClientConfig,
        server: ServerAddr,
        server_name: String,
        connect_timeout: Duration,
    ) -> Self {
        QuicDialer {
            config,
            server,
            server_name,
            connect_timeout,
            state: Mutex::new(DialState::default()),
        }
    }

    /// Uses `transport` for the connections dialed from now on.
    pub(crate) fn set_transport_config(&mut self, transport: quinn::TransportConfig) {
        self.config.transport_config(std::sync::Arc::new(transport));
    }

    fn timed_out(&self, during: &'static str) -> ConnectError {
        ConnectError::Timeout {
            server: self.server.clone(),
            during,
            after: self.connect_timeout,
        }
    }

    fn quic_error(&self, reason: String) -> ConnectError {
        ConnectError::Quic {
            server: self.server.clone(),
            reason,
        }
    }

    /// Waits (until `deadline`) for any dial in progress to end.
    pub(crate) async fn lock(&self, deadline: Instant) -> Result<Slot<'_>, ConnectError> {
        let queued_at = Instant::now();
        let state = timeout_at(deadline, self.state.lock())
            .await
            .map_err(|_| self.timed_out("waiting for the QUIC connection to"))?;
        Ok(Slot {
            dialer: self,
            state,
            queued_at,
        })
    }

    /// Stops handing out `conn` to new tunnels (it is left to its current
    /// ones), so the next tunnel dials a new connection. Nothing here holds on
    /// to it any more: quinn closes it (code 0) once its last tunnel ends and
    /// the last handle is dropped, so a connection given up on by mistake does
    /// not stay open on keep-alives, holding one of the server's slots.
    pub(crate) async fn forget(&self, conn: &Connection) {
        let mut state = self.state.lock().await;
        if state
            .conn
            .as_ref()
            .is_some_and(|kept| kept.stable_id() == conn.stable_id())
        {
            state.conn = None;
        }
    }

    /// Closes the connection (code 0), and any forgotten one still carrying
    /// tunnels, and lets the close go out to the server, bounded: done with the
    /// server for good, e.g. before the process exits.
    ///
    /// When the kept connection is the only one, this waits only until its
    /// CONNECTION_CLOSE has been sent, not out the closing period (three
    /// probe timeouts, about 90 ms even on loopback): RFC 9000 §10.2 lets an
    /// endpoint that closes its UDP socket end that period early, and the
    /// process is about to. Only a lost close costs anything: the server then
    /// holds the connection until its idle timeout. Otherwise (another
    /// connection is still closing: a dial that lost a race, or one forgotten
    /// with tunnels on it; or the kept one sent a datagram while being closed,
    /// so which was the close cannot be told) every connection gets its whole
    /// closing period, all within one [`CLOSE_GRACE`].
    pub(crate) async fn close(&self) {
        let deadline = Instant::now() + CLOSE_GRACE;
        let Ok(mut state) = timeout_at(deadline, self.state.lock()).await else {
            debug!("a QUIC dial is still running; not waiting for it");
            return;
        };
        // A connection already closed (by the server, or an idle timeout)
        // sends no close. The datagram count is read on both sides of the
        // close: on a multi-thread runtime the connection's driver may send in
        // between.
        let closing = state
            .conn
            .take()
            .filter(|c| c.close_reason().is_none())
            .and_then(|conn| {
                let before = conn.stats().udp_tx.datagrams;
                conn.close(VarInt::from_u32(0), b"done");
                (conn.stats().udp_tx.datagrams == before).then_some((conn, before))
            });
        // A closed endpoint dials no more: a later tunnel binds a new one.
        let endpoints = std::mem::take(&mut state.endpoints);
        for endpoint in &endpoints {
            endpoint.close(VarInt::from_u32(0), b"done");
        }
        let all_idle = async {
            for endpoint in &endpoints {
                endpoint.wait_idle().await;
            }
        };
        let open: usize = endpoints.iter().map(Endpoint::open_connections).sum();
        if let Some((conn, before)) = closing
            && open <= 1
        {
            // quinn may never build the close (it can hold it back behind
            // unsent stream data); then the closing period ends the wait.
            let sent = async {
                tokio::select! {
                    () = close_sent(&conn, before) => true,
                    () = all_idle => false,
                }
            };
            match timeout_at(deadline, sent).await {
                Ok(true) => debug!("QUIC close sent"),
                Ok(false) => debug!("the QUIC closing period ended without a close sent"),
                Err(_) => debug!("the QUIC close was not sent in time"),
            }
            return;
        }
        if timeout_at(deadline, all_idle).await.is_err() {
            debug!("the QUIC close was not confirmed in time");
        }
    }

    /// Dials the server's addresses: the first at once, then, every
    /// [`ATTEMPT_DELAY`] without a connection, the next one too, racing
    /// (Happy Eyeballs, RFC 8305); an address that fails hands over to the
    /// next at once. The first handshake to finish wins and the others are
    /// dropped. A refusal the server itself answered (TLS, ALPN) ends the dial:
    /// another address of the same server would answer the same.
    async fn dial_once(
        &self,
        endpoints: &mut Vec<Endpoint>,
        resolver: &Resolver<'_>,
        deadline: Instant,
    ) -> Result<Connection, ConnectError> {
        let addrs = timeout_at(deadline, resolver.addrs())
            .await
            .map_err(|_| self.timed_out("connecting to"))??;
        let mut pending = addrs.iter().copied();
        let mut attempts = tokio::task::JoinSet::new();
        let mut last_error = None;
        let mut next_at = Instant::now();
        loop {
            if Instant::now() >= next_at
                && let Some(addr) = pending.next()
            {
                match self.start(endpoints, addr) {
                    Ok(connecting) => {
                        attempts.spawn(async move { (addr, connecting.await) });
                        next_at = Instant::now() + ATTEMPT_DELAY;
                    }
                    Err(e) => {
                        last_error = Some(e);
                        continue;
                    }
                }
            }
            if attempts.is_empty() {
                return Err(last_error
                    .unwrap_or_else(|| self.quic_error("the name resolved to no address".into())));
            }
            let more = pending.len() > 0;
            let finished = tokio::select! {
                finished = attempts.join_next() => finished,
                () = sleep_until(next_at), if more => continue,
                () = sleep_until(deadline) => {
                    return Err(self.timed_out("in the QUIC handshake with"));
                }
            };
            let Some(Ok((addr, result))) = finished else {
                continue;
            };
            match result {
                Ok(conn) => return self.check_alpn(conn, addr),
                Err(e) => {
                    let e = quic_error::connect_error(&self.server, &e);
                    debug!(%addr, "QUIC dial failed: {e}");
                    if e.server_answered() {
                        return Err(e);
                    }
                    last_error = Some(e);
                    // This one is done: the next address need not wait.
                    next_at = Instant::now();
                }
            }
        }
    }

    /// Starts a handshake with `addr`, on the endpoint of its address family.
    fn start(
        &self,
        endpoints: &mut Vec<Endpoint>,
        addr: SocketAddr,
    ) -> Result<quinn::Connecting, ConnectError> {
        let endpoint = endpoint_for(endpoints, addr)
            .map_err(|e| self.quic_error(format!("cannot open a UDP socket: {e}")))?;
        endpoint
            .connect_with(self.config.clone(), addr, &self.server_name)
            .map_err(|e| self.quic_error(format!("cannot start: {e}")))
    }

    fn check_alpn(&self, conn: Connection, addr: SocketAddr) -> Result<Connection, ConnectError> {
        if alpn(&conn).as_deref() != Some(ALPN_TP_V1) {
            conn.close(VarInt::from_u32(0), b"no ALPN tp/1");
            return Err(ConnectError::NoAlpn {
                server: self.server.clone(),
            });
        }
        debug!(server = %self.server, %addr, "QUIC connected");
        Ok(conn)
    }
}

impl Slot<'_> {
    /// The kept connection, if it is still alive.
    pub(crate) fn live(&self) -> Option<Connection> {
        self.state
            .conn
            .as_ref()
            .filter(|conn| conn.close_reason().is_none())
            .cloned()
    }

    /// Dials a new connection and keeps it. A dial that failed while this
    /// caller waited for the lock is not repeated: its error is returned. After
    /// failures, the next dial waits out [`backoff`] (or fails at once with the
    /// last error if that pause would pass `deadline`).
    pub(crate) async fn dial(
        &mut self,
        resolver: &Resolver<'_>,
        deadline: Instant,
    ) -> Result<Connection, ConnectError> {
        let state = &mut *self.state;
        if let Some((failed_at, error)) = &state.last_failure {
            if *failed_at >= self.queued_at {
                return Err(error.duplicate());
            }
            let retry_at = *failed_at + backoff(state.failures);
            if retry_at > deadline {
                debug!("not dialing QUIC again before {retry_at:?}");
                return Err(error.duplicate());
            }
            if retry_at > Instant::now() {
                debug!(
                    failures = state.failures,
                    "backing off before dialing QUIC again"
                );
                sleep_until(retry_at).await;
            }
        }
        state.conn = None;
        match self
            .dialer
            .dial_once(&mut state.endpoints, resolver, deadline)
            .await
        {
            Ok(conn) => {
                state.conn = Some(conn.clone());
                state.failures = 0;
                state.last_failure = None;
                Ok(conn)
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                state.last_failure = Some((Instant::now(), e.duplicate()));
                Err(e)
            }
        }
    }
}

/// Completes if the server acknowledges nothing on `conn` for four round trips
/// (at least [`PROBE_MIN`]) from now, while a tunnel's hello waits for its
/// answer; otherwise never. A kept connection can be dead without QUIC knowing
/// yet: a server that restarted has lost its state and cannot even send a
/// stateless reset we would accept, so only the idle timeout would tell. The
/// answer itself may take long (the server dials the target), but the
/// acknowledgement of the hello comes within a round trip.
pub(crate) async fn unresponsive(conn: &Connection) {
    let acks = |conn: &Connection| conn.stats().frame_rx.acks;
    let before = acks(conn);
    tokio::time::sleep(conn.rtt().saturating_mul(4).max(PROBE_MIN)).await;
    if acks(conn) > before {
        std::future::pending::<()>().await;
    }
}

/// How often [`close_sent`] looks whether the close went out.
const CLOSE_POLL: Duration = Duration::from_millis(1);

/// Resolves once `conn`, which had sent `before` datagrams when it was closed
/// (and none since), has sent another: once closed, a connection sends nothing
/// but its CONNECTION_CLOSE.
/// Its driver hands the datagram to the socket in the same poll that builds it
/// (quinn counts it when built), so it has left unless the socket's send
/// buffer was full; quinn has no signal for this, hence the poll.
async fn close_sent(conn: &Connection, before: u64) {
    // The driver, woken by the close, usually runs before this task resumes.
    tokio::task::yield_now().await;
    while conn.stats().udp_tx.datagrams == before {
        tokio::time::sleep(CLOSE_POLL).await;
    }
}

/// The endpoint for `addr`'s address family, bound on first use.
fn endpoint_for(endpoints: &mut Vec<Endpoint>, addr: SocketAddr) -> std::io::Result<Endpoint> {
    let same_family = |e: &Endpoint| {
        e.local_addr()
            .is_ok_and(|local| local.is_ipv4() == addr.is_ipv4())
    };
    if let Some(endpoint) = endpoints.iter().find(|e| same_family(e)) {
        return Ok(endpoint.clone());
    }
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = Endpoint::client(bind)?;
    debug!(local = ?endpoint.local_addr().ok(), "UDP socket bound");
    endpoints.push(endpoint.clone());
    Ok(endpoint)
}

/// The ALPN protocol the server selected.
fn alpn(conn: &Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_250ms_to_10s() {
        let ms = |n| backoff(n).as_millis();
        assert_eq!(ms(0), 0);
        assert_eq!(ms(1), 250);
        assert_eq!(ms(2), 500);
        assert_eq!(ms(3), 1000);
        assert_eq!(ms(6), 8000);
        assert_eq!(ms(7), 10_000);
        assert_eq!(ms(40), 10_000);
        assert_eq!(ms(u32::MAX), 10_000);
    }
}
