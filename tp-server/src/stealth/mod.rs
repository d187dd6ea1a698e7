//! Stealth mode: on the server names in `[stealth] names`, nothing in the
//! clear tells a tp client from a browser visiting the site. Every client on
//! such a name gets the website's handshake (its certificates, its ALPN ids;
//! ALPN `tp/1` is refused as any unknown id is), and is asked for an optional
//! client certificate ([`verifier`]). Once the handshake is done, only a
//! certificate that verifies, on TLS 1.3, followed by a tp hello selects the
//! tunnel: the hello is a JSON line, so its first byte is `{`, which neither
//! HTTP/2's preface, an HTTP/1 request line nor a TLS record starts with.
//! Everyone else, with a certificate or without, gets the website (and the
//! Signal relay) with the bytes read so far ([`prefixed`]).

pub(crate) mod prefixed;
pub(crate) mod verifier;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ProtocolVersion;
use rustls_pki_types::CertificateDer;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tp_net::read_ahead::ReadAhead;
use tracing::{Span, debug, info};

use crate::server::{RunContext, Shared};
use crate::session::{self, Origin};
use crate::slots::HandshakeSlot;
use prefixed::Prefixed;

/// The names in stealth mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StealthSettings {
    /// Server names, lowercase; `*.example.org` covers one label, and `*`
    /// covers every connection, with a server name or without.
    pub names: Vec<String>,
}

impl StealthSettings {
    /// Whether a ClientHello with server name `name` is in stealth mode.
    pub(crate) fn covers(&self, name: Option<&str>) -> bool {
        self.names.iter().any(|pattern| {
            pattern == "*" || name.is_some_and(|name| crate::website::certs::covers(pattern, name))
        })
    }

    /// Whether any name is in stealth mode.
    pub fn enabled(&self) -> bool {
        !self.names.is_empty()
    }

    /// Whether every connection is (`*`).
    pub fn everywhere(&self) -> bool {
        self.names.iter().any(|n| n == "*")
    }

    /// Whether a route for the server names `names` (patterns; empty: any
    /// name) can take connections to a stealth name.
    pub fn overlaps(&self, names: &[String]) -> bool {
        use crate::website::certs::covers;
        self.enabled()
            && (names.is_empty()
                || self.everywhere()
                || self
                    .names
                    .iter()
                    .any(|s| names.iter().any(|n| s == n || covers(s, n) || covers(n, s))))
    }
}

/// What an operator with stealth names and QUIC on should know.
pub const QUIC_WARNING: &str = "stealth mode: QUIC answers ALPN tp/1 on UDP to anyone who offers it, \
     so an active prober can still find tp there; set [quic] enabled = false to leave nothing";

/// How many bytes are read to tell a hello from HTTP; whatever else arrived
/// with them goes on with them.
const FIRST_READ: usize = 4 * 1024;

/// Serves a stealth connection (its handshake done) to its end: a tunnel, or
/// the website. `other` is its place among the connections that are not
/// tunnels, given back when it turns out to be one.
///
/// The certificate is verified before anything is read: a client without a
/// certificate that verifies goes to the website at once, exactly as on any
/// other name, whatever it presented, so strangers see no difference. Only
/// holders of a valid certificate have their first bytes read.
pub(crate) async fn serve(
    shared: &Shared,
    mut tls: Box<TlsStream<ReadAhead<TcpStream>>>,
    peer: SocketAddr,
    local: SocketAddr,
    ctx: RunContext,
    other: HandshakeSlot,
) {
    let (_, conn) = tls.get_ref();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let alpn_text = alpn
        .as_deref()
        .map(String::from_utf8_lossy)
        .map(String::from);
    let chain: Option<Arc<[CertificateDer<'static>]>> = conn
        .peer_certificates()
        .filter(|chain| !chain.is_empty())
        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect());
    // Over TLS 1.2 the certificate travelled in the clear: never a tunnel.
    let tls13 = conn.protocol_version() == Some(ProtocolVersion::TLSv1_3);
    let verified = match (chain, tls13) {
        (Some(chain), true) => match shared.reverify(&chain) {
            Ok(()) => Some(chain),
            Err(e) => {
                refused(&e);
                None
            }
        },
        _ => None,
    };
    let mut first = Vec::new();
    if let Some(chain) = verified {
        let mut buf = vec![0u8; FIRST_READ];
        match tokio::time::timeout(shared.limits.hello_timeout, tls.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => {
                buf.truncate(n);
                first = buf;
            }
            // Silent: the website decides what a silent client gets.
            Err(_) => {}
        }
        if first.first() == Some(&b'{') {
            drop(other);
            let stream = Prefixed::new(first, tls);
            return tunnel(shared, stream, peer, chain, alpn_text, ctx).await;
        }
        debug!("stealth: a verified client certificate, then no tp hello");
    }
    debug!(alpn = ?alpn_text, "website connection");
    let alpn = alpn.as_deref();
    crate::website::serve(shared, Prefixed::new(first, tls), alpn, peer, local).await;
}

/// Logs why a certificate on a stealth name did not verify. One from this
/// server's CA that no longer passes (expired, revoked, wrong usage) is most
/// likely a tp client's: news for the operator. Anyone can present one of
/// unknown issue, or garbage: debug, so strangers cannot flood the log.
fn refused(e: &rustls::Error) {
    use rustls::CertificateError::{BadEncoding, BadSignature, UnknownIssuer};
    match e {
        rustls::Error::InvalidCertificate(UnknownIssuer | BadEncoding | BadSignature) => {
            debug!("stealth: client certificate refused ({e}); served the website");
        }
        _ => info!("stealth: client certificate refused ({e}); served the website"),
    }
}

/// The tunnel of a verified stealth client.
async fn tunnel(
    shared: &Shared,
    stream: Prefixed<Box<TlsStream<ReadAhead<TcpStream>>>>,
    peer: SocketAddr,
    chain: Arc<[CertificateDer<'static>]>,
    alpn: Option<String>,
    ctx: RunContext,
) {
    let Some(who) = session::identity(Some(&chain)) else {
        return;
    };
    Span::current().record("id", tracing::field::display(&who));
    debug!(alpn = ?alpn, "stealth: TLS established, tp hello follows");
    session::serve(shared, stream, &who, Origin::tls(peer, chain, ctx)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> StealthSettings {
        StealthSettings {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    #[test]
    fn names_cover_their_server_names_and_star_covers_all() {
        let some = names(&["www.example.org", "*.example.net"]);
        assert!(some.covers(Some("www.example.org")));
        assert!(some.covers(Some("a.example.net")));
        assert!(!some.covers(Some("example.org")));
        assert!(!some.covers(Some("a.b.example.net")));
        assert!(!some.covers(None));
        assert!(some.enabled() && !some.everywhere());
        let all = names(&["*"]);
        assert!(all.covers(None) && all.covers(Some("anything.test")) && all.everywhere());
        assert!(!StealthSettings::default().enabled());
    }

    #[test]
    fn routes_overlap_stealth_names_they_could_take() {
        let some = names(&["www.example.org", "*.example.net"]);
        let route = |n: &[&str]| n.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert!(some.overlaps(&route(&[])), "a route for any name");
        assert!(some.overlaps(&route(&["www.example.org"])));
        assert!(some.overlaps(&route(&["a.example.net"])));
        assert!(some.overlaps(&route(&["*.example.org"])));
        assert!(!some.overlaps(&route(&["git.example.com", "example.org"])));
        assert!(names(&["*"]).overlaps(&route(&["git.example.com"])));
        assert!(!StealthSettings::default().overlaps(&route(&[])));
    }
}
