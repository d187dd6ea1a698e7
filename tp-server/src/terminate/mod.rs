//! TLS in front of any TCP service: a ClientHello that a `[[terminate]]` route
//! matches on the main port (its SNI is one of the route's names, and it offers
//! one of the route's ALPN ids, where the route lists any), or any connection to
//! one of the route's own `listen` addresses ([`port`]), gets the website's
//! certificates (by SNI) and the route's ALPN, and the decrypted bytes go to the
//! route's plain TCP backend (DNS over TLS in front of a local resolver, an old
//! Redis...), optionally after a PROXY protocol v2 header. DNS-over-TLS clients
//! often send no SNI: a route with `alpn = ["dot"]` and no names takes them on
//! the main port, and a route listening on 853 takes them without either.
//!
//! A route with `client_cert = "required"` asks for a client certificate in a
//! TLS 1.3 handshake without resumption ([`tls`]), verified exactly as a
//! tunnel's, and forwards only identities the policy grants the route
//! ([`gate`]); everyone else is closed before the backend is dialed.

pub(crate) mod gate;
pub(crate) mod port;
mod tls;

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tp_net::read_ahead::ReadAhead;

pub(crate) use self::tls::configs;
use crate::server::Shared;
use crate::website::Backend;
use crate::website::backend::forward_route;

/// One terminating route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Its name (`[a-z0-9_-]`, unique), which policy rules grant in `routes`;
    /// required with `client_cert`.
    pub name: Option<String>,
    /// Server names, lowercase; `*.example.org` covers one label. Empty: any
    /// name, or none (then `alpn` decides).
    pub names: Vec<String>,
    /// The plain TCP backend.
    pub backend: Backend,
    /// Send a PROXY protocol v2 header first (default false).
    pub proxy_protocol: bool,
    /// ALPN ids (e.g. `["dot"]`): on the main port a client must offer one, and
    /// the server selects it. Empty: ALPN plays no part.
    pub alpn: Vec<String>,
    /// Addresses of the route's own TCP listeners (e.g. `0.0.0.0:853`): every
    /// connection to them gets this route, whatever its SNI and ALPN.
    pub listen: Vec<SocketAddr>,
    /// A verified client certificate is required, and the policy must grant its
    /// identity this route (`routes = [NAME]`).
    pub client_cert: bool,
}

impl Route {
    /// Whether this route takes a ClientHello on the main port with server name
    /// `name` offering the ALPN ids `offered`. A route with neither `names` nor
    /// `alpn` lives on its own listeners only.
    pub(crate) fn matches(&self, name: Option<&str>, offered: &[&[u8]]) -> bool {
        if self.names.is_empty() && self.alpn.is_empty() {
            return false;
        }
        let named = self.names.is_empty()
            || name.is_some_and(|name| {
                self.names
                    .iter()
                    .any(|pattern| crate::website::certs::covers(pattern, name))
            });
        let alpn =
            self.alpn.is_empty() || self.alpn.iter().any(|id| offered.contains(&id.as_bytes()));
        named && alpn
    }

    /// The name for logs: `name`, else the backend.
    pub(crate) fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.backend.to_string(),
        }
    }
}

/// Relays the decrypted connection to the route's backend, once [`gate`] lets
/// the client through; closes it (nothing dialed, nothing forwarded) otherwise.
pub(crate) async fn serve(
    shared: &Shared,
    route: &Route,
    mut client: TlsStream<ReadAhead<TcpStream>>,
    peer: SocketAddr,
    local: SocketAddr,
) {
    if !gate::admits(shared, route, client.get_ref().1) {
        gate::close(client).await;
        return;
    }
    let proxied = route.proxy_protocol.then_some((peer, local));
    let (what, closed) = ("terminate", "terminated connection closed");
    let offset = tp_net::relay::TLS_WRITE_OFFSET;
    forward_route(
        shared,
        &route.backend,
        what,
        closed,
        proxied,
        &mut client,
        offset,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(names: &[&str], alpn: &[&str]) -> Route {
        Route {
            name: None,
            names: names.iter().map(|n| n.to_string()).collect(),
            backend: Backend::parse("127.0.0.1:53").unwrap(),
            proxy_protocol: false,
            alpn: alpn.iter().map(|n| n.to_string()).collect(),
            listen: Vec::new(),
            client_cert: false,
        }
    }

    #[test]
    fn names_and_alpn_both_have_to_match() {
        let by_name = route(&["dns.example.org"], &[]);
        assert!(by_name.matches(Some("dns.example.org"), &[]));
        assert!(!by_name.matches(Some("www.example.org"), &[]));
        assert!(!by_name.matches(None, &[b"dot"]));

        let by_alpn = route(&[], &["dot"]);
        assert!(by_alpn.matches(None, &[b"dot"]));
        assert!(by_alpn.matches(Some("anything"), &[b"h2", b"dot"]));
        assert!(!by_alpn.matches(None, &[b"http/1.1"]));

        let both = route(&["*.example.org"], &["dot"]);
        assert!(both.matches(Some("dns.example.org"), &[b"dot"]));
        assert!(!both.matches(Some("dns.example.org"), &[b"h2"]));
        assert!(!both.matches(None, &[b"dot"]));
    }

    #[test]
    fn a_route_with_only_its_own_listeners_is_not_on_the_main_port() {
        let own = Route {
            listen: vec!["127.0.0.1:853".parse().unwrap()],
            ..route(&[], &[])
        };
        assert!(!own.matches(None, &[]));
        assert!(!own.matches(Some("dns.example.org"), &[b"dot"]));
    }
}
