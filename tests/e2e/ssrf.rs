//! Alternate spellings of loopback, link-local, metadata and private addresses are
//! denied unless a rule names their range, and nothing is dialed for a denied hello:
//! a listener on the target port records every accept.

use tp_tests::client::{connect_as_over, connect_hello, round_trip, send_hello};
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, Transport, pki};

/// Every spelling of a loopback address (or name) a hello might use.
const LOOPBACK_SPELLINGS: &[&str] = &[
    "127.0.0.1",
    "127.1",
    "0x7f000001",
    "2130706433",
    "0177.0.0.1",
    "::ffff:127.0.0.1",
    "[::ffff:127.0.0.1]",
    "[::1]",
    "::1",
    "127.0.0.1.",
    "LOCALHOST",
    "localhost",
    "localhost.",
];

/// Special addresses that are never named by the rules of these tests (the server
/// must not even dial them: nothing is listening there for us).
const NEVER_ALLOWED: &[&str] = &["169.254.169.254", "10.0.0.1", "0.0.0.0", "0"];

/// Loopback, but not where the target listens: denied like the others.
const OTHER_LOOPBACK: &[&str] = &["127.0.0.2", "127.255.255.254"];

/// How many of [`LOOPBACK_SPELLINGS`] are `127.0.0.1` once parsed.
const SPELLINGS_OF_127_0_0_1: usize = 8;

async fn expect_denied(server: &TestServer, transport: Transport, host: &str, port: u16) -> String {
    let mut tunnel = connect_as_over(transport, server.addr(), &pki().alice).await;
    let reply = send_hello(&mut tunnel, &connect_hello(host, port)).await;
    assert_eq!(
        reply.code(),
        "denied",
        "{transport:?} host {host:?}: {reply:?}"
    );
    reply.message()
}

async fn deny_all_spellings(transport: Transport, policy: &str) {
    let server = TestServer::builder()
        .policy(policy)
        .limit("connect_timeout", "1s")
        .start()
        .await;
    let target = EchoTarget::start_dual().await;
    let port = target.port();
    let all = LOOPBACK_SPELLINGS
        .iter()
        .chain(OTHER_LOOPBACK)
        .chain(NEVER_ALLOWED);
    for host in all {
        let message = expect_denied(&server, transport, host, port).await;
        // The reason is the policy's: no rule at all, or the special range.
        assert!(
            message.contains("no rule allows alice@test")
                || message.contains("and no rule names it"),
            "host {host:?}: unexpected reason: {message}"
        );
        assert_eq!(
            target.accepted(),
            0,
            "host {host:?} was denied but something connected to the target port"
        );
    }
    // Every denial is an audit event.
    let denials = server.log_lines_with(&["tp::audit", "decision=\"deny\"", transport.log_field()]);
    let asked = LOOPBACK_SPELLINGS.len() + OTHER_LOOPBACK.len() + NEVER_ALLOWED.len();
    assert!(
        denials.len() >= asked,
        "{} audit denials for {asked} hellos:\n{}",
        denials.len(),
        denials.join("\n")
    );
    assert!(server.log_lines_with(&["decision=\"allow\""]).is_empty());
    // The audit names the canonical address, whatever the spelling.
    let canonical = server.log_lines_with(&["decision=\"deny\"", "host=127.0.0.1 "]);
    assert_eq!(
        canonical.len(),
        SPELLINGS_OF_127_0_0_1,
        "{}",
        canonical.join("\n")
    );
}

async fn a_rule_for_public_addresses_does_not_reach_loopback(transport: Transport) {
    deny_all_spellings(
        transport,
        r#"
[[rule]]
name = "google-dns"
who = ["alice@test"]
connect = ["8.8.8.0/24"]
ports = ["*"]
"#,
    )
    .await;
}

async fn a_catch_all_rule_does_not_reach_loopback_metadata_or_private(transport: Transport) {
    deny_all_spellings(
        transport,
        r#"
[[rule]]
name = "anywhere"
who = ["alice@test"]
connect = ["*", "0.0.0.0/0", "::/0"]
ports = ["*"]
"#,
    )
    .await;
}

async fn a_rule_naming_loopback_allows_every_spelling_of_it(transport: Transport) {
    let server = TestServer::builder()
        .policy(
            r#"
[[rule]]
name = "loopback"
who = ["alice@test"]
connect = ["127.0.0.0/8", "::1/128", "localhost"]
ports = ["*"]
"#,
        )
        .limit("connect_timeout", "1s")
        .start()
        .await;
    let target = EchoTarget::start_dual().await;
    let port = target.port();
    let mut expected = 0;
    for host in LOOPBACK_SPELLINGS {
        let v6_only = host.contains("::1");
        if v6_only && !target.has_v6() {
            eprintln!("skipping {host}: cannot listen on [::1]:{port}");
            continue;
        }
        let mut tunnel = connect_as_over(transport, server.addr(), &pki().alice).await;
        let reply = send_hello(&mut tunnel, &connect_hello(host, port)).await;
        assert_eq!(reply.code(), "ok", "{transport:?} host {host:?}: {reply:?}");
        expected += 1;
        let payload = format!("echo via {host}");
        let back = round_trip(&mut tunnel, payload.as_bytes()).await;
        assert_eq!(String::from_utf8_lossy(&back), payload, "host {host:?}");
        assert_eq!(target.accepted(), expected, "host {host:?}");
    }
    server
        .expect_log(&["decision=\"allow\"", "rule=loopback", transport.log_field()])
        .await;

    // Naming loopback opens loopback only: metadata and private stay closed.
    for host in NEVER_ALLOWED {
        expect_denied(&server, transport, host, port).await;
    }
    assert_eq!(target.accepted(), expected);
}

tp_tests::over_both_transports!(
    a_rule_for_public_addresses_does_not_reach_loopback,
    a_catch_all_rule_does_not_reach_loopback_metadata_or_private,
    a_rule_naming_loopback_allows_every_spelling_of_it,
);
