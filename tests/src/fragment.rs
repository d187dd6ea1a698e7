//! A relay that splits a client's ClientHello: the TLS record that carries it
//! is cut into records of a few bytes each, every record written as its own
//! TCP segment after a short pause. Everything after the ClientHello passes
//! untouched. A TLS peer must accept this (RFC 8446, section 5.1: handshake
//! messages may be fragmented across records), and a router that reads the
//! ClientHello must wait for all of it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The pause between two of the small records.
const PAUSE: Duration = Duration::from_millis(3);

/// A running relay on 127.0.0.1 to an upstream.
#[derive(Debug)]
pub struct Fragmenter {
    /// Where clients connect.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Fragmenter {
    /// Relays to `upstream`, cutting each client's first TLS record into
    /// records of `record` payload bytes.
    pub async fn start(upstream: SocketAddr, record: usize) -> Fragmenter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, record));
            }
        });
        Fragmenter { addr, task }
    }
}

impl Drop for Fragmenter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, record: usize) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    // The first record: a 5-byte header, then its payload.
    let mut header = [0u8; 5];
    if client.read_exact(&mut header).await.is_err() {
        return;
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let mut payload = vec![0u8; len];
    if client.read_exact(&mut payload).await.is_err() {
        return;
    }
    for piece in payload.chunks(record.max(1)) {
        let mut small = Vec::with_capacity(5 + piece.len());
        small.extend_from_slice(&header[..3]);
        let piece_len = u16::try_from(piece.len()).expect("a piece of a record fits a record");
        small.extend_from_slice(&piece_len.to_be_bytes());
        small.extend_from_slice(piece);
        if server.write_all(&small).await.is_err() {
            return;
        }
        tokio::time::sleep(PAUSE).await;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
