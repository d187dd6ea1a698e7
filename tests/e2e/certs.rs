//! The certificate matrix: every bad client certificate is refused at the handshake,
//! with a server log line saying why, and the `tp` client reports the failure (exit 1).
//! A chain through an intermediate CA is accepted. A client that does not negotiate
//! ALPN `tp/1` is closed.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tp_server::pki::Issued;
use tp_tests::bins::run_tp;
use tp_tests::client::{self, ClientOptions, Reply, connect_hello, send_hello};
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, pki};

/// Connects with `options`, asks for a tunnel to `target`, and expects no answer:
/// the connection must end. Returns the client's local address (the server's log
/// names it as `peer=`).
async fn expect_refused(
    server: SocketAddr,
    options: &ClientOptions<'_>,
    target: u16,
) -> SocketAddr {
    let tcp = TcpStream::connect(server).await.expect("TCP connect");
    let local = tcp.local_addr().expect("local_addr");
    match client::handshake(tcp, options).await {
        // The server refused during our side of the handshake.
        Err(_) => {}
        Ok(mut tls) => {
            let reply = send_hello(&mut tls, &connect_hello("127.0.0.1", target)).await;
            assert!(
                matches!(reply, Reply::Closed { ref partial, .. } if partial.is_empty()),
                "a refused client got an answer: {reply:?}"
            );
        }
    }
    local
}

/// The server logs `TLS handshake refused: ...` for `peer` with every one of `why`.
async fn expect_refusal_logged(server: &TestServer, peer: SocketAddr, why: &[&str]) -> String {
    let peer = format!("peer={peer}");
    let mut parts = vec!["TLS handshake refused", peer.as_str()];
    parts.extend_from_slice(why);
    server.expect_log(&parts).await
}

async fn bad_leaf(leaf: &Issued, why: &[&str]) {
    let pki = pki();
    let server = TestServer::builder().revoked(&pki.revoked).start().await;
    let target = EchoTarget::start().await;
    let peer = expect_refused(server.addr(), &ClientOptions::with(leaf), target.port()).await;
    let line = expect_refusal_logged(&server, peer, why).await;
    println!("{line}");
    assert_eq!(
        target.accepted(),
        0,
        "nothing may be dialed for a refused client"
    );

    // The tp client sees the failure too, and says it was a TLS handshake failure.
    let config = server.client_config_for(leaf);
    let port = target.port().to_string();
    let out = run_tp(&config, ["127.0.0.1", port.as_str()], b"").await;
    assert_eq!(out.code(), 1, "tp with a refused certificate: {out:?}");
    assert!(out.stdout.is_empty(), "no tunnel bytes: {out:?}");
    println!("{}", out.stderr);
    assert!(
        out.stderr.starts_with("tp: ") && out.stderr.contains("TLS handshake"),
        "tp's stderr: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("refused our client certificate"),
        "tp names the client certificate as the problem: {}",
        out.stderr
    );
    assert_eq!(target.accepted(), 0);
}

#[tokio::test]
async fn no_certificate_is_refused() {
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let peer = expect_refused(server.addr(), &ClientOptions::anonymous(), target.port()).await;
    let line = expect_refusal_logged(&server, peer, &["no certificates"]).await;
    println!("{line}");
    assert_eq!(target.accepted(), 0);
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    bad_leaf(&pki().expired, &["xpired"]).await;
}

#[tokio::test]
async fn not_yet_valid_certificate_is_refused() {
    bad_leaf(&pki().not_yet_valid, &["not valid"]).await;
}

#[tokio::test]
async fn foreign_ca_is_refused() {
    bad_leaf(&pki().foreign, &["UnknownIssuer"]).await;
}

#[tokio::test]
async fn server_auth_only_eku_is_refused() {
    bad_leaf(
        &pki().server_eku,
        &["extended key usage for client authentication"],
    )
    .await;
}

#[tokio::test]
async fn revoked_serial_is_refused() {
    bad_leaf(&pki().revoked, &["Revoked"]).await;
}

#[tokio::test]
async fn revoked_serial_is_only_refused_when_listed() {
    // The same certificate is fine on a server whose list does not name it.
    let pki = pki();
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let mut tls =
        client::open_tunnel(server.addr(), &pki.revoked, "127.0.0.1", target.port()).await;
    echo_roundtrip(&mut tls, b"still trusted").await;
}

#[tokio::test]
async fn chain_through_an_intermediate_is_accepted() {
    let pki = pki();
    let leaf = &pki.via_intermediate;
    assert_eq!(
        leaf.chain_der().len(),
        2,
        "the client presents leaf + intermediate"
    );
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let mut tls = client::open_tunnel(server.addr(), leaf, "127.0.0.1", target.port()).await;
    echo_roundtrip(&mut tls, b"through the intermediate").await;
    server
        .expect_log(&["id=carol@test", "decision=\"allow\""])
        .await;

    // And through the tp binary, whose config names the chain file.
    let config = server.client_config_for(leaf);
    let port = target.port().to_string();
    let out = run_tp(&config, ["127.0.0.1", port.as_str()], b"hello via tp").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"hello via tp");
}

async fn echo_roundtrip(tls: &mut client::TlsClient, payload: &[u8]) {
    tls.write_all(payload).await.expect("write");
    tls.shutdown().await.expect("close_notify");
    let mut back = Vec::new();
    tp_tests::within("echo", tp_tests::EVENTUALLY, tls.read_to_end(&mut back))
        .await
        .expect("read to EOF");
    assert_eq!(back, payload);
}

#[tokio::test]
async fn client_without_alpn_is_closed() {
    let pki = pki();
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let options = ClientOptions {
        cert: Some(&pki.alice),
        alpn: Vec::new(),
    };
    let tcp = TcpStream::connect(server.addr()).await.expect("connect");
    let peer = tcp.local_addr().expect("local_addr");
    let mut tls = client::handshake(tcp, &options)
        .await
        .expect("the handshake itself completes without ALPN");
    let reply = send_hello(&mut tls, &connect_hello("127.0.0.1", target.port())).await;
    assert!(matches!(reply, Reply::Closed { .. }), "{reply:?}");
    let line = server
        .expect_log(&[&format!("peer={peer}"), "did not negotiate ALPN tp/1"])
        .await;
    println!("{line}");
    assert_eq!(target.accepted(), 0);
}

#[tokio::test]
async fn client_offering_only_other_alpn_is_refused() {
    let pki = pki();
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let options = ClientOptions {
        cert: Some(&pki.alice),
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    let peer = expect_refused(server.addr(), &options, target.port()).await;
    let line = server
        .expect_log(&[&format!("peer={peer}"), "refused"])
        .await;
    println!("{line}");
    assert_eq!(target.accepted(), 0);
}
