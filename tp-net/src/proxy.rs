//! PROXY protocol v2 headers (with the `proxy-header` crate): how tp tells a
//! backend the real client address of a connection it relays.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proxy_header::{ProxiedAddress, ProxyHeader};
use tracing::warn;

/// A PROXY protocol v2 header: `peer` as the source, `to` as the destination
/// (the unspecified address of `peer`'s family when the server gave none). A
/// mixed pair is written as IPv6 (IPv4-mapped).
pub fn v2_header(peer: SocketAddr, to: Option<SocketAddr>) -> Vec<u8> {
    let to = to.unwrap_or_else(|| match peer {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    });
    let (source, destination) = if peer.is_ipv4() == to.is_ipv4() {
        (peer, to)
    } else {
        (mapped(peer), mapped(to))
    };
    let header = ProxyHeader::with_address(ProxiedAddress::stream(source, destination));
    let mut out = Vec::with_capacity(52);
    if let Err(e) = header.encode_v2(&mut out) {
        // The families match and there are no TLVs: this cannot fail.
        warn!("cannot encode a PROXY header: {e}; sending a LOCAL one");
        out.clear();
        let _ = ProxyHeader::with_local().encode_v2(&mut out);
    }
    out
}

fn mapped(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port()),
        IpAddr::V6(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use proxy_header::ParseConfig;

    use super::*;

    fn parse(bytes: &[u8]) -> ProxiedAddress {
        let (header, len) = ProxyHeader::parse(bytes, ParseConfig::default()).unwrap();
        assert_eq!(len, bytes.len());
        header.proxied_address().unwrap().clone()
    }

    #[test]
    fn proxy_headers_carry_peer_and_destination() {
        let peer: SocketAddr = "203.0.113.9:41000".parse().unwrap();
        let to: SocketAddr = "192.0.2.1:2222".parse().unwrap();
        let header = v2_header(peer, Some(to));
        assert!(header.starts_with(b"\r\n\r\n\0\r\nQUIT\n"), "v2 signature");
        assert_eq!(parse(&header), ProxiedAddress::stream(peer, to));

        let v6: SocketAddr = "[2001:db8::7]:50123".parse().unwrap();
        let got = parse(&v2_header(v6, Some(to)));
        assert_eq!(got.source, v6);
        assert_eq!(got.destination, "[::ffff:192.0.2.1]:2222".parse().unwrap());

        let got = parse(&v2_header(peer, None));
        assert_eq!(got.destination, "0.0.0.0:0".parse().unwrap());
    }
}
