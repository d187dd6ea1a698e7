//! QUIC datagrams of UDP tunnels. Each QUIC connection's datagrams are read by
//! one task, which routes them by flow id (the id of the stream that carried
//! the tunnel's hello) to the flow's bounded queue; a flow's entry is removed
//! when the flow ends. The task ends with its connection, or when the
//! connection's last flow ends (the next flow starts another): it must not be
//! what keeps a connection open, since a connection the dialer gave up on
//! closes once nothing uses it any more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;
use quinn::Connection;
use tokio::sync::{Notify, mpsc};
use tp_proto::udp::{decode_datagram, encode_datagram, flow_id_len};
use tracing::{Instrument, debug, debug_span, trace};

/// QUIC datagrams queued for one flow before new ones are dropped.
pub const DATAGRAM_QUEUE: usize = 256;

/// The flows of one QUIC connection, by flow id.
type FlowTable = Arc<Flows>;

#[derive(Debug, Default)]
struct Flows {
    by_id: Mutex<HashMap<u64, mpsc::Sender<Bytes>>>,
    /// Signalled when the last flow leaves.
    emptied: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One routing table per QUIC connection, by the connection's stable id.
#[derive(Debug, Default)]
pub(super) struct Routers {
    by_conn: Mutex<HashMap<usize, FlowTable>>,
}

/// A UDP tunnel's QUIC datagram path: send with [`QuicPath::send`], receive
/// from `rx`. Dropping it removes the flow from its connection's table.
#[derive(Debug)]
pub(super) struct QuicPath {
    conn: Connection,
    flow: u64,
    table: FlowTable,
    pub(super) rx: mpsc::Receiver<Bytes>,
}

impl Routers {
    /// Routes `conn`'s datagrams tagged `flow` to the returned path, starting
    /// the connection's reader on its first flow.
    pub(super) fn register(self: &Arc<Self>, conn: &Connection, flow: u64) -> QuicPath {
        let mut by_conn = lock(&self.by_conn);
        let table = by_conn
            .entry(conn.stable_id())
            .or_insert_with(|| {
                let table = FlowTable::default();
                let reader = read(conn.clone(), table.clone(), Arc::downgrade(self));
                // Not in the first flow's span: the reader outlives it.
                let span = debug_span!(parent: None, "quic_datagrams", conn = conn.stable_id());
                tokio::spawn(reader.instrument(span));
                table
            })
            .clone();
        let (tx, rx) = mpsc::channel(DATAGRAM_QUEUE);
        // Under the `by_conn` lock: the reader cannot decide meanwhile that the
        // table is empty and end.
        lock(&table.by_id).insert(flow, tx);
        drop(by_conn);
        QuicPath {
            conn: conn.clone(),
            flow,
            table,
            rx,
        }
    }
}

impl QuicPath {
    /// Sends `payload` as a QUIC datagram if the server takes datagrams and it
    /// fits; false if it must go as a frame on the stream instead.
    pub(super) fn send(&self, payload: &[u8]) -> bool {
        let Some(max) = self.conn.max_datagram_size() else {
            return false;
        };
        if flow_id_len(self.flow) + payload.len() > max {
            return false;
        }
        match encode_datagram(self.flow, payload) {
            // quinn drops the oldest unsent datagrams when its buffer is full.
            Ok(datagram) => self.conn.send_datagram(datagram).is_ok(),
            Err(_) => false,
        }
    }
}

impl Drop for QuicPath {
    fn drop(&mut self) {
        let mut flows = lock(&self.table.by_id);
        flows.remove(&self.flow);
        if flows.is_empty() {
            self.table.emptied.notify_one();
        }
    }
}

/// Reads `conn`'s datagrams until it closes or has no flow left, handing each
/// to its flow; then removes the connection's table.
async fn read(conn: Connection, table: FlowTable, routers: Weak<Routers>) {
    let id = conn.stable_id();
    loop {
        let datagram = tokio::select! {
            read = conn.read_datagram() => match read {
                Ok(datagram) => datagram,
                Err(e) => {
                    debug!("no more QUIC datagrams: {e}");
                    break;
                }
            },
            () = table.emptied.notified() => {
                if no_flows_left(&routers, id, &table) {
                    debug!("no UDP flow left on the connection");
                    // Our handle must not keep the connection open.
                    return;
                }
                continue;
            }
        };
        match decode_datagram(datagram) {
            Ok((flow, payload)) => {
                let delivered = lock(&table.by_id)
                    .get(&flow)
                    .is_some_and(|tx| tx.try_send(payload).is_ok());
                if !delivered {
                    trace!(
                        flow,
                        "dropped a QUIC datagram: no such flow, or its queue is full"
                    );
                }
            }
            Err(e) => debug!("dropped a QUIC datagram: {e}"),
        }
    }
    if let Some(routers) = routers.upgrade() {
        let mut by_conn = lock(&routers.by_conn);
        if by_conn.get(&id).is_some_and(|t| Arc::ptr_eq(t, &table)) {
            by_conn.remove(&id);
        }
    }
}

/// Whether `table` (of connection `id`) has no flow; if so, it is removed, so
/// the connection's next flow starts a new reader.
fn no_flows_left(routers: &Weak<Routers>, id: usize, table: &FlowTable) -> bool {
    let Some(routers) = routers.upgrade() else {
        return true;
    };
    let mut by_conn = lock(&routers.by_conn);
    if !lock(&table.by_id).is_empty() {
        return false;
    }
    if by_conn.get(&id).is_some_and(|t| Arc::ptr_eq(t, table)) {
        by_conn.remove(&id);
    }
    true
}
