//! What only QUIC does: many tunnels on one connection and per-connection
//! limits (roaming has its own module, `roaming.rs`). Everything both
//! transports share runs under `over_both_transports!` in the other modules.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tp_server::pki::Issued;
use tp_tests::client::{ClientOptions, connect_hello, send_hello};
use tp_tests::data::{random_bytes, sha256_hex};
use tp_tests::quic;
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, pki, within};

async fn open_quic_tunnel(server: &TestServer, leaf: &Issued, port: u16) -> quic::QuicClient {
    quic::open_tunnel(server.addr(), leaf, port).await
}

/// Sends `data` through `stream` to the echo target and checks it all comes back.
async fn echo_all<S>(stream: &mut S, data: &[u8]) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut r, mut w) = tokio::io::split(stream);
    let send = async {
        w.write_all(data).await.expect("write");
        w.shutdown().await.expect("finish");
    };
    let mut back = Vec::with_capacity(data.len());
    let receive = r.read_to_end(&mut back);
    let ((), got) = tokio::join!(send, receive);
    got.expect("read to EOF");
    sha256_hex(&back)
}

#[tokio::test]
async fn a_hundred_tunnels_on_one_connection() {
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let client = quic::connect(server.addr(), &ClientOptions::with(&pki().alice))
        .await
        .expect("QUIC connect");
    let port = target.port();
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let mut stream = client.open_stream().await.expect("open stream");
        tasks.push(tokio::spawn(async move {
            let reply = send_hello(&mut stream, &connect_hello("127.0.0.1", port)).await;
            assert_eq!(reply.code(), "ok", "tunnel {i}: {reply:?}");
            let data = random_bytes(i, 64 * 1024 + i as usize * 997);
            let sent = sha256_hex(&data);
            assert_eq!(echo_all(&mut stream, &data).await, sent, "tunnel {i}");
        }));
    }
    for task in tasks {
        within("a tunnel", Duration::from_secs(60), task)
            .await
            .expect("tunnel task");
    }
    assert_eq!(target.accepted(), 100);
    assert_eq!(
        server.log_lines_with(&["QUIC established"]).len(),
        1,
        "one connection carried every tunnel"
    );
}

#[tokio::test]
async fn streams_beyond_the_per_connection_limit_wait_for_a_free_one() {
    let server = TestServer::builder()
        .section("quic", "max_streams_per_connection", "2")
        .start()
        .await;
    let target = EchoTarget::start().await;
    // The connection's first stream is tunnel a, the second tunnel b.
    let a = open_quic_tunnel(&server, &pki().alice, target.port()).await;
    let mut b = a.open_stream().await.expect("stream b");
    let reply = send_hello(&mut b, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
    // A third stream cannot open while two are in use...
    let conn = a.connection().clone();
    let third = tokio::time::timeout(Duration::from_millis(500), conn.open_bi()).await;
    assert!(third.is_err(), "a third concurrent stream opened");
    // ...and can once one is done.
    b.shutdown().await.expect("finish b");
    let mut rest = Vec::new();
    b.read_to_end(&mut rest).await.expect("b to EOF");
    drop(b);
    let (send, recv) = within("a free stream", Duration::from_secs(10), conn.open_bi())
        .await
        .expect("stream c");
    let mut c = tokio::io::join(recv, send);
    let reply = send_hello(&mut c, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
}

/// A connection starts with a few streams granted (32) and is granted more as
/// they are used, up to the configured limit: 100 tunnels open at once on one
/// connection, and the 101st waits for some of them to end.
#[tokio::test]
async fn streams_are_granted_as_they_are_used_up_to_the_per_connection_limit() {
    let server = TestServer::builder()
        .section("quic", "max_streams_per_connection", "100")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let first = open_quic_tunnel(&server, &pki().alice, target.port()).await;
    let mut open = Vec::new();
    for i in 1..100 {
        let mut stream = within(
            "a stream within the limit",
            Duration::from_secs(10),
            first.open_stream(),
        )
        .await
        .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        let reply = send_hello(&mut stream, &connect_hello("127.0.0.1", target.port())).await;
        assert_eq!(reply.code(), "ok", "stream {i}: {reply:?}");
        open.push(stream);
    }
    assert_eq!(target.accepted(), 100);
    let conn = first.connection().clone();
    let extra = tokio::time::timeout(Duration::from_millis(500), conn.open_bi()).await;
    assert!(extra.is_err(), "a 101st concurrent stream opened");

    // quinn grants freed streams again in batches of an eighth of the limit:
    // end 13 of the 100.
    for mut done in open.drain(..13) {
        done.shutdown().await.expect("finish it");
        let mut rest = Vec::new();
        done.read_to_end(&mut rest).await.expect("to EOF");
    }
    within("a free stream", Duration::from_secs(10), conn.open_bi())
        .await
        .expect("a stream once some ended");
    server
        .expect_log(&["the client may open more streams at once", "streams=100"])
        .await;
}

#[tokio::test]
async fn the_drain_lets_quic_tunnels_finish_then_closes_the_connection() {
    let server = TestServer::builder()
        .limit("drain_timeout", "20s")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let mut client = open_quic_tunnel(&server, &pki().alice, target.port()).await;
    let conn = client.connection().clone();
    let stopping = tokio::spawn(server.shutdown());

    // During the drain the open tunnel works, and a new stream is answered busy.
    client.write_all(b"draining").await.expect("write");
    let mut back = [0u8; 8];
    within(
        "echo while draining",
        Duration::from_secs(5),
        client.read_exact(&mut back),
    )
    .await
    .expect("read");
    assert_eq!(&back, b"draining");
    let mut late = client.open_stream().await.expect("stream");
    let reply = send_hello(&mut late, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "busy", "{reply:?}");

    // Once the tunnel ends, the connection closes and run() returns, long before
    // the 20 s drain deadline.
    client.shutdown().await.expect("finish");
    let mut rest = Vec::new();
    within(
        "the tunnel's end",
        Duration::from_secs(5),
        client.read_to_end(&mut rest),
    )
    .await
    .expect("read to EOF");
    within("run() returning", Duration::from_secs(10), stopping)
        .await
        .expect("join")
        .expect("run() returns Ok");
    let closed = within(
        "the connection's close",
        Duration::from_secs(5),
        conn.closed(),
    )
    .await;
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == quinn::VarInt::from_u32(1)),
        "{closed:?}"
    );
}

/// A QUIC client that starts a handshake with `server` and goes silent: a relay
/// passes only the client's first datagram on. Returns the address the server sees
/// it from, and what must stay alive for the stall to last.
async fn stalled_handshake(
    server: SocketAddr,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<()>,
    quinn::Endpoint,
    quinn::Connecting,
) {
    let relay = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("relay socket");
    let relay_addr = relay.local_addr().expect("relay addr");
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("upstream socket");
    let peer = upstream.local_addr().expect("upstream addr");
    let forward = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let (n, _) = relay.recv_from(&mut buf).await.expect("first datagram");
        upstream.send_to(&buf[..n], server).await.expect("forward");
        // Everything after the first datagram, either way, is dropped.
        let mut other = vec![0u8; 65_536];
        loop {
            let _ = tokio::select! {
                r = relay.recv_from(&mut buf) => r,
                r = upstream.recv_from(&mut other) => r,
            };
        }
    });
    let endpoint = quic::endpoint(&ClientOptions::with(&pki().alice));
    let connecting = endpoint.connect(relay_addr, "localhost").expect("connect");
    (peer, forward, endpoint, connecting)
}

/// A client that starts a QUIC handshake and goes silent is dropped at the
/// handshake deadline, like a silent TCP client.
#[tokio::test]
async fn a_stalled_quic_handshake_ends_at_the_deadline() {
    let server = TestServer::builder()
        .limit("handshake_timeout", "1s")
        .start()
        .await;
    let started = std::time::Instant::now();
    let (peer, forward, _endpoint, _connecting) = stalled_handshake(server.addr()).await;
    server
        .expect_log(&[
            "TLS handshake refused: timed out",
            &format!("peer={peer}"),
            "transport=\"quic\"",
        ])
        .await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    forward.abort();
}

/// With many handshakes in flight (as under a flood of spoofed Initials), a new
/// client is asked to prove its address with a Retry first, and still connects.
#[tokio::test]
async fn many_handshakes_in_flight_make_new_clients_validate_their_address() {
    let server = TestServer::builder()
        .limit("handshake_timeout", "30s")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let mut stalled = Vec::new();
    for _ in 0..32 {
        stalled.push(stalled_handshake(server.addr()).await);
    }
    // Let the server take in all 32 Initials (there is no event to wait for).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        server.log_lines_with(&["QUIC Retry"]).is_empty(),
        "the stalled clients themselves were retried"
    );
    let mut client = open_quic_tunnel(&server, &pki().bob, target.port()).await;
    assert_eq!(
        echo_all(&mut client, b"validated").await,
        sha256_hex(b"validated")
    );
    server.expect_log(&["QUIC Retry"]).await;
    for (_, forward, ..) in stalled {
        forward.abort();
    }
}

/// A certificate that expires while its QUIC connection is open stops opening
/// tunnels: each new stream re-verifies the chain against the current config.
#[tokio::test]
async fn a_certificate_that_expires_on_an_open_connection_opens_no_more_tunnels() {
    use tp_server::pki::{LeafSpec, Validity};
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let now = time::OffsetDateTime::now_utc();
    let validity = Validity {
        not_before: now - time::Duration::minutes(1),
        not_after: now + time::Duration::seconds(2),
    };
    let short = pki()
        .root
        .issue(&LeafSpec::client("short@test", validity))
        .expect("a short-lived leaf");
    let client = open_quic_tunnel(&server, &short, target.port()).await;

    // Past its notAfter (plus the verifier's whole-second resolution)...
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let mut late = client.open_stream().await.expect("stream");
    let reply = send_hello(&mut late, &connect_hello("127.0.0.1", target.port())).await;
    assert!(
        matches!(reply, tp_tests::client::Reply::Closed { .. }),
        "an expired certificate opened a tunnel: {reply:?}"
    );
    let closed = within(
        "the close",
        Duration::from_secs(5),
        client.connection().closed(),
    )
    .await;
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == quinn::VarInt::from_u32(2)),
        "{closed:?}"
    );
    server
        .expect_log(&["the client certificate is no longer valid", "expired"])
        .await;
    assert_eq!(target.accepted(), 1);
}

#[tokio::test]
async fn new_quic_connections_are_refused_at_once_during_the_drain() {
    let server = TestServer::builder()
        .limit("drain_timeout", "20s")
        .start()
        .await;
    let target = EchoTarget::start().await;
    // An open tunnel keeps the server draining.
    let _open = open_quic_tunnel(&server, &pki().alice, target.port()).await;
    let addr = server.addr();
    server.cancel();
    let started = std::time::Instant::now();
    let endpoint = quic::endpoint(&ClientOptions::with(&pki().bob));
    let refused = within("the refusal", Duration::from_secs(5), async {
        endpoint.connect(addr, "localhost").expect("connect").await
    })
    .await;
    assert!(
        matches!(refused, Err(quinn::ConnectionError::ConnectionClosed(_))),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn one_identity_holds_at_most_its_quic_connections() {
    let server = TestServer::builder()
        .section("quic", "max_connections_per_identity", "1")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let first = open_quic_tunnel(&server, &pki().alice, target.port()).await;

    let second = quic::connect(server.addr(), &ClientOptions::with(&pki().alice))
        .await
        .expect("the handshake itself completes");
    let closed = within(
        "the refusal",
        Duration::from_secs(5),
        second.connection().closed(),
    )
    .await;
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == quinn::VarInt::from_u32(3)),
        "{closed:?}"
    );
    server
        .expect_log(&[
            "the identity has too many connections open",
            "id=alice@test",
        ])
        .await;
    // Another identity, and more tunnels on the first connection, are fine.
    let _bob = open_quic_tunnel(&server, &pki().bob, target.port()).await;
    let mut more = first.open_stream().await.expect("stream");
    let reply = send_hello(&mut more, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
}
