//! The sockets a server serves on: TLS over TCP, and QUIC over UDP on the same port
//! number, so one address (`tp.example.org:443`) names both transports.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use tokio::net::TcpListener;

/// How often binding port 0 is retried when UDP's half of the chosen port is taken.
const PORT_ZERO_TRIES: usize = 20;

/// A TCP listener and, for QUIC, a UDP socket on the same address.
#[derive(Debug)]
pub struct Listeners {
    pub(crate) tcp: TcpListener,
    pub(crate) udp: Option<UdpSocket>,
}

impl Listeners {
    /// Binds TCP at `addr` and, with `quic`, UDP at the same address. With port 0
    /// both get the same free port.
    pub async fn bind(addr: SocketAddr, quic: bool) -> io::Result<Listeners> {
        if !quic {
            return Ok(Listeners {
                tcp: TcpListener::bind(addr).await?,
                udp: None,
            });
        }
        let tries = if addr.port() == 0 { PORT_ZERO_TRIES } else { 1 };
        let mut last = None;
        for _ in 0..tries {
            let tcp = TcpListener::bind(addr)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("TCP {addr}: {e}")))?;
            let bound = tcp.local_addr()?;
            match UdpSocket::bind(bound) {
                Ok(udp) => {
                    udp.set_nonblocking(true)?;
                    return Ok(Listeners {
                        tcp,
                        udp: Some(udp),
                    });
                }
                Err(e) => last = Some(io::Error::new(e.kind(), format!("UDP {bound}: {e}"))),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no port")))
    }

    /// Listeners from sockets bound elsewhere; `udp`, if given, serves QUIC.
    pub fn from_sockets(tcp: TcpListener, udp: Option<UdpSocket>) -> io::Result<Listeners> {
        if let Some(udp) = &udp {
            udp.set_nonblocking(true)?;
        }
        Ok(Listeners { tcp, udp })
    }

    /// The TCP address (UDP, when present, has the same one).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Whether a UDP socket for QUIC is bound.
    pub fn has_quic(&self) -> bool {
        self.udp.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_gives_both_transports_one_port() {
        let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), true)
            .await
            .expect("bind");
        let tcp = listeners.local_addr().expect("tcp addr");
        let udp = listeners
            .udp
            .as_ref()
            .expect("udp")
            .local_addr()
            .expect("udp addr");
        assert_eq!(tcp, udp);
        assert_ne!(tcp.port(), 0);
    }

    #[tokio::test]
    async fn a_taken_udp_port_is_an_error_naming_udp() {
        // A UDP port whose TCP twin is free (other tests bind ports too).
        for _ in 0..50 {
            let taken = UdpSocket::bind("127.0.0.1:0").expect("udp");
            let addr = taken.local_addr().expect("addr");
            if std::net::TcpListener::bind(addr).is_err() {
                continue;
            }
            let err = Listeners::bind(addr, true).await.expect_err("UDP is taken");
            assert!(err.to_string().contains("UDP"), "{err}");
            return;
        }
        panic!("no UDP port with a free TCP twin in 50 tries");
    }
}
