//! `[quic] idle_timeout` and `keep_alive` reach the server's QUIC connections: a
//! quiet connection closes at the idle timeout (the server logs it), unless the
//! server's keep-alives hold it open. The raw client's own keep-alive (5 s) and
//! idle timeout (quinn's 30 s) are longer, so what happens is the server's doing.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tp_tests::client::{ClientOptions, connect_hello, send_hello};
use tp_tests::quic::{self, QuicClient};
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, pki, within};

/// A QUIC connection as alice whose first stream is an open tunnel to `target`.
async fn open_tunnel(server: &TestServer, target: &EchoTarget) -> (QuicClient, Instant) {
    let mut client = quic::connect(server.addr(), &ClientOptions::with(&pki().alice))
        .await
        .expect("QUIC connect");
    let reply = send_hello(&mut client, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
    (client, Instant::now())
}

#[tokio::test]
async fn a_quiet_connection_closes_at_the_quic_idle_timeout() {
    let server = TestServer::builder()
        .section("quic", "idle_timeout", "\"1s\"")
        .section("quic", "keep_alive", "\"off\"")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let (client, quiet_since) = open_tunnel(&server, &target).await;
    let peer = client.endpoint().local_addr().expect("local_addr");

    let closed = within(
        "the idle timeout",
        Duration::from_secs(10),
        client.connection().closed(),
    )
    .await;
    let quiet = quiet_since.elapsed();
    assert!(
        matches!(closed, quinn::ConnectionError::TimedOut),
        "{closed:?}"
    );
    assert!(
        quiet >= Duration::from_millis(800) && quiet <= Duration::from_secs(4),
        "closed after {quiet:?} of quiet; the idle timeout is 1s"
    );
    server
        .expect_log(&[
            "QUIC connection closed",
            "reason=idle timeout",
            &format!("peer={peer}"),
        ])
        .await;
}

#[tokio::test]
async fn server_keep_alives_hold_a_quiet_connection_open() {
    let server = TestServer::builder()
        .section("quic", "idle_timeout", "\"1s\"")
        .section("quic", "keep_alive", "\"300ms\"")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let (mut client, _) = open_tunnel(&server, &target).await;

    // Two and a half idle timeouts without a byte from either side's tunnel.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        client.connection().close_reason().is_none(),
        "{:?}",
        client.connection().close_reason()
    );
    client.write_all(b"still here").await.expect("write");
    let mut back = [0u8; 10];
    within(
        "the echo",
        Duration::from_secs(5),
        client.read_exact(&mut back),
    )
    .await
    .expect("read");
    assert_eq!(&back, b"still here");
    assert!(server.log_lines_with(&["idle timeout"]).is_empty());
}
