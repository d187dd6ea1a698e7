use super::*;
use crate::address::SpecialRange;
use crate::identity::IdentityKind;

fn policy(text: &str) -> Policy {
    Policy::from_toml(text, "test.toml").unwrap()
}

/// A policy with one rule allowing anyone, tcp, all ports, to `connect`.
fn one_rule(connect: &str) -> Policy {
    policy(&format!(
        "[[rule]]\nname = \"r\"\nwho = [\"*\"]\nconnect = {connect}\nports = [\"*\"]\n"
    ))
}

fn id(s: &str) -> Identity {
    let kind = if s.contains("://") {
        IdentityKind::Uri
    } else {
        IdentityKind::Email
    };
    Identity::new(kind, s)
}

fn host(s: &str) -> Host {
    Host::parse(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pre(p: &Policy, who: &str, h: &str, port: u16) -> Decision {
    p.precheck_connect(&id(who), Proto::Tcp, &host(h), port)
}

fn decide(p: &Policy, who: &str, h: &str, port: u16, addr: &str) -> Decision {
    let h = host(h);
    let req = ConnectRequest {
        proto: Proto::Tcp,
        host: &h,
        port,
        addr: ip(addr),
    };
    p.decide_connect(&id(who), &req)
}

fn allowed_by(d: &Decision) -> &str {
    d.rule()
        .unwrap_or_else(|| panic!("expected allow, got {d}"))
}

const OPS: &str = r#"
[groups]
ops = ["alice@corp.example", "spiffe://corp/ops/*"]

[[rule]]
name = "ops-ssh"
who = ["group:ops", "bob@corp.example"]
connect = ["*.internal", "db1.corp.example", "10.0.0.0/8", "fd00::/8", "192.0.2.7"]
ports = [22, "8000-8100"]

[[rule]]
name = "web"
who = ["*"]
connect = ["*.corp.example", "8.8.8.0/24"]
ports = [80, 443]
proto = ["tcp", "udp"]
"#;

#[test]
fn deny_all_denies_everything() {
    let p = Policy::deny_all();
    assert_eq!(p.rule_count(), 0);
    let d = pre(&p, "alice@corp.example", "db1.internal", 22);
    assert_eq!(
        d.to_string(),
        "deny: no rule allows alice@corp.example to connect to tcp db1.internal:22"
    );
    assert!(!decide(&p, "a", "8.8.8.8", 53, "8.8.8.8").is_allow());
}

#[test]
fn who_exact_glob_group_and_anyone() {
    let p = policy(OPS);
    for who in [
        "alice@corp.example",
        "bob@corp.example",
        "spiffe://corp/ops/carol",
    ] {
        assert_eq!(
            allowed_by(&pre(&p, who, "db1.internal", 22)),
            "ops-ssh",
            "{who}"
        );
    }
    for who in [
        "mallory@corp.example",
        "Alice@corp.example",
        "alice@corp.example.evil",
        "spiffe://corp/opsx/carol",
        "spiffe://corp/ops",
    ] {
        assert!(!pre(&p, who, "db1.internal", 22).is_allow(), "{who}");
    }
    // "*" is any identity.
    assert_eq!(allowed_by(&pre(&p, "anyone", "x.corp.example", 443)), "web");
}

#[test]
fn identity_kind_does_not_matter_only_the_value() {
    let p = policy(OPS);
    let cn = Identity::new(IdentityKind::CommonName, "bob@corp.example");
    assert!(
        p.precheck_connect(&cn, Proto::Tcp, &host("db1.internal"), 22)
            .is_allow()
    );
}

#[test]
fn ports_and_protocols() {
    let p = policy(OPS);
    let alice = "alice@corp.example";
    for port in [22, 8000, 8050, 8100] {
        assert!(pre(&p, alice, "db1.internal", port).is_allow(), "{port}");
    }
    for port in [0, 21, 23, 7999, 8101, 65535] {
        assert!(!pre(&p, alice, "db1.internal", port).is_allow(), "{port}");
    }
    let a = id(alice);
    assert!(
        !p.precheck_connect(&a, Proto::Udp, &host("db1.internal"), 22)
            .is_allow()
    );
    assert!(
        p.precheck_connect(&a, Proto::Udp, &host("w.corp.example"), 443)
            .is_allow()
    );
    let all = one_rule(r#"["x.example"]"#);
    assert!(pre(&all, "a", "x.example", 1).is_allow());
    assert!(pre(&all, "a", "x.example", 65535).is_allow());
    assert!(!pre(&all, "a", "x.example", 0).is_allow());
}

#[test]
fn name_patterns() {
    let p = policy(OPS);
    let alice = "alice@corp.example";
    for h in [
        "db1.internal",
        "a.b.internal",
        "DB1.Internal.",
        "db1.corp.example",
    ] {
        assert!(pre(&p, alice, h, 22).is_allow(), "{h}");
    }
    for h in [
        "internal",
        "db1.internal.evil.com",
        "db2.corp.example",
        "internal.com",
    ] {
        let d = pre(&p, alice, h, 22);
        // ops-ssh lists networks, so any name is a pre-DNS candidate...
        assert_eq!(allowed_by(&d), "ops-ssh", "{h}");
        // ...but the address decides: public addresses are outside 10/8 and fd00::/8.
        assert!(!decide(&p, alice, h, 22, "93.184.216.34").is_allow(), "{h}");
    }
    let names_only = one_rule(r#"["*.internal", "DB1.Corp.Example."]"#);
    assert!(pre(&names_only, "a", "db1.corp.example", 22).is_allow());
    assert!(!pre(&names_only, "a", "internal", 22).is_allow());
    assert!(!pre(&names_only, "a", "db2.corp.example", 22).is_allow());
}

#[test]
fn name_patterns_never_match_addresses() {
    let p = one_rule(r#"["*"]"#);
    assert!(pre(&p, "a", "anything.example", 22).is_allow());
    for h in ["8.8.8.8", "127.0.0.1", "::1", "2606:4700::1111"] {
        let d = pre(&p, "a", h, 22);
        assert!(
            matches!(
                d,
                Decision::Deny {
                    reason: DenyReason::NoRule { .. }
                }
            ),
            "{h}: {d}"
        );
    }
}

#[test]
fn address_hosts_need_a_network() {
    let p = policy(OPS);
    let alice = "alice@corp.example";
    assert_eq!(allowed_by(&pre(&p, alice, "10.1.2.3", 22)), "ops-ssh");
    assert_eq!(allowed_by(&pre(&p, alice, "192.0.2.7", 22)), "ops-ssh");
    assert_eq!(allowed_by(&pre(&p, alice, "fd12::1", 22)), "ops-ssh");
    assert!(!pre(&p, alice, "192.0.2.8", 22).is_allow());
    assert!(!pre(&p, alice, "11.0.0.1", 22).is_allow());
    assert_eq!(allowed_by(&pre(&p, "x", "8.8.8.8", 443)), "web");
}

#[test]
fn resolved_private_address_needs_a_rule_naming_its_range() {
    let names = one_rule(r#"["*.internal"]"#);
    assert!(pre(&names, "a", "db1.internal", 22).is_allow());
    let d = decide(&names, "a", "db1.internal", 22, "10.0.0.5");
    assert_eq!(
        d,
        Decision::Deny {
            reason: DenyReason::SpecialAddress {
                addr: ip("10.0.0.5"),
                range: SpecialRange::Private10,
                rule: "r".into(),
                matched: MatchedBy::Name,
            }
        }
    );
    assert_eq!(
        d.to_string(),
        r#"deny: address 10.0.0.5 is private and no rule names it (rule "r" matched the name)"#
    );
    // A public answer is fine for a name rule.
    assert!(decide(&names, "a", "db1.internal", 22, "93.184.216.34").is_allow());

    let named = one_rule(r#"["*.internal", "10.0.0.0/8"]"#);
    assert!(decide(&named, "a", "db1.internal", 22, "10.0.0.5").is_allow());
    // Naming 10/8 does not name other private ranges.
    assert!(!decide(&named, "a", "db1.internal", 22, "192.168.1.1").is_allow());
    let narrow = one_rule(r#"["*.internal", "10.1.0.0/16"]"#);
    assert!(decide(&narrow, "a", "db1.internal", 22, "10.1.9.9").is_allow());
    assert!(!decide(&narrow, "a", "db1.internal", 22, "10.2.0.1").is_allow());
}

#[test]
fn covering_networks_do_not_name_special_ranges() {
    let any = one_rule(r#"["0.0.0.0/0", "::/0"]"#);
    for a in [
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
    ] {
        let d = decide(&any, "a", a, 22, a);
        match &d {
            Decision::Deny {
                reason: DenyReason::SpecialAddress { matched, .. },
            } => assert_eq!(*matched, MatchedBy::Address),
            _ => panic!("{a}: {d}"),
        }
        assert!(!pre(&any, "a", a, 22).is_allow(), "{a}");
    }
    assert!(decide(&any, "a", "8.8.8.8", 22, "8.8.8.8").is_allow());
    assert!(decide(&any, "a", "2606:4700::1111", 22, "2606:4700::1111").is_allow());
    // Wider than the range, but not covering everything: still not named.
    let wide = one_rule(r#"["10.0.0.0/7", "126.0.0.0/7"]"#);
    assert!(!decide(&wide, "a", "10.0.0.1", 22, "10.0.0.1").is_allow());
    assert!(!decide(&wide, "a", "127.0.0.1", 22, "127.0.0.1").is_allow());
}

#[test]
fn metadata_must_be_named_exactly() {
    let link_local = one_rule(r#"["169.254.0.0/16", "fd00::/8"]"#);
    assert!(decide(&link_local, "a", "169.254.1.1", 80, "169.254.1.1").is_allow());
    assert!(decide(&link_local, "a", "fd00::1", 80, "fd00::1").is_allow());
    for a in ["169.254.169.254", "fd00:ec2::254", "64:ff9b::a9fe:a9fe"] {
        let d = decide(&link_local, "a", "metadata.internal", 80, a);
        assert!(!d.is_allow(), "{a}: {d}");
    }
    let metadata = one_rule(r#"["169.254.169.254", "fd00:ec2::254/128"]"#);
    assert!(decide(&metadata, "a", "169.254.169.254", 80, "169.254.169.254").is_allow());
    assert!(decide(&metadata, "a", "fd00:ec2::254", 80, "fd00:ec2::254").is_allow());
    assert!(!decide(&metadata, "a", "169.254.169.253", 80, "169.254.169.253").is_allow());
}

#[test]
fn embedded_ipv4_is_classified_and_named_in_its_own_prefix() {
    let a = "64:ff9b::7f00:1";
    let v4 = one_rule(r#"["127.0.0.0/8"]"#);
    assert!(!decide(&v4, "a", a, 22, a).is_allow());
    let nat64 = one_rule(r#"["64:ff9b::/96"]"#);
    let d = decide(&nat64, "a", a, 22, a);
    assert!(d.to_string().contains("is loopback"), "{d}");
    let named = one_rule(r#"["64:ff9b::7f00:0/104"]"#);
    assert!(decide(&named, "a", a, 22, a).is_allow());
    // Public IPv4 behind NAT64 is public.
    assert!(decide(&nat64, "a", "64:ff9b::808:808", 53, "64:ff9b::808:808").is_allow());
    let six_to_four = one_rule(r#"["2002::/16"]"#);
    assert!(!decide(&six_to_four, "a", "2002:7f00:1::1", 22, "2002:7f00:1::1").is_allow());
    assert!(decide(&six_to_four, "a", "2002:808:808::1", 22, "2002:808:808::1").is_allow());
}

#[test]
fn mapped_addresses_are_canonicalized_before_deciding() {
    let any = one_rule(r#"["0.0.0.0/0", "::/0"]"#);
    let d = decide(&any, "a", "x.example", 22, "::ffff:127.0.0.1");
    assert!(
        d.to_string().contains("address 127.0.0.1 is loopback"),
        "{d}"
    );
    let loopback = one_rule(r#"["127.0.0.0/8"]"#);
    assert!(decide(&loopback, "a", "x.example", 22, "::ffff:127.0.0.1").is_allow());
    let mapped_rule = one_rule(r#"["::ffff:127.0.0.0/104"]"#);
    assert!(decide(&mapped_rule, "a", "127.0.0.1", 22, "127.0.0.1").is_allow());
}

#[test]
fn the_first_allowing_rule_in_file_order_is_reported() {
    let p = policy(
        r#"
[[rule]]
name = "names"
who = ["*"]
connect = ["*.internal"]
ports = [22]

[[rule]]
name = "nets"
who = ["*"]
connect = ["10.0.0.0/8"]
ports = [22]

[[rule]]
name = "also-names"
who = ["*"]
connect = ["db1.internal", "10.0.0.0/8"]
ports = [22]
"#,
    );
    assert_eq!(allowed_by(&pre(&p, "a", "db1.internal", 22)), "names");
    // "names" matches but does not name 10/8; "nets" does.
    assert_eq!(
        allowed_by(&decide(&p, "a", "db1.internal", 22, "10.0.0.5")),
        "nets"
    );
    assert_eq!(
        allowed_by(&decide(&p, "a", "db1.internal", 22, "1.2.3.4")),
        "names"
    );
    // Denial names the first rule that matched all but the address.
    let d = decide(&p, "a", "db1.internal", 22, "127.0.0.1");
    assert!(
        d.to_string().contains(r#"rule "names" matched the name"#),
        "{d}"
    );
}

#[test]
fn precheck_of_names_counts_any_network_as_a_candidate() {
    let nets = one_rule(r#"["10.0.0.0/8"]"#);
    assert_eq!(allowed_by(&pre(&nets, "a", "anything.example", 22)), "r");
    assert!(decide(&nets, "a", "anything.example", 22, "10.9.9.9").is_allow());
    assert!(!decide(&nets, "a", "anything.example", 22, "11.9.9.9").is_allow());
}

#[test]
fn no_rule_reasons_say_what_was_asked() {
    let p = policy(OPS);
    let d = pre(&p, "alice@corp.example", "db9.internal", 23);
    assert_eq!(
        d.to_string(),
        "deny: no rule allows alice@corp.example to connect to tcp db9.internal:23"
    );
    let d = decide(&p, "alice@corp.example", "db9.example", 22, "11.0.0.1");
    assert_eq!(
        d.to_string(),
        "deny: no rule allows alice@corp.example to connect to tcp db9.example:22 (address 11.0.0.1)"
    );
    let d = pre(&p, "eve", "::1", 22);
    assert_eq!(
        d.to_string(),
        "deny: no rule allows eve to connect to tcp [::1]:22"
    );
    // Nothing about other rules leaks into the text.
    assert!(!d.to_string().contains("ops"));
}

#[test]
fn groups_of_lists_memberships_in_file_order() {
    let p = policy(
        r#"
[groups]
sre = ["spiffe://corp/sre/*"]
all = ["*"]
ops = ["alice@corp.example", "spiffe://corp/ops/*"]
"#,
    );
    assert_eq!(p.groups_of(&id("alice@corp.example")), ["all", "ops"]);
    assert_eq!(p.groups_of(&id("spiffe://corp/sre/x")), ["sre", "all"]);
    assert!(Policy::deny_all().groups_of(&id("x")).is_empty());
}

#[test]
fn empty_group_matches_nobody() {
    let p = policy(
        "[groups]\noncall = []\n[[rule]]\nname = \"r\"\nwho = [\"group:oncall\"]\nconnect = [\"x.example\"]\nports = [22]\n",
    );
    assert!(!pre(&p, "alice", "x.example", 22).is_allow());
}
