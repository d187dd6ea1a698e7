use super::*;

fn class(s: &str) -> Option<SpecialRange> {
    special_range(s.parse().unwrap())
}

fn block(s: &str) -> String {
    special_block(s.parse().unwrap()).unwrap().1.to_string()
}

#[test]
fn table_is_canonical() {
    for r in SpecialRange::ALL {
        let c = r.cidr();
        assert_eq!(Cidr::new(c.addr(), c.prefix_len()), Ok(c), "{r:?}");
        // The first and last addresses of each block are classified as that block
        // or as a more specific block inside it (`::` is inside `::/96`).
        let first = c.addr();
        let last = match c.addr() {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(
                a.to_bits() | u32::MAX.checked_shr(c.prefix_len().into()).unwrap_or(0),
            )),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(
                a.to_bits() | u128::MAX.checked_shr(c.prefix_len().into()).unwrap_or(0),
            )),
        };
        let inner = [first, last].map(|a| special_range(a).map(|s| s.cidr()));
        for (a, got) in [first, last].into_iter().zip(inner) {
            let got = got.unwrap_or_else(|| panic!("{r:?}: {a} not special"));
            assert!(c.contains_net(&got), "{r:?}: {a} is {got}");
        }
        assert!(special_range(first) == Some(r) || special_range(last) == Some(r));
    }
}

#[test]
fn ipv4_ranges_edges() {
    use SpecialRange::*;
    let cases = [
        ("0.0.0.0", Some(ThisNetwork)),
        ("0.255.255.255", Some(ThisNetwork)),
        ("1.0.0.0", None),
        ("9.255.255.255", None),
        ("10.0.0.0", Some(Private10)),
        ("10.255.255.255", Some(Private10)),
        ("11.0.0.0", None),
        ("100.63.255.255", None),
        ("100.64.0.0", Some(SharedAddressSpace)),
        ("100.127.255.255", Some(SharedAddressSpace)),
        ("100.128.0.0", None),
        ("126.255.255.255", None),
        ("127.0.0.1", Some(Loopback)),
        ("127.255.255.255", Some(Loopback)),
        ("128.0.0.0", None),
        ("169.253.255.255", None),
        ("169.254.0.1", Some(LinkLocal)),
        ("169.254.169.253", Some(LinkLocal)),
        ("169.254.169.254", Some(CloudMetadata)),
        ("169.254.169.255", Some(LinkLocal)),
        ("169.255.0.0", None),
        ("172.15.255.255", None),
        ("172.16.0.0", Some(Private172)),
        ("172.31.255.255", Some(Private172)),
        ("172.32.0.0", None),
        ("192.0.0.8", Some(ProtocolAssignments)),
        ("192.0.1.0", None),
        ("192.0.2.7", Some(TestNet1)),
        ("192.0.3.0", None),
        ("192.167.255.255", None),
        ("192.168.1.1", Some(Private192)),
        ("192.169.0.0", None),
        ("198.17.255.255", None),
        ("198.18.0.0", Some(Benchmarking)),
        ("198.19.255.255", Some(Benchmarking)),
        ("198.20.0.0", None),
        ("198.51.100.1", Some(TestNet2)),
        ("203.0.113.9", Some(TestNet3)),
        ("203.0.114.0", None),
        ("223.255.255.255", None),
        ("224.0.0.1", Some(Multicast)),
        ("239.255.255.255", Some(Multicast)),
        ("240.0.0.0", Some(Reserved)),
        ("255.255.255.255", Some(Reserved)),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
    ];
    for (addr, want) in cases {
        assert_eq!(class(addr), want, "{addr}");
    }
}

#[test]
fn ipv6_ranges_edges() {
    use SpecialRange::*;
    let cases = [
        ("::", Some(UnspecifiedV6)),
        ("::1", Some(LoopbackV6)),
        ("::2", Some(Ipv4Compatible)),
        ("::7f00:1", Some(Ipv4Compatible)),
        ("::1:0:0:0", Some(ReservedV6Low)),
        ("::ffff:0:7f00:1", Some(ReservedV6Low)),
        ("1fff:ffff::1", Some(ReservedV6Low)),
        ("2000::", None),
        ("3ffe:ffff::1", None),
        ("3fff::1", Some(Documentation3fff)),
        ("3fff:1000::", None),
        ("4000::1", Some(ReservedV6Mid)),
        ("8000::1", Some(ReservedV6High)),
        ("fbff::1", Some(ReservedV6High)),
        ("2001:2::1", Some(BenchmarkingV6)),
        ("2001:2:1::", None),
        ("2001:0:ffff::1", Some(Teredo)),
        ("::ffff:127.0.0.1", Some(Loopback)),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::7f00:1", Some(Loopback)),
        ("64:ff9b::a9fe:a9fe", Some(CloudMetadata)),
        ("64:ff9b::a00:1", Some(Private10)),
        ("64:ff9b::808:808", None),
        ("64:ff9b:1::1", Some(Nat64LocalUse)),
        ("100::1", Some(DiscardOnly)),
        ("100:0:0:1::", Some(ReservedV6Low)),
        ("2001::1", Some(Teredo)),
        ("2001:db8::1", Some(DocumentationV6)),
        ("2001:db9::1", None),
        ("2002:7f00:1::", Some(Loopback)),
        ("2002:c0a8:101::1", Some(Private192)),
        ("2002:808:808::1", None),
        ("fc00::1", Some(UniqueLocal)),
        ("fdff:ffff::1", Some(UniqueLocal)),
        ("fd00:ec2::254", Some(CloudMetadataV6)),
        ("fd00:ec2::253", Some(UniqueLocal)),
        ("fe80::1", Some(LinkLocalV6)),
        ("febf::1", Some(LinkLocalV6)),
        ("fec0::1", Some(SiteLocal)),
        ("feff::1", Some(SiteLocal)),
        ("ff02::1", Some(MulticastV6)),
        ("2606:4700::1111", None),
    ];
    for (addr, want) in cases {
        assert_eq!(class(addr), want, "{addr}");
    }
}

#[test]
fn embedded_addresses_get_translated_blocks() {
    assert_eq!(block("64:ff9b::7f00:1"), "64:ff9b::7f00:0/104");
    assert_eq!(block("64:ff9b::a9fe:a9fe"), "64:ff9b::a9fe:a9fe/128");
    assert_eq!(block("2002:7f00:1::"), "2002:7f00::/24");
    assert_eq!(block("::ffff:10.1.1.1"), "10.0.0.0/8");
    assert_eq!(block("127.0.0.1"), "127.0.0.0/8");
}

#[test]
fn descriptions() {
    assert_eq!(SpecialRange::Loopback.to_string(), "loopback");
    assert_eq!(SpecialRange::Private172.to_string(), "private");
    assert_eq!(SpecialRange::CloudMetadata.to_string(), "cloud metadata");
    assert_eq!(
        SpecialRange::SharedAddressSpace.to_string(),
        "shared address space (CGNAT)"
    );
}
