//! A canned tp server over QUIC (quinn) on the UDP port with the number of its
//! TLS/TCP listener, as the real server does: one bidirectional stream per
//! tunnel, the same hello and answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, VarInt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tp_proto::Hello;

use super::{Behaviour, ServerSetup, serve_tls, serve_tunnel, server_config};

/// A QUIC server; it keeps running until the test's runtime ends.
pub(crate) struct QuicServer {
    connections: Arc<Mutex<Vec<Connection>>>,
}

impl QuicServer {
    /// Serves tunnels over QUIC on 127.0.0.1:`port` (UDP).
    pub(crate) fn start(
        setup: ServerSetup<'_>,
        behaviour: Behaviour,
        port: u16,
        hellos: mpsc::UnboundedSender<Hello>,
    ) -> std::io::Result<QuicServer> {
        let crypto = QuicServerConfig::try_from(Arc::new(server_config(setup))).unwrap();
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], port)))?;
        let connections = Arc::new(Mutex::new(Vec::new()));
        let kept = connections.clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let kept = kept.clone();
                let hellos = hellos.clone();
                tokio::spawn(async move {
                    // A refused client certificate fails here: quinn closes the
                    // connection with the TLS alert.
                    let Ok(conn) = incoming.await else {
                        return;
                    };
                    kept.lock().unwrap().push(conn.clone());
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        let hellos = hellos.clone();
                        tokio::spawn(async move {
                            let stream = tp_net::quic::stream(send, recv);
                            serve_tunnel(stream, behaviour, &hellos).await;
                        });
                    }
                });
            }
        });
        Ok(QuicServer { connections })
    }

    /// How many QUIC connections completed their handshake so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// Closes every connection, as a restarting server would.
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
    pub(crate) quic: QuicServer,
}

/// Starts a TLS/TCP server on 127.0.0.1:0 and a QUIC server on the same UDP
/// port number.
pub(crate) async fn start_dual(setup: ServerSetup<'_>, behaviour: Behaviour) -> Dual {
    let (tx, hellos) = mpsc::unbounded_channel();
    // The UDP port of a free TCP port is almost always free too; retry if not.
    for _ in 0..20 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let Ok(quic) = QuicServer::start(setup, behaviour, port, tx.clone()) else {
            continue;
        };
        let addr = serve_tls(listener, setup, behaviour, tx);
        return Dual { addr, hellos, quic };
    }
    panic!("no port number free on both TCP and UDP");
}
