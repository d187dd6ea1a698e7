use tp_proto::{Host, Proto};

use super::*;
use crate::identity::IdentityKind;
use crate::rules::ConnectRequest;

fn policy(text: &str) -> Policy {
    Policy::from_toml(text, "test.toml").unwrap()
}

fn id(s: &str) -> Identity {
    Identity::new(IdentityKind::Email, s)
}

fn allowed_by(d: &Decision) -> &str {
    d.rule()
        .unwrap_or_else(|| panic!("expected allow, got {d}"))
}

const REVERSE: &str = r#"
[groups]
staff = ["alice@corp", "bob@corp"]
ops = ["carol@corp"]

[[rule]]
name = "alice-own"
who = ["alice@corp"]
listen = ["alice-laptop"]

[[rule]]
name = "laptops"
who = ["group:staff"]
listen = ["*-laptop", "build-*-ci"]
public_ports = [2222, "2200-2299"]

[[rule]]
name = "reach-laptops"
who = ["group:ops"]
services = ["*-laptop"]

[[rule]]
name = "ssh"
who = ["*"]
connect = ["*.internal", "0.0.0.0/0"]
ports = ["*"]
"#;

#[test]
fn listen_name_exact_glob_and_group() {
    let p = policy(REVERSE);
    let (alice, bob) = (id("alice@corp"), id("bob@corp"));
    assert_eq!(
        allowed_by(&p.decide_listen_name(&alice, "alice-laptop")),
        "alice-own"
    );
    // bob is staff: the glob in "laptops" matches, the exact name in "alice-own" is not his.
    assert_eq!(
        allowed_by(&p.decide_listen_name(&bob, "alice-laptop")),
        "laptops"
    );
    assert_eq!(
        allowed_by(&p.decide_listen_name(&bob, "-laptop")),
        "laptops"
    );
    assert_eq!(
        allowed_by(&p.decide_listen_name(&bob, "build-7-ci")),
        "laptops"
    );
    assert_eq!(
        allowed_by(&p.decide_listen_name(&bob, "build--ci")),
        "laptops"
    );
    for name in ["laptop", "alice-laptop-2", "build-7", "db", "Alice-laptop"] {
        assert!(!p.decide_listen_name(&bob, name).is_allow(), "{name}");
    }
    // carol is ops: she may reach laptops, not expose one.
    let d = p.decide_listen_name(&id("carol@corp"), "carol-laptop");
    assert_eq!(
        d,
        Decision::Deny {
            reason: DenyReason::NoListenNameRule {
                who: "carol@corp".into(),
                name: "carol-laptop".into(),
            }
        }
    );
    assert_eq!(
        d.to_string(),
        "deny: no rule allows carol@corp to listen on service carol-laptop"
    );
}

#[test]
fn listen_port_ranges() {
    let p = policy(REVERSE);
    let bob = id("bob@corp");
    for port in [2200, 2222, 2250, 2299] {
        assert_eq!(
            allowed_by(&p.decide_listen_port(&bob, port)),
            "laptops",
            "{port}"
        );
    }
    for port in [0, 22, 2199, 2300, 65535] {
        assert!(!p.decide_listen_port(&bob, port).is_allow(), "{port}");
    }
    // alice's own rule grants no public ports; her group's rule does.
    assert_eq!(
        allowed_by(&p.decide_listen_port(&id("alice@corp"), 2222)),
        "laptops"
    );
    let d = p.decide_listen_port(&id("carol@corp"), 2222);
    assert_eq!(
        d,
        Decision::Deny {
            reason: DenyReason::NoListenPortRule {
                who: "carol@corp".into(),
                port: 2222,
            }
        }
    );
    assert_eq!(
        d.to_string(),
        "deny: no rule allows carol@corp to listen on public port 2222"
    );
}

#[test]
fn port_zero_is_never_a_public_port() {
    let p = policy("[[rule]]\nname = \"all\"\nwho = [\"*\"]\npublic_ports = [\"*\"]\n");
    assert_eq!(allowed_by(&p.decide_listen_port(&id("x"), 1)), "all");
    assert_eq!(allowed_by(&p.decide_listen_port(&id("x"), 65535)), "all");
    assert!(!p.decide_listen_port(&id("x"), 0).is_allow());
}

#[test]
fn services_globs_and_groups() {
    let p = policy(REVERSE);
    let carol = id("carol@corp");
    for name in ["alice-laptop", "bob-laptop", "-laptop"] {
        assert_eq!(
            allowed_by(&p.decide_service(&carol, name)),
            "reach-laptops",
            "{name}"
        );
    }
    assert!(!p.decide_service(&carol, "build-7-ci").is_allow());
    // Listening on a name does not grant reaching it.
    let d = p.decide_service(&id("alice@corp"), "alice-laptop");
    assert_eq!(
        d,
        Decision::Deny {
            reason: DenyReason::NoServiceRule {
                who: "alice@corp".into(),
                name: "alice-laptop".into(),
            }
        }
    );
    assert_eq!(
        d.to_string(),
        "deny: no rule allows alice@corp to connect to service alice-laptop"
    );
}

#[test]
fn each_grant_is_its_own() {
    let p = policy(REVERSE);
    let eve = id("eve@corp");
    let host = Host::parse("1.1.1.1").unwrap();
    let req = ConnectRequest {
        proto: Proto::Tcp,
        host: &host,
        port: 2222,
        addr: "1.1.1.1".parse().unwrap(),
    };
    // "ssh" allows anyone to connect anywhere public, on every port...
    assert_eq!(allowed_by(&p.decide_connect(&eve, &req)), "ssh");
    // ...which says nothing about services or listening.
    assert!(!p.decide_service(&eve, "alice-laptop").is_allow());
    assert!(!p.decide_listen_name(&eve, "eve-laptop").is_allow());
    assert!(!p.decide_listen_port(&eve, 2222).is_allow());
    // And rules without `connect` never allow a connect.
    let only_reverse = policy(
        "[[rule]]\nname = \"r\"\nwho = [\"*\"]\nlisten = [\"*\"]\npublic_ports = [\"*\"]\nservices = [\"*\"]\n",
    );
    let d = only_reverse.decide_connect(&eve, &req);
    assert!(!d.is_allow(), "{d}");
    let name = Host::parse("x.example").unwrap();
    let pre = only_reverse.precheck_connect(&eve, Proto::Tcp, &name, 22);
    assert!(!pre.is_allow(), "{pre}");
    assert_eq!(allowed_by(&only_reverse.decide_service(&eve, "x")), "r");
    assert_eq!(allowed_by(&only_reverse.decide_listen_port(&eve, 22)), "r");
}

#[test]
fn the_first_allowing_rule_in_file_order_is_reported() {
    let p = policy(
        r#"
[[rule]]
name = "narrow"
who = ["alice@corp"]
listen = ["alice-laptop"]
public_ports = [2222]
services = ["db"]

[[rule]]
name = "wide"
who = ["*"]
listen = ["*"]
public_ports = ["*"]
services = ["*"]
"#,
    );
    let alice = id("alice@corp");
    assert_eq!(
        allowed_by(&p.decide_listen_name(&alice, "alice-laptop")),
        "narrow"
    );
    assert_eq!(allowed_by(&p.decide_listen_port(&alice, 2222)), "narrow");
    assert_eq!(allowed_by(&p.decide_service(&alice, "db")), "narrow");
    // The narrow rule does not match these; the wide one does.
    assert_eq!(allowed_by(&p.decide_listen_name(&alice, "other")), "wide");
    assert_eq!(allowed_by(&p.decide_listen_port(&alice, 2223)), "wide");
    assert_eq!(allowed_by(&p.decide_service(&alice, "db2")), "wide");
    // Not alice: the first rule's `who` does not match.
    let bob = id("bob@corp");
    assert_eq!(
        allowed_by(&p.decide_listen_name(&bob, "alice-laptop")),
        "wide"
    );
}

#[test]
fn names_the_codec_refuses_are_never_allowed() {
    let p =
        policy("[[rule]]\nname = \"any\"\nwho = [\"*\"]\nlisten = [\"*\"]\nservices = [\"*\"]\n");
    let x = id("x");
    assert_eq!(allowed_by(&p.decide_listen_name(&x, "ok_name-1")), "any");
    for name in ["", "Upper", "a.b", "a b", "a\nb", &"a".repeat(64)] {
        assert!(!p.decide_listen_name(&x, name).is_allow(), "{name:?}");
        assert!(!p.decide_service(&x, name).is_allow(), "{name:?}");
    }
    let d = p.decide_service(&x, "a\nb");
    assert_eq!(
        d.to_string(),
        r"deny: no rule allows x to connect to service a\nb"
    );
}

#[test]
fn deny_all_denies_reverse_tunnels() {
    let p = Policy::deny_all();
    let a = id("alice@corp");
    assert!(!p.decide_listen_name(&a, "alice-laptop").is_allow());
    assert!(!p.decide_listen_port(&a, 2222).is_allow());
    assert!(!p.decide_service(&a, "alice-laptop").is_allow());
}
