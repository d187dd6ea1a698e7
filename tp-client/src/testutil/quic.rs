//! A canned tp server over QUIC (quinn) on the UDP port with the number of its
//! TLS/TCP listener, as the real server does: one bidirectional stream per
//! tunnel, the same hello and answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, ConnectionError, Endpoint, VarInt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tp_proto::Hello;

use super::udp::ServerFlows;
use super::{Behaviour, Ended, Reports, ServerSetup, serve_tls, serve_tunnel, server_config};

/// A QUIC server; it keeps running until the test's runtime ends.
pub(crate) struct QuicServer {
    endpoint: Endpoint,
    connections: Arc<Mutex<Vec<Connection>>>,
}

impl QuicServer {
    /// Serves tunnels over QUIC on 127.0.0.1:`port` (UDP).
    pub(crate) fn start(
        setup: ServerSetup<'_>,
        behaviour: Behaviour,
        port: u16,
        reports: impl Into<Reports>,
    ) -> std::io::Result<QuicServer> {
        let reports = reports.into();
        let crypto = QuicServerConfig::try_from(Arc::new(server_config(setup))).unwrap();
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], port)))?;
        let connections = Arc::new(Mutex::new(Vec::new()));
        let kept = connections.clone();
        let accepting = endpoint.clone();
        tokio::spawn(async move {
            let endpoint = accepting;
            while let Some(incoming) = endpoint.accept().await {
                let kept = kept.clone();
                let reports = reports.clone();
                tokio::spawn(async move {
                    // A refused client certificate fails here: quinn closes the
                    // connection with the TLS alert.
                    let Ok(conn) = incoming.await else {
                        return;
                    };
                    kept.lock().unwrap().push(conn.clone());
                    let flows = ServerFlows::route(conn.clone());
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        let reports = reports.clone();
                        // The flow id of a UDP tunnel is its stream's id.
                        let datagrams = flows.register(&conn, VarInt::from(send.id()).into_inner());
                        tokio::spawn(async move {
                            let stream = tp_net::quic::stream(send, recv);
                            serve_tunnel(stream, behaviour, &reports, Some(datagrams)).await;
                        });
                    }
                });
            }
        });
        Ok(QuicServer {
            endpoint,
            connections,
        })
    }

    /// How many QUIC connections completed their handshake so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// The server's UDP address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap()
    }

    /// Completes when the `index`th connection (in handshake order) closes,
    /// with why.
    pub(crate) async fn closed(&self, index: usize) -> ConnectionError {
        let conn = self.connections.lock().unwrap()[index].clone();
        conn.closed().await
    }

    /// Whether the server could open a bidirectional stream to the client on
    /// its first connection within `wait` (the client grants no stream credit).
    pub(crate) async fn can_open_a_stream(&self, wait: Duration) -> bool {
        let conn = self.connections.lock().unwrap()[0].clone();
        tokio::time::timeout(wait, conn.open_bi()).await.is_ok()
    }

    /// Closes every connection, as a server shutting down does.
    pub(crate) fn close_all(&self) {
        for conn in self.connections.lock().unwrap().iter() {
            conn.close(VarInt::from_u32(1), b"test closes");
        }
    }
}

/// A server on both transports, at one port number.
pub(crate) struct Dual {
    pub(crate) addr: SocketAddr,
    pub(crate) hellos: mpsc::UnboundedReceiver<Hello>,
    /// How tunnels ended, over either transport (for the behaviours that read
    /// to the end).
    pub(crate) ends: mpsc::UnboundedReceiver<Ended>,
    pub(crate) quic: QuicServer,
}

impl Dual {
    /// How the next tunnel ended, waiting at most 10 seconds.
    pub(crate) async fn next_end(&mut self) -> Ended {
        tokio::time::timeout(Duration::from_secs(10), self.ends.recv())
            .await
            .expect("the server sees the tunnel end")
            .expect("the server runs")
    }
}

/// Starts a TLS/TCP server on 127.0.0.1:0 and a QUIC server on the same UDP
/// port number.
pub(crate) async fn start_dual(setup: ServerSetup<'_>, behaviour: Behaviour) -> Dual {
    let (tx, hellos) = mpsc::unbounded_channel();
    let (ends_tx, ends) = mpsc::unbounded_channel();
    let reports = Reports {
        hellos: tx,
        ends: ends_tx,
    };
    // The UDP port of a free TCP port is almost always free too; retry if not.
    for _ in 0..20 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let Ok(quic) = QuicServer::start(setup, behaviour, port, reports.clone()) else {
            continue;
        };
        let addr = serve_tls(listener, setup, behaviour, reports);
        return Dual {
            addr,
            hellos,
            ends,
            quic,
        };
    }
    panic!("no port number free on both TCP and UDP");
}

/// A TLS/TCP server whose UDP port number is held by a socket that never
/// answers: a server where UDP is blocked. Without the held socket, another
/// test's QUIC server could take that UDP port and answer.
pub(crate) struct TcpOnly {
    pub(crate) addr: SocketAddr,
    _hellos: mpsc::UnboundedReceiver<Hello>,
    pub(crate) silent_udp: std::net::UdpSocket,
}

/// Starts a TLS/TCP server on 127.0.0.1:0 with its UDP port held silent.
pub(crate) async fn start_tcp_only(setup: ServerSetup<'_>, behaviour: Behaviour) -> TcpOnly {
    for _ in 0..20 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let Ok(silent_udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) else {
            continue;
        };
        let (tx, hellos) = mpsc::unbounded_channel();
        let addr = serve_tls(listener, setup, behaviour, tx);
        return TcpOnly {
            addr,
            _hellos: hellos,
            silent_udp,
        };
    }
    panic!("no port number free on both TCP and UDP");
}

/// A UDP relay in front of a QUIC server. Pointing it at another server is a
/// server restart as the client sees it: same address, no state, no goodbye.
pub(crate) struct UdpRelay {
    pub(crate) addr: SocketAddr,
    backend: Arc<Mutex<SocketAddr>>,
}

impl UdpRelay {
    /// Relays datagrams between one client and `backend`.
    pub(crate) async fn start(backend: SocketAddr) -> UdpRelay {
        UdpRelay::start_delayed(backend, Duration::ZERO).await
    }

    /// Relays datagrams between one client and `backend`, holding each one
    /// from the client for `delay` (in order): a path with that round trip.
    pub(crate) async fn start_delayed(backend: SocketAddr, delay: Duration) -> UdpRelay {
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let backend = Arc::new(Mutex::new(backend));
        let client = Arc::new(Mutex::new(None::<SocketAddr>));
        let (f, b, to, from) = (front.clone(), back.clone(), backend.clone(), client.clone());
        let backend_now = backend.clone();
        let (delayed, mut due) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, peer)) = f.recv_from(&mut buf).await {
                *from.lock().unwrap() = Some(peer);
                let at = tokio::time::Instant::now() + delay;
                if delayed.send((at, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Some((at, datagram)) = due.recv().await {
                tokio::time::sleep_until(at).await;
                let target = *to.lock().unwrap();
                let _ = b.send_to(&datagram, target).await;
            }
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, src)) = back.recv_from(&mut buf).await {
                // A server the relay no longer points at is gone.
                if src != *backend_now.lock().unwrap() {
                    continue;
                }
                let peer = *client.lock().unwrap();
                if let Some(peer) = peer {
                    let _ = front.send_to(&buf[..n], peer).await;
                }
            }
        });
        UdpRelay { addr, backend }
    }

    /// Sends everything to `backend` from now on.
    pub(crate) fn point_at(&self, backend: SocketAddr) {
        *self.backend.lock().unwrap() = backend;
    }
}
