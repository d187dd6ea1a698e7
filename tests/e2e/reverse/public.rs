//! Public mode: the server opens a TCP port on `[reverse] public_address` for the
//! exposing client; plain TCP clients (here a raw socket, and curl) reach it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tp_tests::bins::system_bin;
use tp_tests::reverse::{Exposer, free_port, listen_port_hello};
use tp_tests::{Transport, pki, within};

use super::start_public;

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

tp_tests::over_both_transports!(
    a_public_port_reaches_the_exposer_until_the_registration_ends,
    re_registering_a_public_port_moves_it_to_the_new_registration,
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
