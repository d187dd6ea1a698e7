//! A server without `[tls] client_ca` (a website, a Signal relay or routes only):
//! no client certificate is trusted, so no tunnel opens. A `tp/1` ClientHello gets
//! the website's handshake (which has no `tp/1`) and a debug line says why; QUIC,
//! which carries only tunnels, is not served. The website still answers.

use tp_tests::client::{ClientOptions, browse, connect};
use tp_tests::{TestServer, pki};

#[tokio::test]
async fn tunnels_are_refused_at_the_handshake_and_the_website_answers() {
    let server = TestServer::builder().no_client_ca().start().await;
    server
        .expect_log(&["QUIC off: no [tls] client_ca is configured"])
        .await;
    assert!(browse(server.addr()).await.contains("<h1>Welcome</h1>"));

    let (out, reached) = server.tp_echo().await;
    assert_ne!(out.code(), 0, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(reached, 0);
    server
        .expect_log(&["tunnel refused: no [tls] client_ca is configured"])
        .await;
    server.expect_log(&["TLS handshake refused", "DEBUG"]).await;

    // A raw tp/1 client with a valid certificate: the website's handshake has
    // no `tp/1` to agree on, so it fails at once.
    let refused = connect(server.addr(), &ClientOptions::with(&pki().alice)).await;
    assert!(refused.is_err(), "a tp/1 handshake completed");
}
