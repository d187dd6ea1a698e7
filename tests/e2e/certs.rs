//! The certificate matrix: every bad client certificate is refused at the handshake,
//! over both transports, with a server log line saying why, and the `tp` client
//! reports the failure (exit 1). A chain through an intermediate CA is accepted. A
//! client that does not offer ALPN `tp/1` never gets a tunnel: over TLS/TCP it gets
//! the website, over QUIC its handshake fails.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tp_server::pki::Issued;
use tp_tests::bins::run_tp;
use tp_tests::client::{
    ClientOptions, Reply, connect_from, connect_hello, open_tunnel_over, round_trip, send_hello,
};
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, Transport, pki};

/// How rustls (and so the server's log, over both transports) words a handshake
/// that found no ALPN protocol both sides speak.
const NO_SHARED_ALPN: &str = "peer doesn't support any known protocol";

/// Connects over `transport` with `options`, asks for a tunnel to `target`, and
/// expects no answer: the handshake fails, or the connection (QUIC: the stream)
/// ends before a byte of answer. Returns the client's address (the server's log
/// names it as `peer=`).
async fn expect_refused(
    transport: Transport,
    server: SocketAddr,
    options: &ClientOptions<'_>,
    target: u16,
) -> SocketAddr {
    let (peer, connected) = connect_from(transport, server, options).await;
    match connected {
        // The server refused during our side of the handshake.
        Err(e) => println!("{transport:?} handshake failed: {e}"),
        Ok(mut tunnel) => {
            let reply = send_hello(&mut tunnel, &connect_hello("127.0.0.1", target)).await;
            assert!(
                matches!(reply, Reply::Closed { ref partial, .. } if partial.is_empty()),
                "{transport:?}: a refused client got an answer: {reply:?}"
            );
            println!("{transport:?} refused after the handshake: {reply:?}");
        }
    }
    peer
}

/// The server logs `TLS handshake refused: ...` for `peer` over `transport` with
/// every one of `why`.
async fn expect_refusal_logged(
    server: &TestServer,
    transport: Transport,
    peer: SocketAddr,
    why: &[&str],
) -> String {
    let peer = format!("peer={peer}");
    let mut parts = vec![
        "TLS handshake refused",
        peer.as_str(),
        transport.log_field(),
    ];
    parts.extend_from_slice(why);
    server.expect_log(&parts).await
}

/// `leaf` is refused over `transport`, the log says why (`why`), and nothing is
/// dialed.
async fn bad_leaf(transport: Transport, leaf: &Issued, why: &[&str]) {
    let pki = pki();
    let server = TestServer::builder().revoked(&pki.revoked).start().await;
    let target = EchoTarget::start().await;
    let options = ClientOptions::with(leaf);
    let peer = expect_refused(transport, server.addr(), &options, target.port()).await;
    let line = expect_refusal_logged(&server, transport, peer, why).await;
    println!("{line}");
    assert_eq!(
        target.accepted(),
        0,
        "nothing may be dialed for a refused client"
    );
}

async fn no_certificate_is_refused(transport: Transport) {
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let options = ClientOptions::anonymous();
    let peer = expect_refused(transport, server.addr(), &options, target.port()).await;
    let line = expect_refusal_logged(&server, transport, peer, &["no certificates"]).await;
    println!("{line}");
    assert_eq!(target.accepted(), 0);
}

async fn expired_certificate_is_refused(transport: Transport) {
    bad_leaf(transport, &pki().expired, &["certificate expired"]).await;
}

async fn not_yet_valid_certificate_is_refused(transport: Transport) {
    bad_leaf(transport, &pki().not_yet_valid, &["not valid yet"]).await;
}

async fn foreign_ca_is_refused(transport: Transport) {
    bad_leaf(transport, &pki().foreign, &["UnknownIssuer"]).await;
}

async fn server_auth_only_eku_is_refused(transport: Transport) {
    bad_leaf(
        transport,
        &pki().server_eku,
        &["extended key usage for client authentication"],
    )
    .await;
}

async fn revoked_serial_is_refused(transport: Transport) {
    bad_leaf(transport, &pki().revoked, &["Revoked"]).await;
}

/// The `tp` binary reports each refused certificate as a TLS handshake failure of
/// its client certificate (exit 1, no tunnel bytes). Not per transport: `tp`
/// chooses its transport from its own config.
#[tokio::test]
async fn tp_reports_a_refused_client_certificate() {
    let pki = pki();
    let server = TestServer::builder().revoked(&pki.revoked).start().await;
    let target = EchoTarget::start().await;
    let port = target.port().to_string();
    let leaves = [
        ("expired", &pki.expired),
        ("not yet valid", &pki.not_yet_valid),
        ("foreign CA", &pki.foreign),
        ("serverAuth only", &pki.server_eku),
        ("revoked", &pki.revoked),
    ];
    for (what, leaf) in leaves {
        let config = server.client_config_for(leaf);
        let out = run_tp(&config, ["127.0.0.1", port.as_str()], b"").await;
        println!("{what}: {}", out.stderr);
        assert_eq!(out.code(), 1, "tp with a {what} certificate: {out:?}");
        assert!(out.stdout.is_empty(), "{what}: no tunnel bytes: {out:?}");
        assert!(
            out.stderr.starts_with("tp: ") && out.stderr.contains("TLS handshake"),
            "{what}: tp's stderr: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("refused our client certificate"),
            "{what}: tp names the client certificate as the problem: {}",
            out.stderr
        );
    }
    assert_eq!(target.accepted(), 0);
}

async fn revoked_serial_is_only_refused_when_listed(transport: Transport) {
    // The same certificate is fine on a server whose list does not name it.
    let pki = pki();
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let mut tunnel = open_tunnel_over(
        transport,
        server.addr(),
        &pki.revoked,
        "127.0.0.1",
        target.port(),
    )
    .await;
    assert_eq!(
        round_trip(&mut tunnel, b"still trusted").await,
        b"still trusted"
    );
}

async fn chain_through_an_intermediate_is_accepted(transport: Transport) {
    let pki = pki();
    let leaf = &pki.via_intermediate;
    assert_eq!(
        leaf.chain_der().len(),
        2,
        "the client presents leaf + intermediate"
    );
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let mut tunnel =
        open_tunnel_over(transport, server.addr(), leaf, "127.0.0.1", target.port()).await;
    let payload = b"through the intermediate";
    assert_eq!(round_trip(&mut tunnel, payload).await, payload);
    server
        .expect_log(&["id=carol@test", "decision=\"allow\"", transport.log_field()])
        .await;
}

/// The `tp` binary presents the chain its config names (leaf + intermediate). Not
/// per transport: `tp` chooses its transport from its own config.
#[tokio::test]
async fn tp_presents_a_chain_through_an_intermediate() {
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let config = server.client_config_for(&pki().via_intermediate);
    let port = target.port().to_string();
    let out = run_tp(&config, ["127.0.0.1", port.as_str()], b"hello via tp").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"hello via tp");
    server
        .expect_log(&["id=carol@test", "decision=\"allow\""])
        .await;
}

/// Over TLS/TCP, a client that does not offer `tp/1` is not a tp client: it gets
/// the website (here the built-in page), never a tunnel, even with a valid
/// certificate. Over QUIC, which carries only tp and makes ALPN mandatory (RFC
/// 9001, section 8.1), the handshake fails.
async fn expect_website_or_refusal(transport: Transport, alpn: Vec<Vec<u8>>) {
    let pki = pki();
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let options = ClientOptions {
        cert: Some(&pki.alice),
        alpn,
    };
    match transport {
        Transport::Tcp => {
            let mut tls = tp_tests::client::connect(server.addr(), &options)
                .await
                .expect("the website's handshake");
            let mut request = connect_hello("127.0.0.1", target.port());
            request.extend_from_slice(b"\r\n\r\n");
            tls.write_all(&request).await.expect("write");
            let mut answer = Vec::new();
            let _ = tls.read_to_end(&mut answer).await;
            let answer = String::from_utf8_lossy(&answer);
            // A tp hello is not an HTTP request: the website's 400, never a tp answer.
            assert!(
                answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{answer}"
            );
            assert!(!answer.contains("\"ok\""), "{answer}");
        }
        Transport::Quic => {
            let peer = expect_refused(transport, server.addr(), &options, target.port()).await;
            let line = expect_refusal_logged(&server, transport, peer, &[NO_SHARED_ALPN]).await;
            println!("{line}");
        }
    }
    assert_eq!(target.accepted(), 0);
}

async fn client_without_alpn_is_not_a_tp_client(transport: Transport) {
    expect_website_or_refusal(transport, Vec::new()).await;
}

async fn client_offering_only_other_alpn_is_not_a_tp_client(transport: Transport) {
    expect_website_or_refusal(transport, vec![b"h2".to_vec(), b"http/1.1".to_vec()]).await;
}

tp_tests::over_both_transports!(
    no_certificate_is_refused,
    expired_certificate_is_refused,
    not_yet_valid_certificate_is_refused,
    foreign_ca_is_refused,
    server_auth_only_eku_is_refused,
    revoked_serial_is_refused,
    revoked_serial_is_only_refused_when_listed,
    chain_through_an_intermediate_is_accepted,
    client_without_alpn_is_not_a_tp_client,
    client_offering_only_other_alpn_is_not_a_tp_client,
);
