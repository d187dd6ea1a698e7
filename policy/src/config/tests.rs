use super::*;
use crate::identity::{Identity, IdentityKind};

const EXAMPLE: &str = r#"
[groups]
sre = ["spiffe://corp/sre/*"]
ops = ["alice@corp.example", "spiffe://corp/ops/*"]

[[rule]]
name = "ops-ssh"
who = ["group:ops", "bob@corp.example"]
connect = ["*.internal", "db1.corp.example", "10.0.0.0/8", "fd00::/8", "192.0.2.7"]
ports = [22, "8000-8100"]
proto = ["tcp"]

[[rule]]
name = "dns"
who = ["*"]
connect = ["10.0.0.53"]
ports = ["53"]
proto = ["udp", "tcp"]
"#;

fn err(text: &str) -> PolicyError {
    Policy::from_toml(text, "p.toml").unwrap_err()
}

fn problem(text: &str) -> (String, PolicyProblem) {
    match err(text) {
        PolicyError::Invalid { at, problem } => (format!("{}:{}", at.line, at.column), problem),
        other => panic!("expected an invalid value, got {other}"),
    }
}

fn rule_with(field: &str, value: &str) -> String {
    let mut lines = vec![
        ("name", r#""r1""#),
        ("who", r#"["*"]"#),
        ("connect", r#"["*.internal"]"#),
        ("ports", "[22]"),
    ];
    for (k, v) in &mut lines {
        if *k == field {
            *v = value;
        }
    }
    let body: Vec<String> = lines.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("[[rule]]\n{}\n", body.join("\n"))
}

#[test]
fn parses_the_example() {
    let p = Policy::from_toml(EXAMPLE, "p.toml").unwrap();
    assert_eq!(p.rule_count(), 2);
    let ops = &p.rules[0];
    assert_eq!(ops.name, "ops-ssh");
    assert_eq!(ops.ports, vec![(22, 22), (8000, 8100)]);
    assert_eq!(ops.protos, vec![Proto::Tcp]);
    assert_eq!(ops.targets.len(), 5);
    assert_eq!(p.rules[1].protos, vec![Proto::Udp, Proto::Tcp]);
    assert_eq!(p.rules[1].ports, vec![(53, 53)]);
}

#[test]
fn groups_keep_file_order() {
    let p = Policy::from_toml(EXAMPLE, "p.toml").unwrap();
    let names: Vec<&str> = p.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["sre", "ops"]);
    let both = r#"
[groups]
zeta = ["spiffe://corp/*"]
alpha = ["spiffe://corp/ops/x"]
"#;
    let p = Policy::from_toml(both, "p").unwrap();
    let who = Identity::new(IdentityKind::Uri, "spiffe://corp/ops/x");
    assert_eq!(p.groups_of(&who), ["zeta", "alpha"]);
}

#[test]
fn proto_defaults_to_tcp_and_ports_star_is_everything() {
    let p = Policy::from_toml(&rule_with("ports", r#"["*"]"#), "p").unwrap();
    assert_eq!(p.rules[0].protos, vec![Proto::Tcp]);
    assert_eq!(p.rules[0].ports, vec![(1, 65535)]);
}

#[test]
fn empty_file_denies_everything() {
    let p = Policy::from_toml("", "p").unwrap();
    assert_eq!(p.rule_count(), 0);
}

#[test]
fn unknown_keys_are_syntax_errors_with_location() {
    let e =
        err("[[rule]]\nname = \"a\"\nwho = [\"*\"]\nconnect = [\"x.y\"]\nports = [1]\nport = 2\n");
    assert!(matches!(e, PolicyError::Syntax { .. }), "{e}");
    assert_eq!(e.location().line, 6, "{e}");
    assert!(e.to_string().starts_with("p.toml:6:"), "{e}");
    assert!(e.to_string().contains("unknown field `port`"), "{e}");

    let e = err("[rules]\n");
    assert!(e.to_string().contains("unknown field `rules`"), "{e}");
    assert_eq!(e.location().line, 1);
}

#[test]
fn missing_and_mistyped_fields_are_syntax_errors() {
    let e = err("[[rule]]\nname = \"a\"\nwho = [\"*\"]\nports = [1]\n");
    assert!(e.to_string().contains("missing field `connect`"), "{e}");
    let e = err(&rule_with("ports", r#""*""#));
    assert!(matches!(e, PolicyError::Syntax { .. }), "{e}");
    assert_eq!(e.location().line, 5, "{e}");
    let e = err(&rule_with("ports", "[22.5]"));
    assert!(e.to_string().contains("a port number"), "{e}");
    let e = err(&format!(
        "{}proto = [\"sctp\"]\n",
        rule_with("name", r#""a""#)
    ));
    assert!(e.to_string().contains("sctp"), "{e}");
    assert_eq!(e.location().line, 6, "{e}");
}

#[test]
fn empty_lists_are_refused() {
    for field in ["who", "connect", "ports"] {
        let (at, p) = problem(&rule_with(field, "[]"));
        assert_eq!(
            p,
            PolicyProblem::EmptyList {
                rule: "r1".into(),
                field: match field {
                    "who" => "who",
                    "connect" => "connect",
                    _ => "ports",
                }
            }
        );
        assert!(at.starts_with(match field {
            "who" => "3:",
            "connect" => "4:",
            _ => "5:",
        }));
    }
    let (_, p) = problem(&format!("{}proto = []\n", rule_with("name", r#""r1""#)));
    assert!(matches!(p, PolicyProblem::EmptyList { field: "proto", .. }));
}

#[test]
fn duplicate_rule_names_point_at_the_second() {
    let text = format!(
        "{}{}",
        rule_with("name", r#""a""#),
        rule_with("name", r#""a""#)
    );
    let (at, p) = problem(&text);
    assert_eq!(p, PolicyProblem::DuplicateRule { name: "a".into() });
    assert_eq!(at, "7:8");
}

#[test]
fn unknown_and_nested_groups_are_refused() {
    let (at, p) = problem(&rule_with("who", r#"["group:ops"]"#));
    assert_eq!(
        p,
        PolicyProblem::UnknownGroup {
            rule: "r1".into(),
            group: "ops".into()
        }
    );
    assert_eq!(at, "3:8");
    let (_, p) = problem("[groups]\na = [\"group:b\"]\nb = [\"x\"]\n");
    assert!(matches!(p, PolicyProblem::BadIdentityPattern { .. }), "{p}");
}

#[test]
fn bad_targets_name_the_rule_and_the_line() {
    let e = err(&rule_with("connect", r#"["db.internal", "10.0.0.1/8"]"#));
    assert_eq!(
        e.to_string(),
        "p.toml:4:27: rule \"r1\": connect target \"10.0.0.1/8\" is invalid: \
         host bits are set after the prefix; did you mean 10.0.0.0/8?"
    );
    for bad in [
        r#"["10.0.0.0/33"]"#,
        r#"["127.1"]"#,
        r#"["10.0.*"]"#,
        r#"["a..b"]"#,
    ] {
        let (_, p) = problem(&rule_with("connect", bad));
        assert!(matches!(p, PolicyProblem::BadTarget { .. }), "{bad}: {p}");
    }
}

#[test]
fn bad_ports_are_refused() {
    for (value, reason) in [
        ("[0]", "1 to 65535"),
        ("[65536]", "1 to 65535"),
        ("[-1]", "1 to 65535"),
        ("[9223372036854775807]", "1 to 65535"),
        (r#"["0-10"]"#, "1 to 65535"),
        (r#"["100-65536"]"#, "1 to 65535"),
        (r#"["8100-8000"]"#, "reversed"),
        (r#"["ssh"]"#, "not a port"),
        (r#"["1-"]"#, "not a port"),
        (r#"["-1"]"#, "not a port"),
        (r#"["1-2-3"]"#, "not a port"),
        (r#"[" 22"]"#, "not a port"),
    ] {
        let (at, p) = problem(&rule_with("ports", value));
        assert!(at.starts_with("5:"), "{value}: {at}");
        match p {
            PolicyProblem::BadPort {
                rule, reason: r, ..
            } => {
                assert_eq!(rule, "r1");
                assert!(r.contains(reason), "{value}: {r}");
            }
            other => panic!("{value}: {other}"),
        }
    }
    let p = Policy::from_toml(
        &rule_with("ports", r#"[1, 65535, "1-65535", "443-443"]"#),
        "p",
    );
    assert!(p.is_ok());
}

#[test]
fn bad_names_are_refused() {
    for name in [
        r#""""#,
        r#""has space""#,
        r#""quote\"""#,
        &format!("\"{}\"", "a".repeat(65)),
    ] {
        let (_, p) = problem(&rule_with("name", name));
        assert!(
            matches!(p, PolicyProblem::BadName { what: "rule", .. }),
            "{name}"
        );
    }
    let (_, p) = problem("[groups]\n\"o p\" = [\"x\"]\n");
    assert!(matches!(p, PolicyProblem::BadName { what: "group", .. }));
}

#[test]
fn bad_identity_patterns_are_refused() {
    for who in [r#"[""]"#, r#"[" alice"]"#, r#"["a\nb"]"#] {
        let (_, p) = problem(&rule_with("who", who));
        assert!(
            matches!(p, PolicyProblem::BadIdentityPattern { .. }),
            "{who}"
        );
    }
}

#[test]
fn errors_never_panic_on_odd_input() {
    for text in [
        "[[rule]",
        "\u{0}",
        "rule = 5",
        "[[rule]]\n",
        "groups = []",
        "[groups]\na = 1",
    ] {
        assert!(Policy::from_toml(text, "p").is_err(), "{text:?}");
    }
}

/// A rule named "r1" for anyone, with `keys` (one per line) after `who` on line 3.
fn reverse_rule(keys: &str) -> String {
    format!("[[rule]]\nname = \"r1\"\nwho = [\"*\"]\n{keys}\n")
}

#[test]
fn parses_reverse_tunnel_grants() {
    let text = reverse_rule(
        "listen = [\"alice-laptop\", \"*-laptop\", \"*\"]\npublic_ports = [2222, \"2200-2299\"]\nservices = [\"db_1\"]",
    );
    let p = Policy::from_toml(&text, "p").unwrap();
    let r = &p.rules[0];
    assert_eq!(
        r.listen,
        [
            ServicePattern::parse("alice-laptop").unwrap(),
            ServicePattern::parse("*-laptop").unwrap(),
            ServicePattern::parse("*").unwrap(),
        ]
    );
    assert_eq!(r.public_ports, vec![(2222, 2222), (2200, 2299)]);
    assert_eq!(r.services, [ServicePattern::parse("db_1").unwrap()]);
    // No `connect`: nothing to connect to, on no port, by no protocol.
    assert!(r.targets.is_empty() && r.ports.is_empty() && r.protos.is_empty());
    // Each grant alone is a rule.
    for keys in [
        "listen = [\"a\"]",
        "public_ports = [\"*\"]",
        "services = [\"a\"]",
        "routes = [\"dot\"]",
    ] {
        assert!(
            Policy::from_toml(&reverse_rule(keys), "p").is_ok(),
            "{keys}"
        );
    }
    // A connect rule keeps its defaults and has no reverse grants.
    let p = Policy::from_toml(EXAMPLE, "p").unwrap();
    let ops = &p.rules[0];
    assert!(ops.listen.is_empty() && ops.public_ports.is_empty() && ops.services.is_empty());
    assert!(ops.routes.is_empty());
}

#[test]
fn parses_route_grants() {
    let p = Policy::from_toml(&reverse_rule("routes = [\"dot\", \"redis-*\"]"), "p").unwrap();
    assert_eq!(
        p.rules[0].routes,
        [
            ServicePattern::parse("dot").unwrap(),
            ServicePattern::parse("redis-*").unwrap(),
        ]
    );
    assert!(p.rules[0].services.is_empty());
    let e = err(&reverse_rule("routes = [\"DoT\"]"));
    assert_eq!(
        e.to_string(),
        "p.toml:4:11: rule \"r1\": routes pattern \"DoT\" is invalid: \
         route names are lowercase; did you mean \"dot\"?"
    );
}

#[test]
fn connect_and_ports_come_together() {
    let (at, p) = problem(&reverse_rule("connect = [\"*.internal\"]"));
    assert_eq!(p, PolicyProblem::ConnectWithoutPorts { rule: "r1".into() });
    assert_eq!(at, "4:11");
    assert_eq!(
        err(&reverse_rule("connect = [\"*.internal\"]")).to_string(),
        "p.toml:4:11: rule \"r1\": missing field `ports`: `connect` needs the ports it allows, \
         e.g. ports = [22]"
    );
    // Also when the rule grants something else.
    let (at, p) = problem(&reverse_rule("listen = [\"a\"]\nports = [2222]"));
    assert_eq!(p, PolicyProblem::PortsWithoutConnect { rule: "r1".into() });
    assert_eq!(at, "5:9");
    let (_, p) = problem(&reverse_rule("services = [\"a\"]\nconnect = [\"x.y\"]"));
    assert_eq!(p, PolicyProblem::ConnectWithoutPorts { rule: "r1".into() });
}

#[test]
fn proto_needs_connect() {
    let (at, p) = problem(&reverse_rule("services = [\"a\"]\nproto = [\"udp\"]"));
    assert_eq!(p, PolicyProblem::ProtoWithoutConnect { rule: "r1".into() });
    assert_eq!(at, "5:9");
    assert_eq!(
        p.to_string(),
        "rule \"r1\": `proto` applies only to `connect`; remove it or add `connect`"
    );
}

#[test]
fn a_rule_must_grant_something() {
    let (at, p) = problem(&reverse_rule(""));
    assert_eq!(p, PolicyProblem::NoGrant { rule: "r1".into() });
    assert_eq!(at, "2:8");
    assert_eq!(
        p.to_string(),
        "rule \"r1\": grants nothing; add `connect` (with `ports`), `listen`, `public_ports`, \
         `services` or `routes`"
    );
}

#[test]
fn empty_reverse_lists_are_refused() {
    for field in ["listen", "public_ports", "services", "routes"] {
        let (at, p) = problem(&reverse_rule(&format!("{field} = []")));
        match p {
            PolicyProblem::EmptyList { rule, field: f } => {
                assert_eq!((rule.as_str(), f), ("r1", field));
            }
            other => panic!("{field}: {other}"),
        }
        assert!(at.starts_with("4:"), "{field}: {at}");
    }
}

#[test]
fn bad_service_patterns_name_the_key_and_the_place() {
    let e = err(&reverse_rule("listen = [\"alice-laptop\", \"Bob-Laptop\"]"));
    assert_eq!(
        e.to_string(),
        "p.toml:4:27: rule \"r1\": listen pattern \"Bob-Laptop\" is invalid: \
         service names are lowercase; did you mean \"bob-laptop\"?"
    );
    let e = err(&reverse_rule("services = [\"db.internal\"]"));
    assert_eq!(
        e.to_string(),
        "p.toml:4:13: rule \"r1\": services pattern \"db.internal\" is invalid: \
         service names have no dots; they are 1 to 63 characters of a-z, 0-9, '-' and '_'"
    );
    for keys in [r#"listen = [""]"#, r#"listen = ["a b"]"#] {
        let (_, p) = problem(&reverse_rule(keys));
        assert!(
            matches!(p, PolicyProblem::BadListenPattern { .. }),
            "{keys}: {p}"
        );
    }
    for keys in [r#"services = ["group:ops"]"#, r#"services = ["a", "é"]"#] {
        let (_, p) = problem(&reverse_rule(keys));
        assert!(
            matches!(p, PolicyProblem::BadServicePattern { .. }),
            "{keys}: {p}"
        );
    }
}

#[test]
fn bad_public_ports_are_refused_as_public_ports() {
    for (value, reason) in [
        ("[0]", "1 to 65535"),
        ("[65536]", "1 to 65535"),
        (r#"["2300-2200"]"#, "reversed"),
        (r#"["ssh"]"#, "not a port"),
    ] {
        let (at, p) = problem(&reverse_rule(&format!("public_ports = {value}")));
        assert!(at.starts_with("4:"), "{value}: {at}");
        match p {
            PolicyProblem::BadPublicPort {
                rule, reason: r, ..
            } => {
                assert_eq!(rule, "r1");
                assert!(r.contains(reason), "{value}: {r}");
            }
            other => panic!("{value}: {other}"),
        }
    }
    let (_, p) = problem(&reverse_rule("public_ports = [0]"));
    assert_eq!(
        p.to_string(),
        "rule \"r1\": public port 0 is invalid: ports are 1 to 65535"
    );
}
