//! Which addresses are not ordinary public destinations.
//!
//! A rule reaches an address in one of these ranges only if it lists a network that
//! contains the address *and* lies inside the range (see `docs/policy.md`). This module
//! only classifies; `rules` applies that test.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cidr::Cidr;

/// A non-public address range. Each variant is one registered block; several blocks can
/// share a description (the three private IPv4 blocks all display as "private").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpecialRange {
    /// `0.0.0.0/8`, "this network" (RFC 791); `0.0.0.0` reaches the local host on Linux.
    ThisNetwork,
    /// `10.0.0.0/8`, private (RFC 1918).
    Private10,
    /// `100.64.0.0/10`, shared address space for carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    /// `127.0.0.0/8`, loopback.
    Loopback,
    /// `169.254.0.0/16`, link-local (RFC 3927).
    LinkLocal,
    /// `169.254.169.254/32`, the cloud instance metadata service.
    CloudMetadata,
    /// `172.16.0.0/12`, private (RFC 1918).
    Private172,
    /// `192.0.0.0/24`, IETF protocol assignments (RFC 6890).
    ProtocolAssignments,
    /// `192.0.2.0/24`, TEST-NET-1 documentation (RFC 5737).
    TestNet1,
    /// `192.168.0.0/16`, private (RFC 1918).
    Private192,
    /// `198.18.0.0/15`, benchmarking (RFC 2544).
    Benchmarking,
    /// `198.51.100.0/24`, TEST-NET-2 documentation (RFC 5737).
    TestNet2,
    /// `203.0.113.0/24`, TEST-NET-3 documentation (RFC 5737).
    TestNet3,
    /// `224.0.0.0/4`, multicast.
    Multicast,
    /// `240.0.0.0/4`, reserved, including the broadcast address `255.255.255.255`.
    Reserved,
    /// `::/128`, the unspecified IPv6 address.
    UnspecifiedV6,
    /// `::1/128`, IPv6 loopback.
    LoopbackV6,
    /// `::/96`, deprecated IPv4-compatible IPv6 addresses (RFC 4291).
    Ipv4Compatible,
    /// `::/3`: outside IPv6 global unicast `2000::/3` and not otherwise classified
    /// (IETF-reserved; includes odd forms such as SIIT's `::ffff:0:a.b.c.d`).
    ReservedV6Low,
    /// `64:ff9b:1::/48`, local-use NAT64 prefixes (RFC 8215).
    Nat64LocalUse,
    /// `100::/64`, discard-only (RFC 6666).
    DiscardOnly,
    /// `2001::/32`, Teredo, which tunnels to an embedded IPv4 address (RFC 4380).
    Teredo,
    /// `2001:2::/48`, IPv6 benchmarking (RFC 5180).
    BenchmarkingV6,
    /// `2001:db8::/32`, documentation (RFC 3849).
    DocumentationV6,
    /// `3fff::/20`, documentation (RFC 9637).
    Documentation3fff,
    /// `4000::/2`: outside IPv6 global unicast `2000::/3` (IETF-reserved).
    ReservedV6Mid,
    /// `8000::/1`: outside IPv6 global unicast `2000::/3` and not otherwise classified
    /// (IETF-reserved).
    ReservedV6High,
    /// `fc00::/7`, unique-local (RFC 4193).
    UniqueLocal,
    /// `fd00:ec2::254/128`, the cloud instance metadata service over IPv6.
    CloudMetadataV6,
    /// `fec0::/10`, deprecated site-local.
    SiteLocal,
    /// `fe80::/10`, IPv6 link-local.
    LinkLocalV6,
    /// `ff00::/8`, IPv6 multicast.
    MulticastV6,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Cidr {
    Cidr::from_parts_unchecked(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), len)
}

const fn v6(bits: u128, len: u8) -> Cidr {
    Cidr::from_parts_unchecked(IpAddr::V6(Ipv6Addr::from_bits(bits)), len)
}

/// The NAT64 well-known prefix `64:ff9b::/96` (RFC 6052): the last 32 bits are IPv4.
const NAT64: Cidr = v6(0x0064_ff9b << 96, 96);
/// The 6to4 prefix `2002::/16` (RFC 3056): the next 32 bits are IPv4.
const SIX_TO_FOUR: Cidr = v6(0x2002 << 112, 16);

impl SpecialRange {
    /// Every special range, IPv4 first.
    pub const ALL: [SpecialRange; 32] = [
        SpecialRange::ThisNetwork,
        SpecialRange::Private10,
        SpecialRange::SharedAddressSpace,
        SpecialRange::Loopback,
        SpecialRange::LinkLocal,
        SpecialRange::CloudMetadata,
        SpecialRange::Private172,
        SpecialRange::ProtocolAssignments,
        SpecialRange::TestNet1,
        SpecialRange::Private192,
        SpecialRange::Benchmarking,
        SpecialRange::TestNet2,
        SpecialRange::TestNet3,
        SpecialRange::Multicast,
        SpecialRange::Reserved,
        SpecialRange::UnspecifiedV6,
        SpecialRange::LoopbackV6,
        SpecialRange::Ipv4Compatible,
        SpecialRange::ReservedV6Low,
        SpecialRange::Nat64LocalUse,
        SpecialRange::DiscardOnly,
        SpecialRange::Teredo,
        SpecialRange::BenchmarkingV6,
        SpecialRange::DocumentationV6,
        SpecialRange::Documentation3fff,
        SpecialRange::ReservedV6Mid,
        SpecialRange::ReservedV6High,
        SpecialRange::UniqueLocal,
        SpecialRange::CloudMetadataV6,
        SpecialRange::SiteLocal,
        SpecialRange::LinkLocalV6,
        SpecialRange::MulticastV6,
    ];

    /// The block this range covers.
    pub const fn cidr(self) -> Cidr {
        match self {
            SpecialRange::ThisNetwork => v4(0, 0, 0, 0, 8),
            SpecialRange::Private10 => v4(10, 0, 0, 0, 8),
            SpecialRange::SharedAddressSpace => v4(100, 64, 0, 0, 10),
            SpecialRange::Loopback => v4(127, 0, 0, 0, 8),
            SpecialRange::LinkLocal => v4(169, 254, 0, 0, 16),
            SpecialRange::CloudMetadata => v4(169, 254, 169, 254, 32),
            SpecialRange::Private172 => v4(172, 16, 0, 0, 12),
            SpecialRange::ProtocolAssignments => v4(192, 0, 0, 0, 24),
            SpecialRange::TestNet1 => v4(192, 0, 2, 0, 24),
            SpecialRange::Private192 => v4(192, 168, 0, 0, 16),
            SpecialRange::Benchmarking => v4(198, 18, 0, 0, 15),
            SpecialRange::TestNet2 => v4(198, 51, 100, 0, 24),
            SpecialRange::TestNet3 => v4(203, 0, 113, 0, 24),
            SpecialRange::Multicast => v4(224, 0, 0, 0, 4),
            SpecialRange::Reserved => v4(240, 0, 0, 0, 4),
            SpecialRange::UnspecifiedV6 => v6(0, 128),
            SpecialRange::LoopbackV6 => v6(1, 128),
            SpecialRange::Ipv4Compatible => v6(0, 96),
            SpecialRange::ReservedV6Low => v6(0, 3),
            SpecialRange::Nat64LocalUse => v6(0x0064_ff9b_0001 << 80, 48),
            SpecialRange::DiscardOnly => v6(0x0100 << 112, 64),
            SpecialRange::Teredo => v6(0x2001_0000 << 96, 32),
            SpecialRange::BenchmarkingV6 => v6(0x2001_0002 << 96, 48),
            SpecialRange::DocumentationV6 => v6(0x2001_0db8 << 96, 32),
            SpecialRange::Documentation3fff => v6(0x3fff << 112, 20),
            SpecialRange::ReservedV6Mid => v6(0x4000 << 112, 2),
            SpecialRange::ReservedV6High => v6(0x8000 << 112, 1),
            SpecialRange::UniqueLocal => v6(0xfc00 << 112, 7),
            SpecialRange::CloudMetadataV6 => v6((0xfd00_0ec2 << 96) | 0x254, 128),
            SpecialRange::SiteLocal => v6(0xfec0 << 112, 10),
            SpecialRange::LinkLocalV6 => v6(0xfe80 << 112, 10),
            SpecialRange::MulticastV6 => v6(0xff00 << 112, 8),
        }
    }

    /// A short description, as used in deny reasons: "loopback", "private", ...
    pub fn description(self) -> &'static str {
        match self {
            SpecialRange::ThisNetwork => "unspecified (this network)",
            SpecialRange::Private10 | SpecialRange::Private172 | SpecialRange::Private192 => {
                "private"
            }
            SpecialRange::SharedAddressSpace => "shared address space (CGNAT)",
            SpecialRange::Loopback | SpecialRange::LoopbackV6 => "loopback",
            SpecialRange::LinkLocal | SpecialRange::LinkLocalV6 => "link-local",
            SpecialRange::CloudMetadata | SpecialRange::CloudMetadataV6 => "cloud metadata",
            SpecialRange::ProtocolAssignments => "reserved (IETF protocol assignments)",
            SpecialRange::TestNet1
            | SpecialRange::TestNet2
            | SpecialRange::TestNet3
            | SpecialRange::DocumentationV6
            | SpecialRange::Documentation3fff => "documentation",
            SpecialRange::Benchmarking | SpecialRange::BenchmarkingV6 => "benchmarking",
            SpecialRange::Multicast | SpecialRange::MulticastV6 => "multicast",
            SpecialRange::Reserved => "reserved",
            SpecialRange::ReservedV6Low
            | SpecialRange::ReservedV6Mid
            | SpecialRange::ReservedV6High => "reserved (not IPv6 global unicast)",
            SpecialRange::UnspecifiedV6 => "unspecified",
            SpecialRange::Ipv4Compatible => "IPv4-compatible (deprecated)",
            SpecialRange::Nat64LocalUse => "NAT64 local-use",
            SpecialRange::DiscardOnly => "discard-only",
            SpecialRange::Teredo => "Teredo",
            SpecialRange::UniqueLocal => "unique-local",
            SpecialRange::SiteLocal => "site-local (deprecated)",
        }
    }
}

impl fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// The special range `addr` (taken in canonical form) is in, or `None` for an ordinary
/// public address. The most specific range wins (`169.254.169.254` is cloud metadata,
/// not just link-local). Addresses under the NAT64 prefix `64:ff9b::/96` and the 6to4
/// prefix `2002::/16` are classified by the IPv4 address they embed, so
/// `64:ff9b::7f00:1` is loopback.
pub fn special_range(addr: IpAddr) -> Option<SpecialRange> {
    special_block(addr).map(|(range, _)| range)
}

/// The special range of `addr` and the block that a rule's network must lie inside to
/// name it. For direct addresses the block is [`SpecialRange::cidr`]; for an address
/// embedding IPv4 (NAT64, 6to4) it is that range translated into the embedding prefix,
/// e.g. `64:ff9b::7f00:0/104` for loopback via NAT64.
pub(crate) fn special_block(addr: IpAddr) -> Option<(SpecialRange, Cidr)> {
    let addr = addr.to_canonical();
    if let IpAddr::V6(v6) = addr {
        let bits = v6.to_bits();
        // Masks keep the 32 embedded bits; the casts drop nothing else.
        if NAT64.contains(addr) {
            let embedded = Ipv4Addr::from_bits((bits & 0xffff_ffff) as u32);
            return embedded_block(NAT64, 0, embedded);
        }
        if SIX_TO_FOUR.contains(addr) {
            let embedded = Ipv4Addr::from_bits(((bits >> 80) & 0xffff_ffff) as u32);
            return embedded_block(SIX_TO_FOUR, 80, embedded);
        }
    }
    let range = SpecialRange::ALL
        .into_iter()
        .filter(|r| r.cidr().contains(addr))
        .max_by_key(|r| r.cidr().prefix_len())?;
    Some((range, range.cidr()))
}

/// The special block of an IPv4 address embedded in `prefix` at bit offset `shift`
/// (counted from the low end), translated into the IPv6 space.
fn embedded_block(prefix: Cidr, shift: u32, v4: Ipv4Addr) -> Option<(SpecialRange, Cidr)> {
    let (range, _) = special_block(IpAddr::V4(v4))?;
    let inner = range.cidr();
    let IpAddr::V6(base) = prefix.addr() else {
        return None;
    };
    let IpAddr::V4(inner_addr) = inner.addr() else {
        return None;
    };
    let bits = base.to_bits() | (u128::from(inner_addr.to_bits()) << shift);
    let len = prefix.prefix_len() + inner.prefix_len();
    Some((range, v6(bits, len)))
}

#[cfg(test)]
mod tests;
