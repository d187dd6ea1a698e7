//! `connect` with `"proto":"udp"`: a UDP socket connected to the one allowed
//! target address, and datagrams relayed both ways until the client closes its
//! stream or the flow is idle for `udp_idle_timeout`.
//!
//! Datagrams travel as length-prefixed frames on the tunnel's stream, and over
//! QUIC also as QUIC datagrams tagged with the stream's id when the client
//! accepts them and they fit (`tp_proto::udp`). Incoming datagrams are taken
//! either way. Nothing here buffers without bound: one partial frame on the
//! stream, a bounded queue of QUIC datagrams (dropped when full, as UDP would).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use policy::Identity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tp_proto::udp::{MAX_DATAGRAM, decode_frame, encode_datagram, encode_frame, flow_id_len};
use tp_proto::{Answer, ErrorCode, Host, Proto};
use tracing::{Instrument, info, info_span};

use super::plan;
use crate::audit;
use crate::server::Shared;
use crate::session::{TunnelStream, answer_ok, finish, write_flush};
use crate::slots::TunnelSlot;

/// QUIC datagrams queued for one flow before new ones are dropped.
const FLOW_QUEUE: usize = 256;

/// The QUIC datagrams of one connection, routed to UDP tunnels by flow id.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlowTable {
    flows: Arc<Mutex<HashMap<u64, mpsc::Sender<Bytes>>>>,
}

impl FlowTable {
    /// Hands a received datagram to its flow; unknown flows and full queues drop it.
    pub(crate) fn deliver(&self, flow: u64, payload: Bytes) -> bool {
        let flows = self.flows.lock().unwrap_or_else(PoisonError::into_inner);
        flows
            .get(&flow)
            .is_some_and(|tx| tx.try_send(payload).is_ok())
    }

    fn register(&self, flow: u64) -> (mpsc::Receiver<Bytes>, FlowGuard) {
        let (tx, rx) = mpsc::channel(FLOW_QUEUE);
        self.flows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(flow, tx);
        let guard = FlowGuard {
            table: self.clone(),
            flow,
        };
        (rx, guard)
    }
}

struct FlowGuard {
    table: FlowTable,
    flow: u64,
}

impl Drop for FlowGuard {
    fn drop(&mut self) {
        self.table
            .flows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.flow);
    }
}

/// What a tunnel on a QUIC stream needs to use datagrams.
#[derive(Debug, Clone)]
pub(crate) struct DatagramPath {
    pub(crate) conn: quinn::Connection,
    pub(crate) flows: FlowTable,
    /// The id of the stream that carried the hello.
    pub(crate) flow: u64,
}

/// Counts of one UDP tunnel, for its close line.
#[derive(Debug, Default)]
struct UdpStats {
    up_datagrams: u64,
    up_bytes: u64,
    down_datagrams: u64,
    down_bytes: u64,
    down_as_quic_datagrams: u64,
}

/// Handles a UDP `connect`; `slot` is the tunnel's place among its identity's,
/// given back before the close line.
pub(crate) async fn serve<S: TunnelStream>(
    shared: &Shared,
    mut client: S,
    who: &Identity,
    (host, port): (&Host, u16),
    early: BytesMut,
    datagrams: Option<DatagramPath>,
    slot: TunnelSlot,
) {
    let span = info_span!("tunnel", proto = "udp", target = %format_args!("{host}:{port}"), addr = tracing::field::Empty);
    async move {
        let target = match open(shared, who, host, port).await {
            Ok(target) => target,
            Err(answer) => return finish(&mut client, &answer).await,
        };
        if let Ok(addr) = target.peer_addr() {
            tracing::Span::current().record("addr", tracing::field::display(addr));
        }
        if !answer_ok(&mut client).await {
            return;
        }
        let started = Instant::now();
        let mut stats = UdpStats::default();
        let end = relay(shared, &mut client, &target, early, datagrams, &mut stats).await;
        match &end {
            UdpEnd::ClientClosed | UdpEnd::Idle => {
                let _ = client.shutdown().await;
            }
            UdpEnd::Failed(_) => client.abort(),
        }
        drop(slot);
        info!(
            datagrams.up = stats.up_datagrams,
            bytes.up = stats.up_bytes,
            datagrams.down = stats.down_datagrams,
            bytes.down = stats.down_bytes,
            datagrams.down_quic = stats.down_as_quic_datagrams,
            duration = ?started.elapsed(),
            "tunnel closed: {end}"
        );
    }
    .instrument(span)
    .await
}

/// Decides, then binds a UDP socket connected to the first allowed address.
async fn open(
    shared: &Shared,
    who: &Identity,
    host: &Host,
    port: u16,
) -> Result<UdpSocket, Answer> {
    let plan = plan::plan(shared, who, Proto::Udp, host, port).await?;
    let mut ask = plan.ask(who, host, port);
    let (addr, decision) = &plan.allowed[0];
    ask.addr = Some(addr.ip());
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = async {
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(addr).await?;
        Ok::<_, io::Error>(socket)
    };
    audit::connect_decision(&ask, decision);
    socket.await.map_err(|e| {
        Answer::err(
            ErrorCode::Unreachable,
            format!("cannot open a UDP flow to {host}:{port}: {e}"),
        )
    })
}

/// How a UDP tunnel ended.
#[derive(Debug)]
enum UdpEnd {
    /// The client closed its side of the stream.
    ClientClosed,
    /// No datagram either way for `udp_idle_timeout`.
    Idle,
    /// A side failed or broke the framing; the client's stream is aborted.
    Failed(String),
}

impl std::fmt::Display for UdpEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UdpEnd::ClientClosed => f.write_str("client closed"),
            UdpEnd::Idle => f.write_str("idle timeout"),
            UdpEnd::Failed(why) => f.write_str(why),
        }
    }
}

/// How long a frame may wait for the client to read before the tunnel is given
/// up: a client that stops reading must not hold the tunnel past its idle timeout.
const CLIENT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Relays until the client closes its stream, a side fails, or the flow is idle.
/// Returns how it ended.
async fn relay<S: TunnelStream>(
    shared: &Shared,
    client: &mut S,
    target: &UdpSocket,
    mut from_client: BytesMut,
    datagrams: Option<DatagramPath>,
    stats: &mut UdpStats,
) -> UdpEnd {
    let (mut quic_in, _flow) = match &datagrams {
        Some(path) => {
            let (rx, guard) = path.flows.register(path.flow);
            (Some(rx), Some(guard))
        }
        None => (None, None),
    };
    let idle = shared.limits.udp_idle_timeout;
    let mut last = tokio::time::Instant::now();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = BytesMut::new();
    loop {
        // Frames that arrived behind the hello, or in the last read.
        loop {
            match decode_frame(&mut from_client) {
                Ok(Some(frame)) => {
                    if let Err(e) = send_up(target, &frame, stats).await {
                        return UdpEnd::Failed(format!("target failed: {e}"));
                    }
                }
                Ok(None) => break,
                Err(e) => return UdpEnd::Failed(format!("client sent a bad frame: {e}")),
            }
        }
        from_client.reserve(16 * 1024);
        tokio::select! {
            read = client.read_buf(&mut from_client) => match read {
                Ok(0) => return UdpEnd::ClientClosed,
                Ok(_) => last = tokio::time::Instant::now(),
                Err(e) => return UdpEnd::Failed(format!("client failed: {e}")),
            },
            Some(payload) = async { quic_in.as_mut()?.recv().await }, if quic_in.is_some() => {
                last = tokio::time::Instant::now();
                if let Err(e) = send_up(target, &payload, stats).await {
                    return UdpEnd::Failed(format!("target failed: {e}"));
                }
            }
            received = target.recv(&mut buf) => {
                let n = match received {
                    Ok(n) => n,
                    // An ICMP port unreachable for an earlier datagram: UDP goes on.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return UdpEnd::Failed(format!("target failed: {e}")),
                };
                last = tokio::time::Instant::now();
                stats.down_datagrams += 1;
                stats.down_bytes += n as u64;
                if let Some(path) = &datagrams
                    && send_quic_datagram(path, &buf[..n])
                {
                    stats.down_as_quic_datagrams += 1;
                    continue;
                }
                out.clear();
                if encode_frame(&buf[..n], &mut out).is_err() {
                    continue; // larger than any UDP payload: cannot happen
                }
                match tokio::time::timeout(CLIENT_WRITE_TIMEOUT, write_flush(client, &out)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return UdpEnd::Failed(format!("client failed: {e}")),
                    Err(_) => return UdpEnd::Failed("client stopped reading".into()),
                }
            }
            () = tokio::time::sleep_until(last + idle) => return UdpEnd::Idle,
        }
    }
}

async fn send_up(target: &UdpSocket, payload: &[u8], stats: &mut UdpStats) -> io::Result<()> {
    stats.up_datagrams += 1;
    stats.up_bytes += payload.len() as u64;
    match target.send(payload).await {
        Ok(_) => Ok(()),
        // ICMP port unreachable from an earlier datagram: UDP may lose it.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sends `payload` as a QUIC datagram if the client takes them and it fits.
fn send_quic_datagram(path: &DatagramPath, payload: &[u8]) -> bool {
    let Some(max) = path.conn.max_datagram_size() else {
        return false;
    };
    if flow_id_len(path.flow) + payload.len() > max {
        return false;
    }
    match encode_datagram(path.flow, payload) {
        Ok(datagram) => path.conn.send_datagram(datagram).is_ok(),
        Err(_) => false,
    }
}
