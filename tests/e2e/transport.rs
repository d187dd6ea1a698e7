//! How `tp` picks a transport: `auto` prefers QUIC, falls back to TLS/TCP within
//! about a second when UDP gets no answer (and says so at debug level), and
//! remembers that for the next process; `--transport` pins one.

use std::time::{Duration, Instant};

use tp_tests::bins::{cache_dir, run_tp};
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, Transport, pki};

#[tokio::test]
async fn auto_prefers_quic() {
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let config = server.client_config_for(&pki().alice);
    let port = target.port().to_string();
    let out = run_tp(&config, ["-vv", "127.0.0.1", port.as_str()], b"ping").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"ping");
    assert!(out.stderr.contains("transport=quic"), "{}", out.stderr);
    server
        .expect_log(&["tunnel closed", Transport::Quic.log_field()])
        .await;
}

#[tokio::test]
async fn auto_falls_back_to_tcp_when_quic_is_silent_and_remembers() {
    // The UDP port is bound but nobody reads it: every QUIC packet is dropped,
    // as on a network that blocks UDP.
    let server = TestServer::builder()
        .section("quic", "enabled", "false")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let config = server.client_config_for(&pki().alice);
    let port = target.port().to_string();

    let started = Instant::now();
    let out = run_tp(&config, ["-vv", "127.0.0.1", port.as_str()], b"ping").await;
    let took = started.elapsed();
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"ping");
    assert!(
        out.stderr.contains("QUIC did not answer; using TLS/TCP"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("transport=tcp"), "{}", out.stderr);
    // Generous: the head start is 300 ms; a loaded CI machine gets the rest.
    assert!(took < Duration::from_secs(3), "fell back after {took:?}");
    server
        .expect_log(&["tunnel closed", Transport::Tcp.log_field()])
        .await;

    // The next process remembers and goes straight to TLS/TCP.
    let cache = std::fs::read_to_string(cache_dir(&config).join("tp/transport"))
        .expect("the transport cache was written");
    assert!(
        cache.contains(&server.addr().to_string()),
        "cache: {cache:?}"
    );
    let out = run_tp(&config, ["-vv", "127.0.0.1", port.as_str()], b"again").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"again");
    assert!(out.stderr.contains("transport=tcp"), "{}", out.stderr);
    assert!(
        out.stderr.contains("ago; using TLS/TCP")
            && !out.stderr.contains("QUIC did not answer; using TLS/TCP"),
        "the second run tried QUIC again instead of remembering:\n{}",
        out.stderr
    );
}

#[tokio::test]
async fn pinned_quic_fails_clearly_when_udp_is_silent() {
    let server = TestServer::builder()
        .section("quic", "enabled", "false")
        .start()
        .await;
    let config = server.client_config_over(&pki().alice, Transport::Quic);
    let out = run_tp(&config, ["127.0.0.1", "22"], b"").await;
    assert_ne!(out.code(), 0, "{out:?}");
    assert!(out.stderr.contains("QUIC"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

/// A one-shot `tp` over QUIC closes its connection before it exits, and waits
/// only for that close to be sent, not out the closing period: the server logs
/// the client's close (code 0) rather than an idle timeout a minute later, and
/// `-vv` says the close went out.
#[tokio::test]
async fn a_one_shot_tp_closes_its_quic_connection_before_it_exits() {
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let config = server.client_config_for(&pki().alice);
    let port = target.port().to_string();
    let args = ["-vv", "--transport", "quic", "127.0.0.1", port.as_str()];
    let out = run_tp(&config, args, b"ping").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"ping");
    assert!(out.stderr.contains("QUIC close sent"), "{}", out.stderr);
    server
        .expect_log(&["QUIC connection closed", "reason=closed by the client"])
        .await;
}
