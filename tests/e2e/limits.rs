//! Server limits through `tp_server::run`: the idle timeout closes a quiet tunnel,
//! `max_connections` holds further clients in the accept queue until a slot frees,
//! and shutdown closes tunnels still open at the drain deadline.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tp_tests::client::{connect_as, connect_hello, open_tunnel, send_hello};
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, pki, within};

#[tokio::test]
async fn idle_tunnel_is_closed() {
    let server = TestServer::builder()
        .limit("idle_timeout", "1s")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let mut tls = open_tunnel(server.addr(), &pki().alice, "127.0.0.1", target.port()).await;
    // Traffic keeps it open past the timeout...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        tls.write_all(b"tick").await.expect("write");
        let mut back = [0u8; 4];
        within("echo", Duration::from_secs(5), tls.read_exact(&mut back))
            .await
            .expect("read");
    }
    // ...silence ends it.
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = within(
        "the idle close",
        Duration::from_secs(5),
        tls.read_to_end(&mut rest),
    )
    .await;
    let waited = started.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "closed after {waited:?} of silence, idle_timeout is 1s"
    );
    server
        .expect_log(&["tunnel closed: idle timeout", "bytes.up=12"])
        .await;
}

#[tokio::test]
async fn max_connections_queues_the_next_client() {
    let server = TestServer::builder()
        .limit("max_connections", "1")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let mut first = open_tunnel(server.addr(), &pki().alice, "127.0.0.1", target.port()).await;

    // The second client's TCP connect succeeds (kernel backlog), but the server does
    // not serve it while the first tunnel holds the only slot.
    let addr = server.addr();
    let port = target.port();
    let second = tokio::spawn(async move {
        let mut tls = connect_as(addr, &pki().bob).await;
        let reply = send_hello(&mut tls, &connect_hello("127.0.0.1", port)).await;
        (reply, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !second.is_finished(),
        "the second client was served at once"
    );
    assert_eq!(target.accepted(), 1);

    first.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    within(
        "the first tunnel's end",
        Duration::from_secs(5),
        first.read_to_end(&mut rest),
    )
    .await
    .expect("read");
    let released = Instant::now();
    let (reply, answered) = within("the second client", Duration::from_secs(10), second)
        .await
        .expect("second client task");
    assert_eq!(reply.code(), "ok", "{reply:?}");
    assert!(answered >= released);
    target.expect_accepted(2).await;
}

#[tokio::test]
async fn shutdown_closes_tunnels_left_at_the_drain_deadline() {
    let server = TestServer::builder()
        .limit("drain_timeout", "1s")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let mut tls = open_tunnel(server.addr(), &pki().alice, "127.0.0.1", target.port()).await;
    let addr = server.addr();
    let started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());

    // During the drain the open tunnel still works...
    tls.write_all(b"draining").await.expect("write");
    let mut back = [0u8; 8];
    within(
        "echo while draining",
        Duration::from_secs(5),
        tls.read_exact(&mut back),
    )
    .await
    .expect("read");
    assert_eq!(&back, b"draining");
    // ...and run() returns once the deadline has passed, closing it.
    within("run() returning", Duration::from_secs(5), stopping)
        .await
        .expect("join")
        .expect("run() returns Ok");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "returned after {waited:?}, before the 1s drain deadline"
    );
    let mut rest = Vec::new();
    let _ = within(
        "the forced close",
        Duration::from_secs(5),
        tls.read_to_end(&mut rest),
    )
    .await;
    assert!(rest.is_empty());
    let lines = tp_tests::logs::lines_for(addr);
    assert!(
        lines.iter().any(|l| l.contains("drain deadline passed")),
        "{lines:#?}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening"
    );
}

#[tokio::test]
async fn a_hello_during_the_drain_gets_busy() {
    let server = TestServer::builder()
        .limit("drain_timeout", "5s")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let mut tls = connect_as(server.addr(), &pki().alice).await;
    // The handshake is done; the hello comes after the drain began.
    server.cancel();
    let reply = send_hello(&mut tls, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "busy", "{reply:?}");
    assert!(reply.message().contains("shutting down"), "{reply:?}");
    assert_eq!(target.accepted(), 0);
}

/// A TCP connection to `server` from the loopback address `source`.
async fn tcp_from(source: &str, server: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source address"))
        .expect("bind the source address");
    socket.connect(server).await.expect("TCP connect")
}

#[tokio::test]
async fn one_source_cannot_hold_every_handshake_slot() {
    let server = TestServer::builder()
        .limit("max_handshakes_per_source", "2")
        .limit("handshake_timeout", "30s")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let options = tp_tests::client::ClientOptions::with(&pki().alice);

    // Two silent connections from 127.0.0.1 hold its two slots...
    let idle_a = tcp_from("127.0.0.1", server.addr()).await;
    let _idle_b = tcp_from("127.0.0.1", server.addr()).await;
    // (The accept loop takes connections in order: these two come first.)
    // ...so a third from there is closed without a handshake...
    let mut third = tcp_from("127.0.0.1", server.addr()).await;
    let mut buf = [0u8; 1];
    let n = within(
        "the third connection's close",
        Duration::from_secs(5),
        third.read(&mut buf),
    )
    .await
    .unwrap_or(0);
    assert_eq!(n, 0, "the third connection was served");
    server
        .expect_log(&["too many handshakes from this source"])
        .await;

    // ...while another source is served as usual.
    let tcp = tcp_from("127.0.0.2", server.addr()).await;
    let mut tls = tp_tests::client::handshake(tcp, &options)
        .await
        .expect("handshake from another source");
    let reply = send_hello(&mut tls, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");

    // Once a silent connection goes away, its slot comes back.
    drop(idle_a);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tcp = tcp_from("127.0.0.1", server.addr()).await;
        if let Ok(mut tls) = tp_tests::client::handshake(tcp, &options).await {
            let reply = send_hello(&mut tls, &connect_hello("127.0.0.1", target.port())).await;
            if matches!(reply, tp_tests::client::Reply::Answer(_)) {
                assert_eq!(reply.code(), "ok", "{reply:?}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `max_tunnels_per_identity` counts one identity's tunnels on both transports.
async fn an_identity_over_its_tunnel_limit_gets_busy(transport: tp_tests::Transport) {
    use tp_tests::client::{connect_as_over, open_tunnel_over};
    let server = TestServer::builder()
        .limit("max_tunnels_per_identity", "1")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let mut first = open_tunnel_over(
        transport,
        server.addr(),
        &pki().alice,
        "127.0.0.1",
        target.port(),
    )
    .await;

    let mut second = connect_as_over(transport, server.addr(), &pki().alice).await;
    let reply = send_hello(&mut second, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "busy", "{reply:?}");
    assert!(reply.message().contains("alice@test"), "{reply:?}");
    // Another identity is not affected.
    let _bob = open_tunnel_over(
        transport,
        server.addr(),
        &pki().bob,
        "127.0.0.1",
        target.port(),
    )
    .await;

    // When the first tunnel ends, alice may open another.
    first.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    within(
        "the first tunnel's end",
        Duration::from_secs(5),
        first.read_to_end(&mut rest),
    )
    .await
    .expect("read");
    drop(first);
    tp_tests::assert_eventually!(
        server
            .log_lines_with(&["tunnel closed", "id=alice@test"])
            .len()
            == 1,
        "the first tunnel never closed"
    );
    let mut third = connect_as_over(transport, server.addr(), &pki().alice).await;
    let reply = send_hello(&mut third, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
    target.expect_accepted(3).await;
}

tp_tests::over_both_transports!(an_identity_over_its_tunnel_limit_gets_busy);
