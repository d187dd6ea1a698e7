//! Server-side request forgery: no spelling of a special address gets past a rule that
//! does not name its range. Uses only the public API, as the server does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use policy::{
    ConnectRequest, Decision, DenyReason, Identity, IdentityKind, Policy, SpecialRange,
    special_range,
};
use proptest::prelude::*;
use tp_proto::{Host, Proto};

fn one_rule(connect: &str) -> Policy {
    let text = format!(
        "[[rule]]\nname = \"r\"\nwho = [\"*\"]\nconnect = {connect}\nports = [\"*\"]\nproto = [\"tcp\", \"udp\"]\n"
    );
    Policy::from_toml(&text, "ssrf.toml").expect("test policy is valid")
}

fn who() -> Identity {
    Identity::new(IdentityKind::Uri, "spiffe://corp/ops/alice")
}

/// The server's two steps: precheck the host, then decide on the address dialed (the
/// host's own address, or `resolved` for a name). Allowed only if both allow.
fn server_decision(p: &Policy, host: &Host, resolved: IpAddr) -> (Decision, Decision) {
    let pre = p.precheck_connect(&who(), Proto::Tcp, host, 22);
    let addr = host.ip().unwrap_or(resolved);
    let req = ConnectRequest {
        proto: Proto::Tcp,
        host,
        port: 22,
        addr,
    };
    (pre, p.decide_connect(&who(), &req))
}

fn allowed(p: &Policy, spelling: &str) -> bool {
    let host = Host::parse(spelling).unwrap_or_else(|e| panic!("{spelling}: {e}"));
    // Names (only "LOCALHOST" here) resolve to loopback.
    let (pre, last) = server_decision(p, &host, IpAddr::V4(Ipv4Addr::LOCALHOST));
    pre.is_allow() && last.is_allow()
}

/// Loopback and metadata spellings that must never slip through.
const SPELLINGS: [&str; 10] = [
    "127.1",
    "0x7f000001",
    "2130706433",
    "0177.0.0.1",
    "::ffff:127.0.0.1",
    "127.0.0.1.",
    "LOCALHOST",
    "[::1]",
    "64:ff9b::7f00:1",
    "169.254.169.254",
];

#[test]
fn spellings_are_denied_by_a_public_only_policy() {
    let p = one_rule(r#"["8.8.8.0/24"]"#);
    for s in SPELLINGS {
        assert!(!allowed(&p, s), "{s}");
    }
}

#[test]
fn spellings_are_denied_by_an_allow_everything_policy() {
    for connect in [
        r#"["0.0.0.0/0"]"#,
        r#"["0.0.0.0/0", "::/0"]"#,
        r#"["*", "0.0.0.0/0", "::/0", "::ffff:0:0/96"]"#,
    ] {
        let p = one_rule(connect);
        for s in SPELLINGS {
            assert!(!allowed(&p, s), "{connect}: {s}");
        }
    }
}

#[test]
fn naming_loopback_allows_exactly_the_ipv4_loopback_spellings() {
    let p = one_rule(r#"["127.0.0.0/8"]"#);
    for s in SPELLINGS {
        let want = !matches!(s, "[::1]" | "64:ff9b::7f00:1" | "169.254.169.254");
        assert_eq!(allowed(&p, s), want, "{s}");
    }
    let v6 = one_rule(r#"["::1/128", "64:ff9b::7f00:0/104"]"#);
    assert!(allowed(&v6, "[::1]"));
    assert!(allowed(&v6, "64:ff9b::7f00:1"));
    assert!(!allowed(&v6, "127.1"));
}

#[test]
fn the_reason_names_the_canonical_address_and_range() {
    let p = one_rule(r#"["0.0.0.0/0"]"#);
    let host = Host::parse("0x7f000001").unwrap();
    let (pre, last) = server_decision(&p, &host, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(pre, last);
    assert_eq!(
        last.to_string(),
        r#"deny: address 127.0.0.1 is loopback and no rule names it (rule "r" matched the address)"#
    );
    let host = Host::parse("169.254.169.254").unwrap();
    let (_, last) = server_decision(&p, &host, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(matches!(
        last,
        Decision::Deny {
            reason: DenyReason::SpecialAddress {
                range: SpecialRange::CloudMetadata,
                ..
            }
        }
    ));
}

/// Any address inside a special range: the range's block with random host bits.
fn special_addr() -> impl Strategy<Value = (SpecialRange, IpAddr)> {
    (0..SpecialRange::ALL.len(), any::<u128>()).prop_map(|(i, bits)| {
        let range = SpecialRange::ALL[i];
        let net = range.cidr();
        let addr = match net.addr() {
            IpAddr::V4(a) => {
                let host = u32::MAX.checked_shr(net.prefix_len().into()).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() | (bits as u32 & host)))
            }
            IpAddr::V6(a) => {
                let host = u128::MAX.checked_shr(net.prefix_len().into()).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() | (bits & host)))
            }
        };
        (range, addr)
    })
}

proptest! {
    #[test]
    fn special_addresses_are_never_allowed_by_a_covering_rule((_, addr) in special_addr()) {
        let p = one_rule(r#"["0.0.0.0/0", "::/0"]"#);
        prop_assert!(special_range(addr).is_some());
        for host in [Host::Ip(addr), Host::Name("x.example".into())] {
            let (pre, last) = server_decision(&p, &host, addr);
            prop_assert!(!last.is_allow(), "{addr} via {host}: {last}");
            if host.ip().is_some() {
                prop_assert!(!pre.is_allow(), "{addr}: {pre}");
            }
        }
        // The mapped spelling decides the same way.
        if let IpAddr::V4(v4) = addr {
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            let host = Host::Name("x.example".into());
            let (_, last) = server_decision(&p, &host, mapped);
            prop_assert!(!last.is_allow());
        }
    }

    #[test]
    fn ipv4_in_special_ranges_is_never_allowed(bits in any::<u32>()) {
        let p = one_rule(r#"["0.0.0.0/0", "::/0"]"#);
        let addr = IpAddr::V4(Ipv4Addr::from_bits(bits));
        let (_, last) = server_decision(&p, &Host::Ip(addr), addr);
        prop_assert_eq!(last.is_allow(), special_range(addr).is_none(), "{}", addr);
    }

    #[test]
    fn a_single_address_rule_always_names_its_address(bits in any::<u128>(), v4 in any::<bool>()) {
        let addr = if v4 {
            IpAddr::V4(Ipv4Addr::from_bits(bits as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from_bits(bits))
        };
        let canonical = addr.to_canonical();
        let text = if canonical.is_ipv6() { format!("[\"{canonical}/128\"]") } else { format!("[\"{canonical}\"]") };
        let p = one_rule(&text);
        let (pre, last) = server_decision(&p, &Host::Ip(canonical), addr);
        prop_assert!(pre.is_allow() && last.is_allow(), "{}: {} / {}", addr, pre, last);
    }
}
