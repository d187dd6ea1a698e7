//! The example policies in `docs/policy.md` parse, and decide as their tables say.

use std::net::IpAddr;

use policy::{ConnectRequest, Decision, Identity, IdentityKind, Policy};
use tp_proto::{Host, Proto};

/// The first toml example of `docs/policy.md` after the line `after` (from the start
/// if empty).
fn doc_policy_after(after: &str) -> Policy {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.md");
    let doc = std::fs::read_to_string(path).expect("docs/policy.md is readable");
    let from = doc.find(after).expect("docs/policy.md has the section");
    let start = from
        + doc[from..]
            .find("```toml\n")
            .expect("docs/policy.md has a toml example")
        + 8;
    let len = doc[start..].find("```").expect("the toml example ends");
    Policy::from_toml(&doc[start..start + len], "docs/policy.md").expect("the example parses")
}

fn doc_policy() -> Policy {
    doc_policy_after("")
}

/// Both server steps; the precheck's denial if it denies, else the decision on `addr`.
fn check(
    p: &Policy,
    who: &Identity,
    proto: Proto,
    host: &str,
    port: u16,
    addr: Option<&str>,
) -> Decision {
    let host = Host::parse(host).expect("valid host");
    let pre = p.precheck_connect(who, proto, &host, port);
    if !pre.is_allow() {
        return pre;
    }
    let addr: IpAddr = match (addr, host.ip()) {
        (Some(a), _) => a.parse().expect("valid address"),
        (None, Some(ip)) => ip,
        (None, None) => return pre,
    };
    let req = ConnectRequest {
        proto,
        host: &host,
        port,
        addr,
    };
    p.decide_connect(who, &req)
}

#[test]
fn the_examples_table_is_true() {
    let p = doc_policy();
    assert_eq!(p.rule_count(), 4);
    let alice = Identity::new(IdentityKind::Email, "alice@corp.example");
    assert_eq!(p.groups_of(&alice), ["ops"]);
    let tcp = Proto::Tcp;
    let udp = Proto::Udp;
    let cases: [(Proto, &str, u16, Option<&str>, &str); 12] = [
        (
            tcp,
            "db1.internal",
            22,
            Some("10.0.0.5"),
            r#"allow (rule "ops-ssh")"#,
        ),
        (
            tcp,
            "db1.internal",
            22,
            Some("192.168.1.5"),
            r#"deny: address 192.168.1.5 is private and no rule names it (rule "ops-ssh" matched the name)"#,
        ),
        (
            tcp,
            "db1.internal",
            22,
            Some("127.0.0.1"),
            r#"deny: address 127.0.0.1 is loopback and no rule names it (rule "ops-ssh" matched the name)"#,
        ),
        (
            tcp,
            "DB1.Internal.",
            8080,
            Some("10.0.0.5"),
            r#"allow (rule "ops-ssh")"#,
        ),
        (
            tcp,
            "db1.internal",
            23,
            None,
            "deny: no rule allows alice@corp.example to connect to tcp db1.internal:23",
        ),
        (
            udp,
            "db1.internal",
            22,
            None,
            "deny: no rule allows alice@corp.example to connect to udp db1.internal:22",
        ),
        (tcp, "10.1.2.3", 22, None, r#"allow (rule "ops-ssh")"#),
        (
            tcp,
            "0x7f000001",
            22,
            None,
            "deny: no rule allows alice@corp.example to connect to tcp 127.0.0.1:22",
        ),
        (
            tcp,
            "www.example.com",
            443,
            Some("93.184.216.34"),
            r#"allow (rule "public-web")"#,
        ),
        (
            tcp,
            "www.example.com",
            443,
            Some("127.0.0.1"),
            r#"deny: address 127.0.0.1 is loopback and no rule names it (rule "public-web" matched the name)"#,
        ),
        (
            tcp,
            "169.254.169.254",
            80,
            None,
            r#"deny: address 169.254.169.254 is cloud metadata and no rule names it (rule "public-web" matched the address)"#,
        ),
        (
            udp,
            "anything.example",
            53,
            Some("10.0.0.53"),
            r#"allow (rule "dns")"#,
        ),
    ];
    for (proto, host, port, addr, want) in cases {
        let got = check(&p, &alice, proto, host, port, addr).to_string();
        assert_eq!(got, want, "{proto} {host}:{port} at {addr:?}");
    }
    let carol = Identity::new(IdentityKind::Uri, "spiffe://corp/sre/carol");
    let d = check(&p, &carol, tcp, "169.254.169.254", 80, None);
    assert_eq!(d.to_string(), r#"allow (rule "sre-metadata")"#);
}

#[test]
fn the_reverse_tunnel_table_is_true() {
    let p = doc_policy_after("\n## Reverse tunnels\n");
    assert_eq!(p.rule_count(), 4);
    let alice = Identity::new(IdentityKind::Email, "alice@corp.example");
    let bob = Identity::new(IdentityKind::Email, "bob@corp.example");
    let carol = Identity::new(IdentityKind::Uri, "spiffe://corp/ops/carol");
    let bastion = Identity::new(IdentityKind::Uri, "spiffe://corp/ops/bastion");
    let cases: [(Decision, &str); 8] = [
        (
            p.decide_listen_name(&alice, "alice-laptop"),
            r#"allow (rule "own-laptop")"#,
        ),
        (
            p.decide_listen_name(&bob, "alice-laptop"),
            r#"allow (rule "laptops")"#,
        ),
        (
            p.decide_listen_name(&bob, "bob-desktop"),
            "deny: no rule allows bob@corp.example to listen on service bob-desktop",
        ),
        (
            p.decide_service(&carol, "alice-laptop"),
            r#"allow (rule "reach-laptops")"#,
        ),
        (
            p.decide_service(&alice, "alice-laptop"),
            "deny: no rule allows alice@corp.example to connect to service alice-laptop",
        ),
        (
            p.decide_listen_port(&bastion, 2222),
            r#"allow (rule "public-ssh")"#,
        ),
        (
            p.decide_listen_port(&bastion, 22),
            "deny: no rule allows spiffe://corp/ops/bastion to listen on public port 22",
        ),
        (
            p.decide_listen_port(&alice, 2222),
            "deny: no rule allows alice@corp.example to listen on public port 2222",
        ),
    ];
    for (i, (got, want)) in cases.iter().enumerate() {
        assert_eq!(got.to_string(), *want, "row {}", i + 1);
    }
}

#[test]
fn the_tls_route_table_is_true() {
    let p = doc_policy_after("\n## TLS routes\n");
    assert_eq!(p.rule_count(), 2);
    let carol = Identity::new(IdentityKind::Email, "carol@ops.example");
    let alice = Identity::new(IdentityKind::Email, "alice@corp.example");
    let web = Identity::new(IdentityKind::Uri, "spiffe://corp/app/web");
    let cases = [
        (
            p.decide_route(&carol, "dot"),
            r#"allow (rule "private-dns")"#,
        ),
        (
            p.decide_route(&web, "redis-sessions"),
            r#"allow (rule "caches")"#,
        ),
        (
            p.decide_route(&web, "dot"),
            "deny: no rule allows spiffe://corp/app/web to use route dot",
        ),
        (
            p.decide_route(&alice, "redis-sessions"),
            "deny: no rule allows alice@corp.example to use route redis-sessions",
        ),
    ];
    for (i, (got, want)) in cases.iter().enumerate() {
        assert_eq!(got.to_string(), *want, "row {}", i + 1);
    }
}
