//! Local TCP targets for tunnels, on `127.0.0.1:0`: an echo server that counts the
//! connections it accepts, an exchange server that checksums what it receives
//! while sending a stream of its own, and a port that never answers a dial.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::data::{Summary, read_summary, write_stream};

/// Echoes every connection back and shuts its write side at EOF. Counts accepts.
#[derive(Debug)]
pub struct EchoTarget {
    port: u16,
    v6: bool,
    accepted: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl EchoTarget {
    /// Listens on `127.0.0.1:0`.
    pub async fn start() -> EchoTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let port = listener.local_addr().expect("local_addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let tasks = vec![tokio::spawn(echo_loop(listener, accepted.clone()))];
        EchoTarget {
            port,
            v6: false,
            accepted,
            tasks,
        }
    }

    /// Like [`start`](Self::start), and also on `[::1]` with the same port when that
    /// port is free there (tried a few times with fresh ports). Check with
    /// [`has_v6`](Self::has_v6).
    pub async fn start_dual() -> EchoTarget {
        let mut target = EchoTarget::start().await;
        for _ in 0..20 {
            if let Ok(v6) = TcpListener::bind(("::1", target.port)).await {
                target.v6 = true;
                target
                    .tasks
                    .push(tokio::spawn(echo_loop(v6, target.accepted.clone())));
                return target;
            }
            target = EchoTarget::start().await;
        }
        target
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether it also listens on `[::1]`.
    pub fn has_v6(&self) -> bool {
        self.v6
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections were accepted. After a tunnel's `ok` the
    /// count may lag: the server answers once its dial connects, and this
    /// target's accept loop counts the connection a moment later.
    pub async fn expect_accepted(&self, n: usize) {
        crate::assert_eventually!(
            self.accepted() == n,
            "the target saw {} connections, not {n}",
            self.accepted()
        );
    }
}

impl Drop for EchoTarget {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn echo_loop(listener: TcpListener, accepted: Arc<AtomicUsize>) {
    while let Ok((mut tcp, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let (mut r, mut w) = tcp.split();
            if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                let _ = w.shutdown().await;
            }
        });
    }
}

/// What an [`ExchangeTarget`] saw on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The seed and length the client asked for (its 16-byte header).
    pub asked: (u64, u64),
    /// Everything it received after the header, to EOF.
    pub received: Summary,
}

/// Per connection: reads a 16-byte header (seed, length, little-endian u64s), then
/// sends that many bytes of the seeded stream and shuts its write side, while
/// reading and checksumming everything else the client sends until EOF. Reports
/// each connection's [`Exchange`].
#[derive(Debug)]
pub struct ExchangeTarget {
    addr: SocketAddr,
    reports: mpsc::UnboundedReceiver<Exchange>,
    task: JoinHandle<()>,
}

impl ExchangeTarget {
    /// Listens on `127.0.0.1:0`.
    pub async fn start() -> ExchangeTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let addr = listener.local_addr().expect("local_addr");
        let (tx, reports) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(exchange(tcp, tx.clone()));
            }
        });
        ExchangeTarget {
            addr,
            reports,
            task,
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next finished connection's report.
    pub async fn next_report(&mut self) -> Exchange {
        crate::within(
            "the exchange target's report",
            crate::EVENTUALLY,
            self.reports.recv(),
        )
        .await
        .expect("the exchange target is running")
    }
}

impl Drop for ExchangeTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The header an [`ExchangeTarget`] expects.
pub fn exchange_header(seed: u64, len: u64) -> [u8; 16] {
    let mut header = [0u8; 16];
    header[..8].copy_from_slice(&seed.to_le_bytes());
    header[8..].copy_from_slice(&len.to_le_bytes());
    header
}

async fn exchange(tcp: TcpStream, reports: mpsc::UnboundedSender<Exchange>) {
    let (mut r, mut w) = tcp.into_split();
    let mut header = [0u8; 16];
    if r.read_exact(&mut header).await.is_err() {
        return;
    }
    let seed = u64::from_le_bytes(header[..8].try_into().unwrap_or_default());
    let len = u64::from_le_bytes(header[8..].try_into().unwrap_or_default());
    let send = async move {
        let _ = write_stream(&mut w, seed, len).await;
        let _ = w.shutdown().await;
    };
    let receive = async move { read_summary(&mut r).await };
    let ((), received) = tokio::join!(send, receive);
    if let Ok(received) = received {
        let _ = reports.send(Exchange {
            asked: (seed, len),
            received,
        });
    }
}

/// A TCP port on 127.0.0.1 that never completes a connection: a listener whose
/// accept queue is full and never accepted from, so the kernel drops every further
/// SYN, as a firewall that drops packets does. A dial to it waits until its own
/// deadline.
#[derive(Debug)]
pub struct SilentTarget {
    addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

impl SilentTarget {
    /// Listens with the smallest backlog and fills it.
    pub async fn start() -> SilentTarget {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("local_addr");
        let mut queued = Vec::new();
        // Linux queues backlog + 1 connections; the first dial that does not
        // complete shows the queue is full.
        for _ in 0..16 {
            let dial = TcpStream::connect(addr);
            match tokio::time::timeout(std::time::Duration::from_millis(300), dial).await {
                Ok(Ok(tcp)) => queued.push(tcp),
                Ok(Err(e)) => panic!("filling the silent target's queue: {e}"),
                Err(_) => {
                    return SilentTarget {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    };
                }
            }
        }
        panic!("the accept queue of a listener with backlog 0 never filled");
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}
