//! SNI passthrough: a TLS connection whose ClientHello names one of a route's
//! names is not terminated here; its raw bytes go to that route's TLS backend
//! (optionally after a PROXY protocol v2 header), so the client sees the
//! backend's own certificate.
//!
//! The ClientHello is read with `MSG_PEEK` and parsed by rustls's [`Acceptor`]
//! on the copy: nothing is consumed, so a connection that matches no route goes
//! on to the normal handshake untouched. A ClientHello split over several TCP
//! segments or TLS records is waited for (a short pause between peeks), within
//! the handshake deadline.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::debug;

use crate::hello::{Hello, HelloReader};
use crate::server::Shared;
use crate::website::Backend;
use crate::website::backend::forward_route;

/// The largest ClientHello looked at; a larger one matches no route.
const MAX_HELLO: usize = 64 * 1024;
/// The first pause between two peeks at an incomplete ClientHello, and the longest.
const PEEK_PAUSE: Duration = Duration::from_millis(2);
const MAX_PEEK_PAUSE: Duration = Duration::from_millis(100);

/// One passthrough route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Server names, lowercase; `*.example.org` covers one label.
    pub names: Vec<String>,
    /// The TLS backend.
    pub backend: Backend,
    /// Send a PROXY protocol v2 header first (default false).
    pub proxy_protocol: bool,
}

impl Route {
    fn covers(&self, name: &str) -> bool {
        self.names
            .iter()
            .any(|pattern| crate::website::certs::covers(pattern, name))
    }
}

/// The SNI of the ClientHello waiting on `tcp`, without consuming it. `None`
/// for no SNI, a stream that is not TLS, or a ClientHello over [`MAX_HELLO`].
/// While the hello is incomplete the pause between peeks doubles, so a client
/// that stalls mid-hello costs little until the handshake deadline.
async fn peek_sni(tcp: &TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = vec![0u8; 4 * 1024];
    let mut reader = HelloReader::default();
    let mut seen = 0;
    let mut pause = PEEK_PAUSE;
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if n > seen {
            match reader.feed(&buf[seen..n]) {
                Hello::Complete { sni } => return Ok(sni),
                Hello::NotTls => return Ok(None),
                Hello::Partial => {}
            }
            seen = n;
            pause = PEEK_PAUSE;
            if n == buf.len() {
                if buf.len() >= MAX_HELLO {
                    return Ok(None);
                }
                buf.resize(buf.len() * 2, 0);
                continue;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PEEK_PAUSE);
    }
}

/// The route for the connection on `tcp`, if its ClientHello names one.
pub(crate) async fn route_for<'a>(shared: &'a Shared, tcp: &TcpStream) -> Option<&'a Route> {
    if shared.passthrough.is_empty() {
        return None;
    }
    let name = match peek_sni(tcp).await {
        Ok(Some(name)) => name,
        Ok(None) => return None,
        Err(e) => {
            debug!(error = %e, "connection ended before its ClientHello");
            return None;
        }
    };
    shared.passthrough.iter().find(|r| r.covers(&name))
}

/// Relays the connection, ClientHello included, to the route's backend.
pub(crate) async fn serve(
    shared: &Shared,
    route: &Route,
    mut tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) {
    let proxied = route.proxy_protocol.then_some((peer, local));
    let (what, closed) = ("passthrough", "passthrough closed");
    forward_route(shared, &route.backend, what, closed, proxied, &mut tcp, 0).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_one_label_wildcards() {
        let route = Route {
            names: vec!["git.example.org".into(), "*.apps.example.org".into()],
            backend: Backend::parse("127.0.0.1:1").unwrap(),
            proxy_protocol: false,
        };
        assert!(route.covers("git.example.org"));
        assert!(route.covers("a.apps.example.org"));
        assert!(!route.covers("apps.example.org"));
        assert!(!route.covers("a.b.apps.example.org"));
        assert!(!route.covers("example.org"));
    }
}
