//! IP networks written `address/prefix-length`, in canonical form only.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP network such as `10.0.0.0/8` or `fd00::/8`.
///
/// Always canonical: no bits are set after the prefix, and a network inside the
/// IPv4-mapped range `::ffff:0:0/96` is stored as the IPv4 network it denotes, because
/// addresses are compared in their canonical form (IPv4-mapped IPv6 becomes IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a network could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The part before the `/` is not an address in standard notation.
    #[error("{0:?} is not an IP address in standard notation")]
    BadAddress(String),
    /// The prefix length is not a number, or too long for the address family.
    #[error("prefix length {0:?} is not a number from 0 to {1}")]
    BadPrefix(String, u8),
    /// Bits are set after the prefix, as in `10.0.0.1/8`.
    #[error("host bits are set after the prefix; did you mean {0}?")]
    HostBits(Cidr),
}

impl Cidr {
    /// The network `addr/len`, refused if `len` is too long or `addr` has host bits set.
    pub fn new(addr: IpAddr, len: u8) -> Result<Cidr, CidrError> {
        let max = max_len(addr);
        if len > max {
            return Err(CidrError::BadPrefix(len.to_string(), max));
        }
        let net = Cidr::truncate(addr, len);
        if net.addr != addr {
            return Err(CidrError::HostBits(net));
        }
        Ok(net.canonical())
    }

    /// The network of exactly one address (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Cidr {
        let addr = addr.to_canonical();
        Cidr {
            addr,
            len: max_len(addr),
        }
    }

    /// Parses `addr/len`, or a bare address as a single-address network. Addresses must
    /// be in standard notation (no `127.1` or octal forms); brackets are not accepted.
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(addr.to_owned()))?;
        let Some(len) = len else {
            return Ok(Cidr::host(addr));
        };
        let max = max_len(addr);
        let bad_prefix = || CidrError::BadPrefix(len.to_owned(), max);
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_prefix());
        }
        let len: u8 = len.parse().map_err(|_| bad_prefix())?;
        Cidr::new(addr, len)
    }

    /// A network whose parts are known to be canonical (used for built-in tables).
    pub(crate) const fn from_parts_unchecked(addr: IpAddr, len: u8) -> Cidr {
        Cidr { addr, len }
    }

    /// The first address of the network.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` (compared in canonical form) is in this network. An IPv4 network
    /// never contains an IPv6 address and vice versa.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.len);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.len);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }

    /// Whether every address of `other` is in this network.
    pub fn contains_net(&self, other: &Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    fn truncate(addr: IpAddr, len: u8) -> Cidr {
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(len))),
        };
        Cidr { addr, len }
    }

    /// Turns a network inside `::ffff:0:0/96` into the IPv4 network it denotes.
    fn canonical(self) -> Cidr {
        match self.addr {
            IpAddr::V6(a) if self.len >= 96 => match a.to_ipv4_mapped() {
                Some(v4) => Cidr {
                    addr: IpAddr::V4(v4),
                    len: self.len - 96,
                },
                None => self,
            },
            _ => self,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn parses_networks_and_single_addresses() {
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(net("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(net("::/0").to_string(), "::/0");
    }

    #[test]
    fn mapped_networks_become_ipv4() {
        assert_eq!(net("::ffff:127.0.0.0/104"), net("127.0.0.0/8"));
        assert_eq!(net("::ffff:10.1.2.3"), net("10.1.2.3/32"));
        assert_eq!(net("::ffff:0:0/96"), net("0.0.0.0/0"));
    }

    #[test]
    fn refuses_bad_networks() {
        assert_eq!(
            Cidr::parse("10.0.0.1/8"),
            Err(CidrError::HostBits(net("10.0.0.0/8")))
        );
        assert!(matches!(
            Cidr::parse("fd00::1/8"),
            Err(CidrError::HostBits(_))
        ));
        for s in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/08x",
            "10.0.0.0/1000",
            "10.0.0.0/-1",
        ] {
            assert!(
                matches!(Cidr::parse(s), Err(CidrError::BadPrefix(..))),
                "{s}"
            );
        }
        for s in [
            "127.1/8",
            "0177.0.0.1",
            "[::1]/128",
            "",
            "/8",
            "a.b.c.d/8",
            "10.0.0.0/8/8",
        ] {
            assert!(Cidr::parse(s).is_err(), "{s}");
        }
        assert!(Cidr::new(ip("10.0.0.0"), 33).is_err());
    }

    #[test]
    fn containment() {
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.0")));
        assert!(net("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(!net("::/0").contains(ip("127.0.0.1")));
        assert!(net("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert!(net("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!net("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(net("10.0.0.0/8").contains_net(&net("10.1.0.0/16")));
        assert!(net("10.0.0.0/8").contains_net(&net("10.0.0.0/8")));
        assert!(!net("10.1.0.0/16").contains_net(&net("10.0.0.0/8")));
        assert!(!net("0.0.0.0/0").contains_net(&net("::/0")));
    }
}
