//! The sockets a server serves on: TLS over TCP, and QUIC over UDP on the same port
//! number, so one address (`tp.example.org:443`) names both transports; and the
//! TCP listeners of `[[terminate]]` routes with ports of their own (`listen`).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use tokio::net::{TcpListener, TcpStream};

use crate::terminate::Route;
use crate::terminate::port::RoutePort;

/// How often binding port 0 is retried when UDP's half of the chosen port is taken.
const PORT_ZERO_TRIES: usize = 20;

/// A TCP listener and, for QUIC, a UDP socket on the same address; and the
/// listeners of routes with their own ports.
#[derive(Debug)]
pub struct Listeners {
    pub(crate) tcp: TcpListener,
    pub(crate) udp: Option<UdpSocket>,
    pub(crate) routes: Vec<RouteListener>,
}

/// A listener serving one `[[terminate]]` route.
#[derive(Debug)]
pub(crate) struct RouteListener {
    pub(crate) port: RoutePort,
    pub(crate) tcp: TcpListener,
}

impl Listeners {
    /// Binds TCP at `addr` and, with `quic`, UDP at the same address. With port 0
    /// both get the same free port.
    pub async fn bind(addr: SocketAddr, quic: bool) -> io::Result<Listeners> {
        if !quic {
            return Ok(Listeners {
                tcp: TcpListener::bind(addr).await?,
                udp: None,
                routes: Vec::new(),
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
                        routes: Vec::new(),
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
        Ok(Listeners {
            tcp,
            udp,
            routes: Vec::new(),
        })
    }

    /// Also binds (TCP) every `listen` address of `routes`; each serves only
    /// its route. With port 0, each gets a free port of its own.
    pub async fn bind_routes(mut self, routes: &[Route]) -> io::Result<Listeners> {
        for (index, route) in routes.iter().enumerate() {
            for &configured in &route.listen {
                let tcp = TcpListener::bind(configured).await.map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("TCP {configured} ([[terminate]] listen): {e}"),
                    )
                })?;
                let port = RoutePort { index, configured };
                self.routes.push(RouteListener { port, tcp });
            }
        }
        Ok(self)
    }

    /// The routes' listeners, in config order: the address as configured, and
    /// as bound (they differ with port 0).
    pub fn route_addrs(&self) -> io::Result<Vec<(SocketAddr, SocketAddr)>> {
        (self.routes.iter())
            .map(|r| Ok((r.port.configured, r.tcp.local_addr()?)))
            .collect()
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

/// The TCP listeners of a run: the main one, then the routes'.
#[derive(Debug)]
pub(crate) struct TcpListeners {
    pub(crate) main: TcpListener,
    pub(crate) routes: Vec<RouteListener>,
    /// Which listener is polled first next time.
    turn: AtomicUsize,
}

impl TcpListeners {
    pub(crate) fn new(main: TcpListener, routes: Vec<RouteListener>) -> TcpListeners {
        TcpListeners {
            main,
            routes,
            turn: AtomicUsize::new(0),
        }
    }

    /// The next connection on any listener, with the route whose listener took
    /// it (`None`: the main one). Listeners take turns being polled first, so a
    /// busy one cannot starve the others. Cancel-safe.
    pub(crate) async fn accept(&self) -> (Option<RoutePort>, io::Result<(TcpStream, SocketAddr)>) {
        let count = 1 + self.routes.len();
        let first = self.turn.fetch_add(1, Ordering::Relaxed) % count;
        std::future::poll_fn(|cx| {
            for i in (first..count).chain(0..first) {
                let (port, listener) = match i.checked_sub(1) {
                    None => (None, &self.main),
                    Some(r) => (Some(self.routes[r].port), &self.routes[r].tcp),
                };
                if let Poll::Ready(accepted) = listener.poll_accept(cx) {
                    return Poll::Ready((port, accepted));
                }
            }
            Poll::Pending
        })
        .await
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

    #[tokio::test]
    async fn every_listener_is_accepted_from() {
        let route = |listen: &[&str]| Route {
            name: None,
            names: Vec::new(),
            backend: crate::website::Backend::parse("127.0.0.1:53").expect("backend"),
            proxy_protocol: false,
            alpn: Vec::new(),
            listen: listen.iter().map(|a| a.parse().expect("addr")).collect(),
            client_cert: false,
        };
        let routes = [route(&[]), route(&["127.0.0.1:0", "127.0.0.1:0"])];
        let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), false)
            .await
            .expect("bind");
        let listeners = listeners.bind_routes(&routes).await.expect("routes");
        let addrs = listeners.route_addrs().expect("addrs");
        assert_eq!(addrs.len(), 2);
        assert_ne!(addrs[0].1, addrs[1].1, "port 0 gives each its own port");
        let main = listeners.local_addr().expect("main");
        let all = TcpListeners::new(listeners.tcp, listeners.routes);
        for addr in [main, addrs[0].1, addrs[1].1, main] {
            let _client = TcpStream::connect(addr).await.expect("connect");
            let (port, accepted) = all.accept().await;
            let (tcp, _) = accepted.expect("accepted");
            assert_eq!(tcp.local_addr().expect("local"), addr);
            assert_eq!(port.map(|p| p.index), (addr != main).then_some(1));
        }
    }
}
