//! [`Trickle`]: a TCP relay in front of a server that passes the client's bytes on
//! one at a time, one every `gap`, and the server's at once. Each byte is progress
//! a per-read timeout would accept, so a deadline that holds against it is a total
//! one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// What the relay passes on at once before it starts trickling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Nothing: the ClientHello itself trickles.
    Nothing,
    /// The client's first TLS record (its ClientHello) whole, so the server
    /// answers and the client's second flight (certificate, Finished) trickles.
    FirstRecord,
}

/// How the trickled connection ended.
#[derive(Debug, Clone, Copy)]
pub struct Trickled {
    /// The relay's address towards the server: the `peer=` of the server's log.
    pub peer: SocketAddr,
    /// From the relay's connection to the server until the server closed it.
    pub held: Duration,
    /// The client's bytes passed on by then, head included.
    pub passed: usize,
    /// How many of them were the head passed at once.
    pub head: usize,
}

/// A one-connection trickling relay. See the module docs.
#[derive(Debug)]
pub struct Trickle {
    addr: SocketAddr,
    outcome: oneshot::Receiver<Trickled>,
    task: JoinHandle<()>,
}

impl Trickle {
    /// Listens on `127.0.0.1:0`; relays the first connection to `server`.
    pub async fn start(server: SocketAddr, gap: Duration, head: Head) -> Trickle {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("local_addr");
        let (tx, outcome) = oneshot::channel();
        let task = tokio::spawn(async move {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let upstream = TcpStream::connect(server).await.expect("relay to server");
            let _ = tx.send(relay(client, upstream, gap, head).await);
        });
        Trickle {
            addr,
            outcome,
            task,
        }
    }

    /// Where the client connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits (up to [`crate::EVENTUALLY`]) for the server to close the connection.
    pub async fn closed(&mut self) -> Trickled {
        crate::within(
            "the server closing the trickled connection",
            crate::EVENTUALLY,
            &mut self.outcome,
        )
        .await
        .expect("the relay ran")
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: TcpStream, gap: Duration, head: Head) -> Trickled {
    let started = Instant::now();
    let peer = upstream.local_addr().expect("local_addr");
    let (mut client_r, mut client_w) = client.into_split();
    let (mut up_r, mut up_w) = upstream.into_split();
    let passed = Arc::new(AtomicUsize::new(0));
    let head_len = Arc::new(AtomicUsize::new(0));

    // Everything the client sends is queued as it comes...
    let (chunks_tx, mut chunks) = mpsc::unbounded_channel::<Vec<u8>>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = client_r.read(&mut buf).await {
            if chunks_tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // ...and passed on one byte per gap, after the head.
    let (count, head_count) = (passed.clone(), head_len.clone());
    let writer = tokio::spawn(async move {
        let mut queue: Vec<u8> = Vec::new();
        if head == Head::FirstRecord {
            let len = loop {
                if queue.len() >= 5 {
                    let len = 5 + usize::from(u16::from_be_bytes([queue[3], queue[4]]));
                    if queue.len() >= len {
                        break len;
                    }
                }
                match chunks.recv().await {
                    Some(chunk) => queue.extend_from_slice(&chunk),
                    None => return,
                }
            };
            if up_w.write_all(&queue[..len]).await.is_err() {
                return;
            }
            queue.drain(..len);
            count.store(len, Ordering::SeqCst);
            head_count.store(len, Ordering::SeqCst);
        }
        loop {
            while let Ok(chunk) = chunks.try_recv() {
                queue.extend_from_slice(&chunk);
            }
            if queue.is_empty() {
                match chunks.recv().await {
                    Some(chunk) => queue.extend_from_slice(&chunk),
                    None => return,
                }
            }
            if up_w.write_all(&queue[..1]).await.is_err() {
                return;
            }
            queue.remove(0);
            count.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(gap).await;
        }
    });
    // The server's bytes go straight back, until it closes.
    let _ = tokio::io::copy(&mut up_r, &mut client_w).await;
    let held = started.elapsed();
    writer.abort();
    reader.abort();
    Trickled {
        peer,
        held,
        passed: passed.load(Ordering::SeqCst),
        head: head_len.load(Ordering::SeqCst),
    }
}
