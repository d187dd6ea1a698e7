//! `tp up --udp HOST:PORT LOCALPORT`: a local UDP socket; each local source
//! address (ip:port) that sends a datagram gets its own UDP tunnel to the
//! target, a *flow* ([`flow`]), and the replies go back to that source.
//!
//! The dispatcher here reads the socket and hands each datagram to its source's
//! flow, starting one on demand. Everything is bounded: at most
//! [`UdpOptions::max_flows`] flows (new sources beyond that are refused with a
//! warning), a queue per flow ([`queue`]; a full queue drops, as UDP does), and
//! flows idle for [`UdpOptions::idle`] are closed. Over QUIC, every flow is a
//! stream of the one kept connection, and that connection's datagrams are
//! routed to the flows by flow id ([`datagrams`]).

mod datagrams;
mod flow;
mod queue;
mod refusals;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tracing::{Instrument, debug, info, info_span, warn};

use self::flow::Context;
use self::queue::{FlowSender, Offer};
use super::UpError;
use crate::addr::Target;
use crate::connect::Connector;

pub use self::datagrams::DATAGRAM_QUEUE;
pub use self::flow::RETRY_AFTER;
pub use self::queue::{QUEUE_BYTES, QUEUE_DATAGRAMS};

/// Flows open at once unless set otherwise: below the server's default limit
/// of tunnels per identity (1000), which `tp`'s other tunnels share.
pub const MAX_FLOWS: usize = 512;
/// A flow closes after this long without a datagram either way, unless set
/// otherwise (the server's default is the same).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long flows get to finish their streams when `tp up` stops.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long to pause after a failed read of the local socket.
const RECV_BACKOFF: Duration = Duration::from_millis(100);
/// At most one "too many flows" warning this often.
const LIMIT_WARN_EVERY: Duration = Duration::from_secs(10);
/// Room for the largest UDP payload (IPv6 without jumbograms).
const RECV_BUF: usize = 65_535;

/// Limits of `tp up --udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Close a flow after this long without a datagram either way.
    pub idle: Duration,
    /// Flows open at once; datagrams from further sources are dropped.
    pub max_flows: usize,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            idle: IDLE_TIMEOUT,
            max_flows: MAX_FLOWS,
        }
    }
}

/// Binds UDP `bind:port`, prints the forwarding line to stderr, and serves
/// until `shutdown` completes; then closes the QUIC connection, if there is one.
pub async fn run(
    connector: Arc<Connector>,
    target: Target,
    bind: IpAddr,
    port: u16,
    options: UdpOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), UpError> {
    let addr = SocketAddr::new(bind, port);
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|source| UpError::Bind { addr, source })?;
    let local = socket
        .local_addr()
        .map_err(|source| UpError::Bind { addr, source })?;
    info!("listening on UDP {local}, forwarding to {target}");
    // Always shown, whatever the log level: it tells the user the chosen port.
    eprintln!("tp up: forwarding UDP {local} -> {target}");
    serve(socket, connector.clone(), target, options, shutdown).await;
    connector.close().await;
    Ok(())
}

/// A flow as the dispatcher sees it.
struct Entry {
    /// Tells this flow from a later one of the same source.
    id: u64,
    queue: FlowSender,
}

/// Serves datagrams arriving on `socket` until `shutdown` completes. Then every
/// flow finishes its stream (bounded by a grace period) before this returns.
pub async fn serve(
    socket: UdpSocket,
    connector: Arc<Connector>,
    target: Target,
    options: UdpOptions,
    shutdown: impl Future<Output = ()>,
) {
    let socket = Arc::new(socket);
    let ctx = Arc::new(Context {
        connector,
        target,
        socket: socket.clone(),
        idle: options.idle,
        refusals: refusals::Refusals::new(options.max_flows),
        routers: Arc::default(),
    });
    let mut dispatcher = Dispatcher {
        ctx,
        max_flows: options.max_flows.max(1),
        flows: HashMap::new(),
        tasks: JoinSet::new(),
        next_id: 0,
        limit_warned: None,
        dropped_at_limit: 0,
    };
    let mut buf = vec![0u8; RECV_BUF];
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => {
                info!("stopping");
                break;
            }
            Some(ended) = dispatcher.tasks.join_next(), if !dispatcher.tasks.is_empty() => {
                dispatcher.reap(ended.ok());
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, source)) => dispatcher.dispatch(source, Bytes::copy_from_slice(&buf[..n])),
                // ICMP errors for earlier replies: UDP goes on.
                Err(e) if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                ) => debug!("local socket: {e}"),
                Err(e) => {
                    warn!("receiving on the local UDP socket failed: {e}");
                    tokio::time::sleep(RECV_BACKOFF).await;
                }
            }
        }
    }
    dispatcher.stop().await;
}

struct Dispatcher {
    ctx: Arc<Context>,
    max_flows: usize,
    flows: HashMap<SocketAddr, Entry>,
    tasks: JoinSet<(SocketAddr, u64)>,
    next_id: u64,
    /// When the flow limit was last warned about.
    limit_warned: Option<Instant>,
    /// Datagrams dropped at the flow limit since that warning.
    dropped_at_limit: u64,
}

impl Dispatcher {
    /// Hands `payload` from `source` to its flow, starting one if needed.
    fn dispatch(&mut self, source: SocketAddr, payload: Bytes) {
        let payload = match self.flows.get(&source) {
            None => payload,
            Some(entry) => match entry.queue.offer(payload) {
                Offer::Queued => return,
                Offer::Dropped => {
                    debug!(%source, "flow queue full: datagram dropped");
                    return;
                }
                // The flow ended and is not reaped yet: start the next one.
                Offer::Closed(payload) => {
                    self.flows.remove(&source);
                    payload
                }
            },
        };
        if self.flows.len() >= self.max_flows {
            self.at_limit(source);
            return;
        }
        let (tx, rx) = queue::queue(QUEUE_DATAGRAMS, QUEUE_BYTES);
        // A new queue takes its first datagram.
        let _ = tx.offer(payload);
        let id = self.next_id;
        self.next_id += 1;
        self.flows.insert(source, Entry { id, queue: tx });
        let span = info_span!("udp", peer.addr = %source);
        let ctx = self.ctx.clone();
        self.tasks.spawn(
            async move {
                flow::run(ctx, source, rx).await;
                (source, id)
            }
            .instrument(span),
        );
    }

    /// Forgets a flow that ended (unless its source has a newer one already).
    fn reap(&mut self, ended: Option<(SocketAddr, u64)>) {
        match ended {
            Some((source, id)) => {
                if self.flows.get(&source).is_some_and(|e| e.id == id) {
                    self.flows.remove(&source);
                }
            }
            // A flow task panicked: forget whichever flows are gone.
            None => self.flows.retain(|_, e| !e.queue.is_closed()),
        }
    }

    fn at_limit(&mut self, source: SocketAddr) {
        self.dropped_at_limit += 1;
        let now = Instant::now();
        if self
            .limit_warned
            .is_some_and(|at| now < at + LIMIT_WARN_EVERY)
        {
            debug!(%source, "too many UDP flows: datagram dropped");
            return;
        }
        warn!(
            %source,
            dropped = self.dropped_at_limit,
            "UDP flow limit reached ({} open): datagrams from new sources are dropped",
            self.max_flows
        );
        self.limit_warned = Some(now);
        self.dropped_at_limit = 0;
    }

    /// Closes every queue, so each flow sends what it has queued, finishes its
    /// stream, logs, and waits until the server has acknowledged it all (the
    /// QUIC connection is closed only after this); flows still opening (or slow
    /// to finish) after the grace period are dropped, which aborts them.
    async fn stop(mut self) {
        self.flows.clear();
        let drained = timeout(STOP_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            debug!(
                flows = self.tasks.len(),
                "UDP flows did not end in time; dropping them"
            );
            self.tasks.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests;
