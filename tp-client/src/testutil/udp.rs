//! The canned server's UDP tunnels (`Behaviour::UdpEcho`), speaking
//! `tp_proto::udp`: after `ok`, every datagram is echoed the way it came, frames
//! on the stream as frames, QUIC datagrams as QUIC datagrams (as a frame when
//! it does not fit), until the client finishes its stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use quinn::Connection;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tp_proto::udp::{decode_datagram, decode_frame, encode_datagram, encode_frame, flow_id_len};

use super::{ClientEnd, Ended};

type Table = Arc<Mutex<HashMap<u64, mpsc::Sender<Bytes>>>>;

/// One QUIC connection's datagrams, routed by flow id.
pub(crate) struct ServerFlows {
    table: Table,
}

/// A tunnel's QUIC datagrams: its flow id and what arrived for it.
pub(crate) struct DatagramPath {
    conn: Connection,
    flow: u64,
    rx: mpsc::Receiver<Bytes>,
    table: Table,
}

impl ServerFlows {
    /// Starts reading `conn`'s datagrams.
    pub(crate) fn route(conn: Connection) -> ServerFlows {
        let table = Table::default();
        let routed = table.clone();
        tokio::spawn(async move {
            while let Ok(datagram) = conn.read_datagram().await {
                let Ok((flow, payload)) = decode_datagram(datagram) else {
                    continue;
                };
                if let Some(tx) = routed.lock().unwrap().get(&flow) {
                    let _ = tx.try_send(payload);
                }
            }
        });
        ServerFlows { table }
    }

    /// The datagram path of the tunnel on stream `flow`.
    pub(crate) fn register(&self, conn: &Connection, flow: u64) -> DatagramPath {
        let (tx, rx) = mpsc::channel(256);
        self.table.lock().unwrap().insert(flow, tx);
        DatagramPath {
            conn: conn.clone(),
            flow,
            rx,
            table: self.table.clone(),
        }
    }
}

impl Drop for DatagramPath {
    fn drop(&mut self) {
        self.table.lock().unwrap().remove(&self.flow);
    }
}

/// Answers ok, then echoes datagrams until the client's side of the stream
/// ends; returns how, and the stream bytes read (not counting what arrived
/// behind the hello, `from_client`).
pub(crate) async fn echo<S>(
    stream: &mut S,
    mut from_client: BytesMut,
    mut datagrams: Option<DatagramPath>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut bytes = 0;
    let failed = |bytes| Ended {
        how: ClientEnd::Failed("could not write to the client".into()),
        bytes,
    };
    if stream.write_all(b"{\"v\":1,\"ok\":true}\n").await.is_err() {
        return failed(bytes);
    }
    let mut out = BytesMut::new();
    let how = loop {
        while let Ok(Some(frame)) = decode_frame(&mut from_client) {
            out.clear();
            encode_frame(&frame, &mut out).unwrap();
            if stream.write_all(&out).await.is_err() {
                return failed(bytes);
            }
        }
        tokio::select! {
            read = stream.read_buf(&mut from_client) => match read {
                Ok(0) => break ClientEnd::Finished,
                Err(e) => break ClientEnd::of(&e),
                Ok(n) => bytes += n as u64,
            },
            Some(payload) = async { datagrams.as_mut()?.rx.recv().await }, if datagrams.is_some() => {
                let Some(path) = &datagrams else { continue };
                let fits = path
                    .conn
                    .max_datagram_size()
                    .is_some_and(|max| flow_id_len(path.flow) + payload.len() <= max);
                if fits {
                    let _ = path.conn.send_datagram(encode_datagram(path.flow, &payload).unwrap());
                    continue;
                }
                out.clear();
                encode_frame(&payload, &mut out).unwrap();
                if stream.write_all(&out).await.is_err() {
                    return failed(bytes);
                }
            }
        }
    };
    let _ = stream.shutdown().await;
    Ended { how, bytes }
}
