//! The server's dial to the target, over both transports: a target that never
//! answers the TCP handshake gets `timeout` after `connect_timeout` (the dial has
//! a deadline of its own), a name that does not resolve gets `unreachable`, and
//! `tp` exits with each code's documented status (docs/client.md: 16 and 14).

use std::time::{Duration, Instant};

use tp_tests::bins::run_tp;
use tp_tests::client::{connect_as_over, connect_hello, read_reply, send_hello};
use tp_tests::target::SilentTarget;
use tp_tests::{TestServer, Transport, pki, within};

/// `tp`'s exit status for a `timeout` answer.
const EXIT_TIMEOUT: i32 = 16;
/// `tp`'s exit status for an `unreachable` answer.
const EXIT_UNREACHABLE: i32 = 14;

async fn a_target_that_never_answers_times_out_at_the_connect_timeout(transport: Transport) {
    let server = TestServer::builder()
        .limit("connect_timeout", "1s")
        .start()
        .await;
    let target = SilentTarget::start().await;

    let mut tunnel = connect_as_over(transport, server.addr(), &pki().alice).await;
    let started = Instant::now();
    let reply = send_hello(&mut tunnel, &connect_hello("127.0.0.1", target.port())).await;
    let waited = started.elapsed();
    assert_eq!(reply.code(), "timeout", "{transport:?}: {reply:?}");
    assert!(
        reply.message().contains("did not answer within 1s"),
        "{reply:?}"
    );
    assert!(
        waited >= Duration::from_millis(800) && waited <= Duration::from_secs(3),
        "answered after {waited:?}; connect_timeout is 1s"
    );
    server
        .expect_log(&["dial timed out", transport.log_field()])
        .await;

    // The client reports it with the status documented for `timeout`.
    let config = server.client_config_over(&pki().alice, transport);
    let port = target.port().to_string();
    let out = run_tp(&config, ["127.0.0.1", port.as_str()], b"").await;
    assert_eq!(out.code(), EXIT_TIMEOUT, "{out:?}");
    assert_eq!(
        out.stderr,
        format!("tp: timeout: 127.0.0.1:{port} did not answer within 1s\n")
    );
}

/// `nonexistent.invalid` cannot resolve (RFC 6761 reserves `.invalid`); the
/// policy allows it, so the answer is about the name, not the policy.
async fn a_name_that_does_not_resolve_is_unreachable(transport: Transport) {
    let server = TestServer::builder()
        .policy(
            r#"
[[rule]]
name = "invalid-names"
who = ["*"]
connect = ["*.invalid"]
ports = ["*"]
"#,
        )
        .start()
        .await;
    let mut tunnel = connect_as_over(transport, server.addr(), &pki().alice).await;
    let reply = send_hello(&mut tunnel, &connect_hello("nonexistent.invalid", 22)).await;
    assert_eq!(reply.code(), "unreachable", "{transport:?}: {reply:?}");
    assert!(
        reply
            .message()
            .contains("cannot resolve nonexistent.invalid"),
        "{reply:?}"
    );
    // The tunnel ends after the answer.
    let after = within("the end", Duration::from_secs(5), read_reply(&mut tunnel)).await;
    assert!(
        matches!(after, tp_tests::client::Reply::Closed { ref partial, .. } if partial.is_empty()),
        "{after:?}"
    );

    let config = server.client_config_over(&pki().alice, transport);
    let out = run_tp(&config, ["nonexistent.invalid", "22"], b"").await;
    assert_eq!(out.code(), EXIT_UNREACHABLE, "{out:?}");
    assert!(
        out.stderr
            .starts_with("tp: unreachable: cannot resolve nonexistent.invalid"),
        "{}",
        out.stderr
    );
}

tp_tests::over_both_transports!(
    a_target_that_never_answers_times_out_at_the_connect_timeout,
    a_name_that_does_not_resolve_is_unreachable,
);
