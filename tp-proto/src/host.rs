//! Hosts as the client spells them, parsed once to a canonical form.
//!
//! Every spelling that the system resolver would read as an address becomes
//! [`Host::Ip`]: `127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1` (the classic
//! `inet_aton` forms), `[::1]`, and `::ffff:127.0.0.1` (mapped to its IPv4 form).
//! Names are lowercased and lose one trailing dot. So no alternate spelling of an
//! address can slip past a rule written for another, and the server never hands a
//! numeric-looking string to the resolver.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest DNS name accepted, without its trailing dot.
const MAX_NAME_LEN: usize = 253;
/// The longest DNS label.
const MAX_LABEL_LEN: usize = 63;

/// A target host: a DNS name or an IP address, canonical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name: lowercase ASCII, no trailing dot, valid labels.
    Name(String),
    /// An address; IPv4-mapped IPv6 addresses are stored as IPv4.
    Ip(IpAddr),
}

/// Why a host string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The string was empty.
    #[error("host is empty")]
    Empty,
    /// Longer than a DNS name can be.
    #[error("host is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    /// Contains a character no host name or address literal has.
    #[error("host contains an invalid character {0:?}")]
    InvalidChar(char),
    /// Looks like an address but is not a valid one.
    #[error("host {0:?} looks numeric but is not a valid IP address")]
    BadAddress(String),
    /// A label is empty, too long, or starts or ends with '-'.
    #[error("host {0:?} has an invalid DNS label")]
    BadLabel(String),
}

impl Host {
    /// Parses a host as sent in a hello or typed on a command line.
    pub fn parse(s: &str) -> Result<Host, HostError> {
        if s.is_empty() {
            return Err(HostError::Empty);
        }
        if s.len() > MAX_NAME_LEN + 2 {
            return Err(HostError::TooLong);
        }
        if let Some(c) = s.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
        }) {
            return Err(HostError::InvalidChar(c));
        }
        // IPv6, bracketed or not. Zone ids ('%') are refused above.
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if unbracketed.contains(':') || unbracketed.len() != s.len() {
            return unbracketed
                .parse::<Ipv6Addr>()
                .map(|v6| Host::Ip(IpAddr::V6(v6).to_canonical()))
                .map_err(|_| HostError::BadAddress(s.to_owned()));
        }
        if s.contains(['[', ']']) {
            return Err(HostError::InvalidChar('['));
        }
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        if name.is_empty() {
            return Err(HostError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(HostError::TooLong);
        }
        if let Some(v4) = parse_inet_aton(&name) {
            return Ok(Host::Ip(IpAddr::V4(v4)));
        }
        let labels: Vec<&str> = name.split('.').collect();
        for label in &labels {
            if label.is_empty()
                || label.len() > MAX_LABEL_LEN
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err(HostError::BadLabel(s.to_owned()));
            }
        }
        // A last label that is numeric (or hex-numeric) is never a valid top-level
        // domain; resolvers would treat such strings as addresses. Refuse them.
        let last = labels.last().copied().unwrap_or_default();
        if last.bytes().all(|b| b.is_ascii_digit()) || is_hex_number(last) {
            return Err(HostError::BadAddress(s.to_owned()));
        }
        Ok(Host::Name(name))
    }

    /// The address, if this host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for Host {
    /// Names as they are, IPv4 dotted, IPv6 without brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

fn is_hex_number(s: &str) -> bool {
    s.strip_prefix("0x")
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Reads an IPv4 address the way glibc's `inet_aton` does: one to four parts, each
/// decimal, octal (leading `0`) or hexadecimal (`0x`); the last part fills the
/// remaining bytes. Returns `None` for anything else (including overflow).
fn parse_inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        values.push(parse_aton_part(part)?);
    }
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|&v| v > 0xff) {
        return None;
    }
    let last_bits = 8 * (4 - leading.len() as u32);
    if last_bits < 32 && *last >= (1u64 << last_bits) {
        return None;
    }
    if *last > u64::from(u32::MAX) {
        return None;
    }
    let mut addr: u32 = 0;
    for (i, &v) in leading.iter().enumerate() {
        addr |= (v as u32) << (24 - 8 * i as u32);
    }
    addr |= *last as u32;
    Some(Ipv4Addr::from(addr))
}

fn parse_aton_part(part: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = part.strip_prefix("0x") {
        (h, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn numeric_spellings_of_loopback_are_all_the_same_address() {
        for s in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "0x7f000001",
            "0X7F000001",
            "2130706433",
            "0177.0.0.1",
            "0x7f.0.0.1",
            "0x7f.1",
            "127.0.0.1.",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]",
            "::ffff:7f00:1",
        ] {
            assert_eq!(Host::parse(s), Ok(ip("127.0.0.1")), "{s}");
        }
    }

    #[test]
    fn ipv6_literals() {
        assert_eq!(Host::parse("::1"), Ok(ip("::1")));
        assert_eq!(Host::parse("[::1]"), Ok(ip("::1")));
        assert_eq!(Host::parse("2001:DB8::1"), Ok(ip("2001:db8::1")));
        assert!(Host::parse("fe80::1%eth0").is_err());
        assert!(Host::parse("[::1").is_err());
        assert!(Host::parse("::g").is_err());
    }

    #[test]
    fn names_are_canonical() {
        assert_eq!(
            Host::parse("DB1.Internal."),
            Ok(Host::Name("db1.internal".into()))
        );
        assert_eq!(Host::parse("LOCALHOST"), Ok(Host::Name("localhost".into())));
        assert_eq!(
            Host::parse("_srv.x-y.org"),
            Ok(Host::Name("_srv.x-y.org".into()))
        );
    }

    #[test]
    fn bad_hosts_are_refused() {
        for s in [
            "",
            ".",
            "a..b",
            "-a.org",
            "a-.org",
            "a b",
            "a/b",
            "a%b",
            "1.2.3.4.5",
            "256.1.1.1",
            "999999999999",
            "0x1ffffffff",
            "08.1.1.1",
            "a.123",
            "x.0x1f",
            "[a.b]",
            "a]",
        ] {
            assert!(Host::parse(s).is_err(), "{s:?} should be refused");
        }
        assert_eq!(Host::parse(&"a".repeat(300)), Err(HostError::TooLong));
        assert!(Host::parse(&format!("{}.org", "a".repeat(64))).is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["example.org", "10.1.2.3", "::1", "2001:db8::1"] {
            let h = Host::parse(s).unwrap();
            assert_eq!(Host::parse(&h.to_string()).unwrap(), h);
        }
    }
}
