//! Public mode: the server opens a TCP port on `[reverse] public_address` for the
//! exposing client; plain TCP clients (here a raw socket, and curl) reach it,
//! within the port's own connection bounds.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::Command;
use tp_tests::bins::system_bin;
use tp_tests::client::Tunnel;
use tp_tests::reverse::{Exposer, free_port, listen_port_hello};
use tp_tests::{TestServer, TestServerBuilder, Transport, pki, within};

use super::{policy, start_public};

const BODY: &str = "served by the exposing client\n";

async fn a_public_port_reaches_the_exposer_until_the_registration_ends(transport: Transport) {
    let port = free_port();
    let public = SocketAddr::from(([127, 0, 0, 1], port));
    let server = start_public(port).await;
    let mut alice = Exposer::register(
        transport,
        server.addr(),
        &pki().alice,
        &listen_port_hello(port),
    )
    .await
    .unwrap_or_else(|reply| panic!("listen on public port {port}: {reply:?}"));

    // A raw TCP client: the exposer hears its real address and the public one.
    let dial = async {
        let tcp = TcpStream::connect(public)
            .await
            .expect("connect to the public port");
        let local = tcp.local_addr().expect("local_addr");
        (tcp, local)
    };
    let ((mut tcp, local), (incoming, mut exposed)) = tokio::join!(dial, alice.next_incoming());
    assert_eq!(incoming.peer, local, "{incoming:?}");
    assert_eq!(incoming.to, Some(public), "{incoming:?}");
    assert_eq!(
        incoming.from, None,
        "no identity in public mode: {incoming:?}"
    );
    assert!(incoming.groups.is_empty(), "{incoming:?}");
    tcp.write_all(b"plain bytes in").await.expect("write");
    tcp.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    within(
        "the public client's bytes",
        tp_tests::EVENTUALLY,
        exposed.read_to_end(&mut got),
    )
    .await
    .expect("exposer read");
    assert_eq!(got, b"plain bytes in");
    exposed.write_all(b"plain bytes out").await.expect("write");
    exposed.shutdown().await.expect("shutdown");
    let mut back = Vec::new();
    within(
        "the exposer's answer",
        tp_tests::EVENTUALLY,
        tcp.read_to_end(&mut back),
    )
    .await
    .expect("public client read");
    assert_eq!(back, b"plain bytes out");

    // curl, answered by the exposer as a tiny HTTP server.
    let curl = Command::new(system_bin("curl"))
        .args(["-sS", "--max-time", "10", &format!("http://{public}/hello")])
        .output();
    let serve = async {
        let (_, mut exposed) = alice.next_incoming().await;
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let byte = exposed.read_u8().await.expect("the HTTP request");
            request.push(byte);
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        exposed.write_all(response.as_bytes()).await.expect("write");
        exposed.shutdown().await.expect("shutdown");
        (request, exposed)
    };
    let (output, (request, _exposed)) = within(
        "curl through the public port",
        Duration::from_secs(15),
        async { tokio::join!(curl, serve) },
    )
    .await;
    let output = output.expect("running curl");
    assert!(
        output.status.success(),
        "curl: {:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), BODY);
    assert!(
        request.starts_with(b"GET /hello HTTP/1.1\r\n"),
        "{}",
        String::from_utf8_lossy(&request)
    );

    // The registration ends: the port closes with it.
    alice.close().await;
    server
        .expect_log(&[&format!("unregistered public port {port} for alice@test")])
        .await;
    tp_tests::assert_eventually!(
        TcpStream::connect(public).await.is_err(),
        "public port {port} still accepts connections after the registration ended"
    );
}

/// alice registering her port again: the old registration's channel is closed and
/// the port, reopened for the new one, reaches it.
async fn re_registering_a_public_port_moves_it_to_the_new_registration(transport: Transport) {
    let port = free_port();
    let server = start_public(port).await;
    let hello = listen_port_hello(port);
    let mut first = Exposer::register(transport, server.addr(), &pki().alice, &hello)
        .await
        .unwrap_or_else(|reply| panic!("first listen on {port}: {reply:?}"));
    let mut second = Exposer::register(transport, server.addr(), &pki().alice, &hello)
        .await
        .unwrap_or_else(|reply| panic!("second listen on {port}: {reply:?}"));
    first.expect_closed().await;

    let dial = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the public port");
        let mut back = Vec::new();
        tcp.read_to_end(&mut back).await.expect("read");
        back
    };
    let serve = async {
        let (_, mut exposed) = second.next_incoming().await;
        exposed.write_all(b"the second").await.expect("write");
        exposed.shutdown().await.expect("shutdown");
        exposed
    };
    let (back, _exposed) = within("a public connection", tp_tests::EVENTUALLY, async {
        tokio::join!(dial, serve)
    })
    .await;
    assert_eq!(back, b"the second");
}

/// A server granting alice the public port `port` on 127.0.0.1, configured
/// further by `more`, and alice's registration of it.
async fn start_registered(
    transport: Transport,
    port: u16,
    more: impl FnOnce(TestServerBuilder) -> TestServerBuilder,
) -> (TestServer, Exposer) {
    let builder = TestServer::builder()
        .policy(&policy(&port.to_string()))
        .section("reverse", "public_address", "\"127.0.0.1\"");
    let server = more(builder).start().await;
    let alice = Exposer::register(
        transport,
        server.addr(),
        &pki().alice,
        &listen_port_hello(port),
    )
    .await
    .unwrap_or_else(|reply| panic!("listen on public port {port}: {reply:?}"));
    (server, alice)
}

/// A TCP connection to the public `port` from the loopback address `source`.
async fn dial_from(source: &str, port: u16) -> TcpStream {
    try_dial_from(source, port)
        .await
        .expect("connect to the public port")
}

/// [`dial_from`], with the connect's failure returned.
async fn try_dial_from(source: &str, port: u16) -> std::io::Result<TcpStream> {
    let source: IpAddr = source.parse().expect("a source address");
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("binding the source address");
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

/// A connection from `source` that alice takes and that carries bytes both
/// ways; both ends are kept open.
async fn served(alice: &mut Exposer, source: &str, port: u16) -> (TcpStream, Tunnel) {
    let ((mut tcp, local), (incoming, mut exposed)) = tokio::join!(
        async {
            let tcp = dial_from(source, port).await;
            let local = tcp.local_addr().expect("local_addr");
            (tcp, local)
        },
        alice.next_incoming()
    );
    assert_eq!(incoming.peer, local, "{incoming:?}");
    tcp.write_all(b"in").await.expect("write");
    let mut got = [0u8; 2];
    within(
        "bytes to alice",
        tp_tests::EVENTUALLY,
        exposed.read_exact(&mut got),
    )
    .await
    .expect("alice reads");
    exposed.write_all(b"out").await.expect("write");
    let mut back = [0u8; 3];
    within(
        "bytes from alice",
        tp_tests::EVENTUALLY,
        tcp.read_exact(&mut back),
    )
    .await
    .expect("the public client reads");
    assert_eq!((&got, &back), (b"in", b"out"));
    (tcp, exposed)
}

/// A connection from `source` the server closes at once: within a second, far
/// below the `connect_timeout` (2 s) an unanswered connection would wait. The
/// server's reset may arrive before the connect completes here.
async fn closed_at_once(source: &str, port: u16) {
    let mut tcp = match try_dial_from(source, port).await {
        Ok(tcp) => tcp,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
        Err(e) => panic!("connect to the public port: {e}"),
    };
    let mut byte = [0u8; 1];
    let read = within(
        "the server to close a connection over the bound",
        Duration::from_secs(1),
        tcp.read(&mut byte),
    )
    .await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "a connection over the bound read {read:?}"
    );
}

/// The first `sources.len() - 1` connections are served and held open; one
/// more, from the last source, is closed at once. When the first ends, a
/// connection from that last source is served.
async fn bounded(transport: Transport, key: &str, sources: &[&str]) {
    let port = free_port();
    let bound = (sources.len() - 1).to_string();
    let (server, mut alice) =
        start_registered(transport, port, |b| b.section("reverse", key, &bound)).await;
    let (held, last) = sources.split_at(sources.len() - 1);
    let mut open = Vec::new();
    for source in held {
        open.push(served(&mut alice, source, port).await);
    }
    closed_at_once(last[0], port).await;
    server
        .expect_log(&["public connection refused: at the registration's connection limits"])
        .await;

    let (tcp, exposed) = open.remove(0);
    let peer = tcp.local_addr().expect("local_addr");
    drop((tcp, exposed));
    server
        .expect_log(&[&format!("peer={peer}"), "tunnel closed"])
        .await;
    let _again = served(&mut alice, last[0], port).await;
}

/// `max_public_connections_per_source = 2`: a third connection from
/// 127.0.0.1 is closed at once.
async fn a_public_port_bounds_the_connections_of_one_source(transport: Transport) {
    let sources = ["127.0.0.1"; 3];
    bounded(transport, "max_public_connections_per_source", &sources).await;
}

/// `max_public_connections = 3`: a fourth connection is closed at once, though
/// each comes from a source of its own.
async fn a_public_port_bounds_its_connections(transport: Transport) {
    let sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    bounded(transport, "max_public_connections", &sources).await;
}

/// Strangers' connections do not use up the exposing identity's tunnels: with
/// `max_tunnels_per_identity = 2`, alice's control channel and three public
/// connections at once all carry bytes.
async fn public_connections_are_not_the_exposers_tunnels(transport: Transport) {
    let port = free_port();
    let (_server, mut alice) = start_registered(transport, port, |b| {
        b.limit("max_tunnels_per_identity", "2")
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(served(&mut alice, "127.0.0.1", port).await);
    }
}

tp_tests::over_both_transports!(
    a_public_port_reaches_the_exposer_until_the_registration_ends,
    re_registering_a_public_port_moves_it_to_the_new_registration,
    a_public_port_bounds_the_connections_of_one_source,
    a_public_port_bounds_its_connections,
    public_connections_are_not_the_exposers_tunnels,
);

/// A granted port something else holds: `busy`, and the attempt leaves no
/// registration behind (once the port is free, the same listen succeeds).
#[tokio::test]
async fn a_port_that_cannot_be_bound_is_busy() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("local_addr").port();
    let server = start_public(port).await;
    let hello = listen_port_hello(port);
    let busy = Exposer::register(Transport::Tcp, server.addr(), &pki().alice, &hello)
        .await
        .expect_err("listen on a port in use");
    assert_eq!(busy.code(), "busy", "{busy:?}");
    assert!(busy.message().contains(&port.to_string()), "{busy:?}");

    drop(holder);
    let _alice = Exposer::register(Transport::Tcp, server.addr(), &pki().alice, &hello)
        .await
        .unwrap_or_else(|reply| panic!("listen on {port} once it is free: {reply:?}"));
}
