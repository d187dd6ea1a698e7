//! `[[terminate]] listen`: a route on a port of its own (DNS over TLS on 853, as
//! dig and Android's private DNS expect), reached without SNI or ALPN routing,
//! under the main port's handshake deadline, and closed by the drain. The main
//! port is unchanged: the route is not on it, tunnels and the website are.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tp_tests::client::browse;
use tp_tests::dns::{dig_tls, dnsmasq};
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, within};

#[tokio::test]
async fn dig_reaches_the_resolver_on_the_routes_own_port() {
    let (_dnsmasq, dns_port) = dnsmasq().await;
    let server = TestServer::builder()
        .raw(&format!(
            "[[terminate]]\nname = \"dot\"\nlisten = [\"127.0.0.1:0\"]\nbackend = \"127.0.0.1:{dns_port}\"\n"
        ))
        .start()
        .await;
    let route = server.route_addrs()[0];
    assert_ne!(route.port(), server.addr().port());

    let out = dig_tls(route.port()).await;
    assert_eq!(out.stdout_text().trim(), "192.0.2.53", "{}", out.stderr);
    server
        .expect_log(&[
            "terminated connection closed",
            &format!("route_port={route}"),
            &format!("backend=127.0.0.1:{dns_port}"),
        ])
        .await;

    // The route names neither SNI nor ALPN: it is not on the main port, where
    // dig's ALPN `dot` meets the website's handshake and fails.
    let out = dig_tls(server.addr().port()).await;
    assert!(
        !out.stdout_text().contains("192.0.2.53"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(
        server
            .log_lines_with(&["terminated connection closed"])
            .len(),
        1
    );

    // The main port still serves the website and tunnels.
    assert!(browse(server.addr()).await.contains("<h1>Welcome</h1>"));
    let (out, _) = server.tp_echo().await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"ping");
}

#[tokio::test]
async fn a_silent_client_on_the_routes_port_is_closed_at_the_handshake_deadline() {
    let target = EchoTarget::start().await;
    let server = TestServer::builder()
        .limit("handshake_timeout", "1s")
        .raw(&format!(
            "[[terminate]]\nlisten = [\"127.0.0.1:0\"]\nbackend = \"{}\"\n",
            target.addr()
        ))
        .start()
        .await;
    let mut silent = TcpStream::connect(server.route_addrs()[0])
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let read = within(
        "the server closing",
        Duration::from_secs(5),
        silent.read(&mut buf),
    )
    .await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    server
        .expect_log(&["TLS handshake refused: timed out", "route_port="])
        .await;
    assert_eq!(target.accepted(), 0);
}

#[tokio::test]
async fn the_routes_port_closes_when_the_server_drains() {
    let target = EchoTarget::start().await;
    let server = TestServer::builder()
        .raw(&format!(
            "[[terminate]]\nlisten = [\"127.0.0.1:0\"]\nbackend = \"{}\"\n",
            target.addr()
        ))
        .start()
        .await;
    let route = server.route_addrs()[0];
    TcpStream::connect(route).await.expect("listening");
    server.shutdown().await.expect("clean shutdown");
    assert!(
        TcpStream::connect(route).await.is_err(),
        "the route's port still accepts after the drain"
    );
}
