//! UDP tunnel pieces for tests: a UDP echo target on 127.0.0.1, and a raw UDP
//! tunnel client that sends datagrams as stream frames or as QUIC datagrams and
//! receives both (`tp_proto::udp`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tp_proto::udp::{decode_datagram, decode_frame, encode_datagram, encode_frame};

use crate::client::Duplex;

/// Echoes every datagram back to its sender. Counts what it received.
#[derive(Debug)]
pub struct UdpEchoTarget {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl UdpEchoTarget {
    /// Binds `127.0.0.1:0`.
    pub async fn start() -> UdpEchoTarget {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind UDP target");
        let addr = socket.local_addr().expect("local_addr");
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = socket.send_to(&buf[..n], from).await;
            }
        });
        UdpEchoTarget {
            addr,
            received,
            task,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Datagrams received so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for UdpEchoTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A UDP connect hello line.
pub fn udp_hello(host: &str, port: u16) -> Vec<u8> {
    let mut line =
        serde_json::json!({"v": 1, "op": "connect", "proto": "udp", "host": host, "port": port})
            .to_string()
            .into_bytes();
    line.push(b'\n');
    line
}

/// The client side of an open UDP tunnel (after its `ok`).
pub struct UdpTunnel {
    write: WriteHalf<Box<dyn Duplex>>,
    /// Datagrams received, from stream frames and QUIC datagrams alike; `None`
    /// when the stream has ended.
    received: mpsc::UnboundedReceiver<Option<Bytes>>,
    quic: Option<(quinn::Connection, u64)>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for UdpTunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpTunnel").finish_non_exhaustive()
    }
}

impl UdpTunnel {
    /// Wraps an answered stream. With `quic` (the connection and this stream's id),
    /// QUIC datagrams of this flow are received too and [`send_datagram`](Self::send_datagram) works.
    pub fn new(stream: Box<dyn Duplex>, quic: Option<(quinn::Connection, u64)>) -> UdpTunnel {
        let (read, write) = tokio::io::split(stream);
        let (tx, received) = mpsc::unbounded_channel();
        let mut tasks = vec![tokio::spawn(read_frames(read, tx.clone()))];
        if let Some((conn, flow)) = &quic {
            tasks.push(tokio::spawn(read_datagrams(conn.clone(), *flow, tx)));
        }
        UdpTunnel {
            write,
            received,
            quic,
            tasks,
        }
    }

    /// Sends one datagram as a frame on the stream.
    pub async fn send_frame(&mut self, payload: &[u8]) {
        let mut out = BytesMut::new();
        encode_frame(payload, &mut out).expect("payload fits a frame");
        self.write.write_all(&out).await.expect("write frame");
        self.write.flush().await.expect("flush");
    }

    /// Sends one datagram as a QUIC datagram tagged with this tunnel's flow id.
    pub fn send_datagram(&self, payload: &[u8]) {
        let (conn, flow) = self.quic.as_ref().expect("a QUIC tunnel");
        let datagram = encode_datagram(*flow, payload).expect("fits");
        conn.send_datagram(datagram).expect("QUIC datagram sent");
    }

    /// The next datagram received, or `None` once the stream ended and nothing is left.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.received.recv().await.flatten()
    }

    /// Closes the client's side of the stream (the server ends the tunnel).
    pub async fn close(&mut self) {
        let _ = self.write.shutdown().await;
    }
}

impl Drop for UdpTunnel {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn read_frames(
    mut read: ReadHalf<Box<dyn Duplex>>,
    tx: mpsc::UnboundedSender<Option<Bytes>>,
) {
    let mut buf = BytesMut::new();
    loop {
        while let Ok(Some(frame)) = decode_frame(&mut buf) {
            if tx.send(Some(frame)).is_err() {
                return;
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(None);
                return;
            }
            Ok(_) => {}
        }
    }
}

async fn read_datagrams(
    conn: quinn::Connection,
    flow: u64,
    tx: mpsc::UnboundedSender<Option<Bytes>>,
) {
    while let Ok(datagram) = conn.read_datagram().await {
        if let Ok((f, payload)) = decode_datagram(datagram)
            && f == flow
            && tx.send(Some(payload)).is_err()
        {
            return;
        }
    }
}
